"""A client for TorchServe's management API: register a model version, make it the default, list versions.

What `segflow deploy` and the pipeline's deploy step use to put a new model version live on a
running TorchServe without restarting it. TorchServe's answers are turned into ServingErrors
that say what to do: a server that is down, a wrong key (TorchServe answers 400, not 401,
and only the *management* key manages), the model API switched off, an archive it refuses.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from segflow.errors import ServingError

# Registering loads the archive and starts a worker before TorchServe answers (synchronous=true).
REGISTER_TIMEOUT_S = 300
KEY_HINT = ("TorchServe answers 400 (not 401) to a missing, wrong or expired key: give the *management* key "
            "(key_file.json's \"management\" entry, not the inference key); keys expire after 60 minutes "
            "unless TorchServe was started with a longer token_expiration_min")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as TorchServe describes it."""

    name: str
    version: str
    url: str
    ready_workers: int


class ManagementClient:
    """Talks to one TorchServe management address with the management key."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ServingError(f"management URL {url!r} is not an http(s) URL; use TorchServe's management "
                               "address, like http://127.0.0.1:8081 or http://segflow-torchserve:8081 in a cluster")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def register(self, mar_url: str, initial_workers: int = 1) -> str:
        """Register the archive at `mar_url` (http(s):// or file:// that TorchServe can read); returns its message.

        TorchServe downloads the archive into its model store, named by the URL's last path segment,
        and answers once the version's workers are up.
        """
        query = urllib.parse.urlencode({"url": mar_url, "initial_workers": initial_workers, "synchronous": "true"})
        answer = self._call("POST", f"/models?{query}", f"register {_short(mar_url)}", REGISTER_TIMEOUT_S)
        return answer.get("status", str(answer))

    def set_default(self, name: str, version: str) -> str:
        """Route /predictions/NAME to `version` from now on (already-running versions stay registered)."""
        path = f"/models/{_quote(name)}/{_quote(version)}/set-default"
        answer = self._call("PUT", path, f"make version {version} of {name!r} the default")
        return answer.get("status", str(answer))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every registered version of `name`; an empty list when the model is not registered."""
        try:
            described = self._call("GET", f"/models/{_quote(name)}/all", f"list the versions of {name!r}")
        except _NotFound:
            return []
        return [_model_version(entry) for entry in described]

    def default_version(self, name: str) -> str | None:
        try:
            described = self._call("GET", f"/models/{_quote(name)}", f"describe {name!r}")
        except _NotFound:
            return None
        return described[0]["modelVersion"] if described else None

    def unregister(self, name: str, version: str) -> str:
        answer = self._call("DELETE", f"/models/{_quote(name)}/{_quote(version)}",
                            f"unregister version {version} of {name!r}")
        return answer.get("status", str(answer))

    def _call(self, method: str, path: str, action: str, timeout: float | None = None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _refusal(exc, self.url, action) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServingError(f"cannot reach TorchServe's management API at {self.url} to {action} ({reason}); "
                               "is TorchServe running, and is this its management address (port 8081 by default, "
                               "not the inference port)?") from None


class _NotFound(ServingError):
    """A 404 for a model name: callers that ask 'is it registered?' turn it into an empty answer."""


def _refusal(exc: urllib.error.HTTPError, url: str, action: str) -> ServingError:
    try:
        detail = json.loads(exc.read() or b"{}")
    except ValueError:
        detail = {}
    kind, message = detail.get("type", ""), _without_queries(str(detail.get("message", exc.reason)))
    if kind == "InvalidKeyException":
        return ServingError(f"TorchServe at {url} refused the key to {action}: {message} ({KEY_HINT})")
    if exc.code == 404 and kind in ("ModelNotFoundException", ""):
        return _NotFound(f"TorchServe at {url} could not {action}: {message}")
    if exc.code == 405:
        return ServingError(f"TorchServe at {url} has its model API switched off and cannot {action} ({message}); "
                            "start it with enable_model_api=true in config.properties (segflow serve does)")
    return ServingError(f"TorchServe at {url} refused to {action}: {exc.code} {kind}: {message}".replace(":  ", ": "))


def _model_version(entry: dict) -> ModelVersion:
    ready = sum(1 for worker in entry.get("workers", []) if worker.get("status") == "READY")
    return ModelVersion(entry["modelName"], entry["modelVersion"], entry.get("modelUrl", ""), ready)


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _short(url: str) -> str:
    """A URL without its query string: presigned URLs carry credentials that do not belong in messages."""
    return url.split("?", 1)[0]


def _without_queries(message: str) -> str:
    """TorchServe's message with every URL's query string cut (it echoes presigned URLs back)."""
    return re.sub(r"(\w+://[^\s?\"']*)\?[^\s\"']*", r"\1", message)
