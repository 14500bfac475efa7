"""A small HTTP client for a served model: what `segflow predict` and the serving benchmark use.

It sends what TorchServe needs and plain HTTP clients get wrong: a Content-Type naming the
image format (with none, or with urllib's form encoding, TorchServe mangles the body), the
inference key as `Authorization: Bearer`, and the output choice as an `X-Segflow-Output`
header, which survives `/predictions/NAME` where TorchServe 0.12 drops the query string. One
keep-alive connection per client; a client is not shared between threads.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from segflow.errors import ServingError
from segflow.serving.codec import CONTENT_TYPES, image_format
from segflow.serving.server import read_keys

TOKEN_HINT = ("TorchServe answers 400 (not 401) to a missing, wrong or expired key: pass --token KEY or "
              "--key-file RUN_DIR/key_file.json (printed by `segflow serve`); the inference key expires after "
              "60 minutes and is renewed with the API key")


@dataclass(frozen=True)
class Prediction:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # by lower-case name

    def json(self) -> dict:
        return json.loads(self.body)


def token_from(token: str | None, key_file: Path | None) -> str | None:
    """The inference key: given outright, or read from a TorchServe key_file.json."""
    if token:
        return token
    return read_keys(key_file)["inference"] if key_file else None


class InferenceClient:
    """POSTs images to one prediction endpoint over one keep-alive connection."""

    def __init__(self, endpoint: str, token: str | None = None, timeout: float = 60.0):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ServingError(f"endpoint {endpoint!r} is not an http(s) URL; use the one `segflow serve` prints, "
                               "like http://127.0.0.1:8080/predictions/MODEL")
        self.endpoint, self.token, self.timeout = endpoint, token, timeout
        self._url = url
        self._connection: http.client.HTTPConnection | None = None

    def send(self, image: bytes, output: str | None = None, rle: bool = False) -> Prediction:
        """One request; returns whatever status the server gave (the caller decides what is an error)."""
        headers = {"Content-Type": CONTENT_TYPES.get(image_format(image) or "", "application/octet-stream")}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if output:
            headers["X-Segflow-Output"] = output
        if rle:
            headers["X-Segflow-Rle"] = "true"
        path = self._url.path + (f"?{self._url.query}" if self._url.query else "")
        try:
            try:
                return self._post(path, image, headers)
            except (ConnectionResetError, BrokenPipeError):  # includes RemoteDisconnected
                self.close()  # the server closed an idle keep-alive connection: one fresh try
                return self._post(path, image, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ServingError(f"cannot reach {self.endpoint} ({exc}); is `segflow serve` running?") from None

    def predict(self, image: bytes, output: str | None = None, rle: bool = False) -> Prediction:
        """Like send, but a non-2xx answer raises ServingError with the server's message."""
        answer = self.send(image, output, rle)
        if answer.status >= 300:
            raise ServingError(_describe_failure(self.endpoint, answer))
        return answer

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Prediction:
        connection = self._connect()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Prediction(response.status, headers.get("content-type", ""), response.read(), headers)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self._url.hostname, self._url.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe_failure(endpoint: str, answer: Prediction) -> str:
    try:
        detail = answer.json()
    except ValueError:
        detail = {"message": answer.body[:500].decode(errors="replace")}
    message = f"{endpoint} answered {answer.status}: {detail.get('message', detail)}"
    if detail.get("type") == "InvalidKeyException":
        message += f" ({TOKEN_HINT})"
    return message
