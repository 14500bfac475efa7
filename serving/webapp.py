"""The web page: drop an image, see the segmentation; and the small proxy that keeps the token server-side.

The browser talks only to this app. The page (static files in web/) posts the image and the
chosen output to /api/predict; the proxy checks the upload (size, a PNG, JPEG, WebP or TIFF
signature) before anything is forwarded, sends it to TorchServe's prediction URL with the
inference token, and answers JSON the page draws from: the result image, the legend the handler
sent with it (X-Segflow-Classes), the model version (X-Segflow-Model-Version) and the latency.
Every failure becomes {"error": message, "reason": label} with a message a user can act on;
details a user cannot act on (URLs, TorchServe's own words about keys) go to the log only.

    python -m segflow.serving.webapp http://GATEWAY/predictions/NAME --host 0.0.0.0 --port 8000

is how the Helm chart runs it (token in SEGFLOW_TOKEN); `segflow serve --web` starts it beside a
local TorchServe with that server's own, expiring inference key (KeyFileToken).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import typer
from flask import Flask, Response, jsonify, request, send_from_directory
from rich.console import Console
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from segflow.errors import SegflowError, ServingError
from segflow.serving.client import InferenceClient, Prediction
from segflow.serving.codec import image_format
from segflow.serving.server import read_keys

STATIC = Path(__file__).with_name("web")
# What the page offers: the handler's image outputs and the classifier's top-k (json is for programs).
OUTPUTS = {"overlay": "overlay", "mask": "mask", "cutout": "cutout (background removed)",
           "topk": "classification top-k"}
FORM_SLACK_BYTES = 64 * 1024  # multipart framing and the output field, on top of the image itself
MIB = 1024 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
UNREACHABLE = ("the model server is not answering: it is down or still starting (loading a model takes up to a "
               "minute). Try again shortly; if it persists, ask whoever runs it to check TorchServe")
log = logging.getLogger(__name__)


class TokenSource(Protocol):
    """Where the proxy's inference token comes from; `renew(refused)` is asked once after a refusal."""

    def current(self) -> str: ...

    def renew(self, refused: str) -> bool: ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed token: the chart gateway's, from its Secret. A refusal cannot be cured by asking again."""

    token: str

    def current(self) -> str:
        return self.token

    def renew(self, refused: str) -> bool:
        return False


class KeyFileToken:
    """A local TorchServe's inference key from its key_file.json; renewed with the API key once it expires.

    TorchServe 0.12 expires its inference key after 60 minutes, and a page left open runs longer.
    A refused request renews the key through the management API (which writes the new key to the
    key file), and is sent once more. Requests refused together renew once: each renewal voids
    the key before it, so a second one would void the key the first request is retrying with.
    """

    def __init__(self, key_file: Path, management: str):
        self.key_file, self.management = Path(key_file), management.rstrip("/")
        self._lock = threading.Lock()
        self._key: str | None = None

    def current(self) -> str:
        with self._lock:
            if self._key is None:
                self._key = read_keys(self.key_file)["inference"]
            return self._key

    def renew(self, refused: str) -> bool:
        with self._lock:
            if self._key != refused:  # another request renewed it meanwhile
                return True
            api_key = read_keys(self.key_file)["API"]
            renewal = urllib.request.Request(f"{self.management}/token?type=inference",
                                             headers={"Authorization": f"Bearer {api_key}"})
            try:
                urllib.request.urlopen(renewal, timeout=10).close()  # the new key is written to the key file
            except (urllib.error.URLError, OSError) as exc:
                log.warning("renewing the inference key at %s failed: %s", self.management, exc)
                return False
            self._key = read_keys(self.key_file)["inference"]
            return True


@dataclass(frozen=True)
class WebSettings:
    """The proxy's configuration, checked once at start."""

    endpoint: str  # TorchServe's (or the gateway's) prediction URL: http://HOST:PORT/predictions/NAME
    max_upload_mib: int = 16
    timeout_s: float = 120.0

    def __post_init__(self):
        url = urllib.parse.urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname or "/predictions/" not in url.path:
            raise ServingError(f"endpoint {self.endpoint!r} is not a prediction URL; give "
                               "http://HOST:PORT/predictions/MODEL (what `segflow serve` prints)")
        if self.max_upload_mib < 1:
            raise ServingError(f"the upload limit must be at least 1 MiB, not {self.max_upload_mib}")

    @property
    def model(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).path.split("/predictions/", 1)[1].split("/")[0]

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mib * MIB


class Refusal(Exception):
    """An answer for the browser: HTTP status, a message the user can act on, a short reason label."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason = status, reason


def create_app(settings: WebSettings, tokens: TokenSource) -> Flask:
    """The page, its static files and the JSON API, as one WSGI app."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + FORM_SLACK_BYTES
    proxy = _Proxy(settings, tokens)

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/config")
    def config() -> Response:
        return jsonify(model=settings.model, outputs=list(OUTPUTS.items()), max_upload_bytes=settings.max_upload_bytes)

    @app.post("/api/predict")
    def predict() -> Response:
        return jsonify(proxy.predict())

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.errorhandler(Refusal)
    def refused(exc: Refusal) -> tuple[Response, int]:
        return jsonify(error=str(exc), reason=exc.reason), exc.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        size = f"{request.content_length / MIB:.1f} MiB" if request.content_length else "too large"
        return jsonify(error=f"the file is {size}; this page accepts images up to {settings.max_upload_mib} MiB. "
                       "Downscale it, or send it with segflow predict", reason="too_large"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{exc.name}: {exc.description}", reason="http"), exc.code

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    return app


class _Proxy:
    """Checks an upload, forwards it with the token, and turns TorchServe's answer into the page's JSON."""

    def __init__(self, settings: WebSettings, tokens: TokenSource):
        self.settings, self.tokens = settings, tokens

    def predict(self) -> dict:
        image, name = self._upload()
        output = request.form.get("output", "overlay")
        if output not in OUTPUTS:
            raise Refusal(400, "bad_option", f"output {output!r} is not one of {', '.join(OUTPUTS)}")
        started = time.perf_counter()
        answer = self._send(image, output)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return self._result(answer, output, name, latency_ms)

    def _upload(self) -> tuple[bytes, str]:
        upload = request.files.get("image")
        if upload is None:
            raise Refusal(400, "no_image", "no image was sent: drop an image on the page or choose a file")
        name, data = upload.filename or "the file", upload.read()
        if not data:
            raise Refusal(400, "empty", f"{name} is empty (0 bytes); choose an image file")
        if image_format(data) is None:
            raise Refusal(415, "not_an_image", f"{name} is not a PNG, JPEG, WebP or TIFF image; "
                          "choose an image in one of those formats")
        return data, name

    def _send(self, image: bytes, output: str) -> Prediction:
        """One forward; a refused token is renewed (where it can be) and the request sent once more."""
        token = self.tokens.current()
        answer = self._forward(image, output, token)
        if _token_refused(answer) and self.tokens.renew(token):
            answer = self._forward(image, output, self.tokens.current())
        return answer

    def _forward(self, image: bytes, output: str, token: str) -> Prediction:
        try:
            with InferenceClient(self.settings.endpoint, token, self.settings.timeout_s) as client:
                return client.send(image, output)
        except ServingError as exc:
            log.warning("%s", exc)
            raise Refusal(502, "unreachable", UNREACHABLE) from None

    def _result(self, answer: Prediction, output: str, name: str, latency_ms: float) -> dict:
        if answer.status >= 300:
            raise self._refusal(answer, output, name)
        result = {"model": self.settings.model, "version": answer.headers.get("x-segflow-model-version", ""),
                  "output": output, "latency_ms": latency_ms}
        if answer.content_type.startswith("application/json"):
            return {**result, "predictions": answer.json().get("predictions", [])}
        encoded = base64.b64encode(answer.body).decode("ascii")
        return {**result, "image": f"data:{answer.content_type};base64,{encoded}",
                "classes": json.loads(answer.headers.get("x-segflow-classes", "[]"))}

    def _refusal(self, answer: Prediction, output: str, name: str) -> Refusal:
        """TorchServe's error as a message for the page: the handler's own words for a refused image."""
        try:
            detail = answer.json()
        except ValueError:
            detail = {}
        if detail.get("type") == "RejectedInput" and detail.get("reason") == "bad_option":
            return Refusal(400, "bad_option", f"this model cannot answer with {OUTPUTS[output]} "
                           f"({detail.get('message')}); choose another output")
        if detail.get("type") == "RejectedInput":
            return Refusal(answer.status, detail.get("reason", "rejected"), f"{name}: {detail.get('message')}")
        log.warning("%s answered %d: %s", self.settings.endpoint, answer.status, answer.body[:300])
        if _token_refused(answer):
            return Refusal(502, "token_refused", "the model server refused this page's token; whoever runs the page "
                           "must give it the current inference token (the page itself is fine)")
        if answer.status == 404:
            return Refusal(502, "no_model", f"the model server does not serve model {self.settings.model!r} "
                           "(it may still be loading, or be registered under another name)")
        if answer.status == 413:
            return Refusal(413, "too_large", f"{name} is larger than the model server accepts; downscale it")
        return Refusal(502, "model_failed", f"the model server failed on {name} (HTTP {answer.status}); "
                       "try again, and report it if it persists")


def _token_refused(answer: Prediction) -> bool:
    """TorchServe answers a missing, wrong or expired key with 400 InvalidKeyException; the chart's gateway, 401."""
    if answer.status == 401:
        return True
    if answer.status != 400:
        return False
    try:
        return answer.json().get("type") == "InvalidKeyException"
    except ValueError:
        return False


class WebServer:
    """The app served by waitress (a production WSGI server) on host:port, from a background thread."""

    def __init__(self, app: Flask, host: str, port: int, threads: int = 4):
        from waitress import create_server

        # waitress buffers a whole body before the app sees it: bodies far over the app's own limit
        # (which answers a JSON 413) are cut off here, so a huge upload cannot fill the disk.
        self._server = create_server(app, host=host, port=port, threads=threads, ident="segflow",
                                     max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"])
        self.url = f"http://{host}:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, name="segflow-web", daemon=True)

    def start(self) -> str:
        self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        self._server.run()

    def stop(self) -> None:
        """Stop listening and end the worker threads; open keep-alive connections die with the process."""
        self._server.close()
        self._server.task_dispatcher.shutdown()

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_web(
    endpoint: Annotated[str, typer.Argument(help="prediction URL: http://HOST:PORT/predictions/MODEL")],
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 in a pod)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the page")] = 8000,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="largest image accepted, MiB")] = 16,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="file holding the inference token")] = None,
    token: Annotated[str | None, typer.Option(help="inference token", envvar="SEGFLOW_TOKEN", show_default=False,
                                              show_envvar=True)] = None,
) -> None:
    """Serve the web page and its token-holding proxy in front of a TorchServe (or the chart's gateway)."""
    secret = token_file.read_text().strip() if token_file else token
    if not secret:
        raise ServingError("no inference token: set SEGFLOW_TOKEN or pass --token-file FILE; the proxy sends it "
                           "to the model server so the browser never needs it")
    settings = WebSettings(endpoint, max_upload_mb)
    server = WebServer(create_app(settings, StaticToken(secret)), host, port)
    print(f"web page for model {settings.model} on {server.url} (forwarding to {endpoint})", flush=True)
    server.serve_forever()


def main() -> None:
    try:
        typer.run(serve_web)
    except SegflowError as exc:
        Console(stderr=True, soft_wrap=True).print(f"error: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
