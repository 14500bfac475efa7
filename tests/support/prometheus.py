"""Prometheus as the tests use it: Debian's promtool for rule files, and the HTTP API of a running Prometheus."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request


def binary(name: str = "prometheus") -> str | None:
    return shutil.which(name)


class PrometheusAPI:
    """What a test asks a running Prometheus at URL: instant queries, alerts, targets, rules."""

    def __init__(self, url: str):
        self.url = url

    def _get(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.url}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` gives now; a bad query raises with Prometheus' message."""
        answer = self._get("/api/v1/query", {"query": expr})
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer.get('error')}")
        return answer["data"]["result"]

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending, firing) of the active alerts."""
        return {a["labels"]["alertname"]: a["state"] for a in self._get("/api/v1/alerts")["data"]["alerts"]}

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["data"]["activeTargets"]

    def rules(self) -> list[dict]:
        """The loaded rule groups, each with its file, rules, their queries and health."""
        return self._get("/api/v1/rules")["data"]["groups"]

    def wait_for(self, check, timeout: float, what):
        """Poll `check()` every 0.5 s until it returns something truthy; after `timeout`, fail saying `what`.

        `what` may be a function, called only then: the message can tell the state at the time of failure.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"after {timeout:.0f} s: {what() if callable(what) else what}")
