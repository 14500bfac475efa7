"""`segflow pipeline submit` authenticates the way Kubeflow's multi-user install requires, and says how when refused.

Stand-in: no Kubeflow Pipelines backend (API server, MySQL, Argo, MinIO, oauth2-proxy) can run
here, so a loopback HTTP server answers the KFP v2beta1 REST calls kfp.Client makes and records
every request as it arrived. The tests assert what the real kfp.Client sent (headers, query,
bodies), not what segflow meant to send; the server's answers are the minimal JSON KFP returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from segflow.config import load_recipe
from segflow.errors import ConfigError, PipelineError
from segflow.pipelines.submit import KubeflowAuth, submit_run

API = "/apis/v2beta1"
SEGFLOW_CLI = str(Path(sys.executable).parent / "segflow")


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # names in lower case: HTTP header names are case-insensitive
    body: dict | None


@dataclass
class StandIn:
    """The loopback KFP API: what it answers (every request refused with `refuse`, if set) and what it got."""

    url: str = ""
    refuse: int = 0
    requests: list[Request] = field(default_factory=list)

    def answer(self, request: Request) -> tuple[int, dict]:
        if self.refuse:
            return self.refuse, {"error": "Unauthenticated", "code": 16, "message": "Unauthenticated"}
        routes = {("GET", f"{API}/healthz"): {"multi_user": True},
                  ("GET", f"{API}/experiments"): {},  # none yet: kfp then creates it
                  ("POST", f"{API}/experiments"): {"experiment_id": "exp-1", "display_name": "segflow"},
                  ("POST", f"{API}/runs"): {"run_id": "run-1", "display_name": "quickstart"}}
        found = routes.get((request.method, request.path))
        return (200, found) if found is not None else (404, {"error": f"no route {request.path}"})

    def requests_to(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == f"{API}/{path}"]


@pytest.fixture
def kfp_api():
    standin = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parsed = urlparse(self.path)
            request = Request(self.command, parsed.path, parse_qs(parsed.query),
                              {k.lower(): v for k, v in self.headers.items()},
                              json.loads(raw) if raw else None)
            standin.requests.append(request)
            status, body = standin.answer(request)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield standin
    server.shutdown()
    server.server_close()


def test_a_token_and_the_namespace_reach_every_request(kfp_api, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOi.sa-token\n")  # as a projected token file: a trailing newline
    url = submit_run(load_recipe("quickstart"), kfp_api.url, "segflow", namespace="team-a",
                     auth=KubeflowAuth.from_options(token_file, None))
    assert url == f"{kfp_api.url}/#/runs/details/run-1"
    assert kfp_api.requests and all(r.headers.get("authorization") == "Bearer eyJhbGciOi.sa-token"
                                    for r in kfp_api.requests)
    assert not kfp_api.requests_to("GET", "healthz")  # the namespace is given: kfp need not guess it
    (lookup,) = kfp_api.requests_to("GET", "experiments")
    assert lookup.query["namespace"] == ["team-a"] and "segflow" in lookup.query["filter"][0]
    (created,) = kfp_api.requests_to("POST", "experiments")
    assert created.body["namespace"] == "team-a" and created.body["display_name"] == "segflow"
    (run,) = kfp_api.requests_to("POST", "runs")
    assert run.body["experiment_id"] == "exp-1"
    parameters = run.body["runtime_config"]["parameters"]
    assert parameters["cluster"] is True and json.loads(parameters["recipe_json"])["name"] == "quickstart"
    # The pipeline travels in the run request, compiled for Kubeflow's MinIO Secret
    pipeline = run.body["pipeline_spec"]
    assert pipeline["pipeline_spec"]["pipelineInfo"]["name"] == "segflow-train-and-serve"
    executors = pipeline["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact"


def test_the_cli_sends_the_session_cookie_from_the_environment(kfp_api):
    cookie = "oauth2_proxy_kubeflow=c2Vzc2lvbg|1733|abc="
    env = {**os.environ, "SEGFLOW_KFP_COOKIE": cookie, "COLUMNS": "300"}
    env.pop("KF_PIPELINES_SA_TOKEN_PATH", None)
    done = subprocess.run([SEGFLOW_CLI, "pipeline", "submit", "quickstart", "--host", kfp_api.url,
                           "--namespace", "team-a", "--experiment", "nightly", "--data",
                           "s3://mlpipeline/datasets/aerial"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"run started: {kfp_api.url}/#/runs/details/run-1" in done.stdout
    assert {r.headers.get("cookie") for r in kfp_api.requests} == {cookie}
    assert not any("authorization" in r.headers for r in kfp_api.requests)
    (created,) = kfp_api.requests_to("POST", "experiments")
    assert created.body == {"display_name": "nightly", "namespace": "team-a"}
    (run,) = kfp_api.requests_to("POST", "runs")
    assert run.body["runtime_config"]["parameters"]["data_path"] == "s3://mlpipeline/datasets/aerial"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_names_the_credentials_to_give(kfp_api, status):
    kfp_api.refuse = status
    with pytest.raises(PipelineError) as refused:
        submit_run(load_recipe("quickstart"), kfp_api.url, "segflow", namespace="team-a",
                   auth=KubeflowAuth(cookie="oauth2_proxy_kubeflow=expired"))
    message = str(refused.value)
    assert f"answered {status}" in message
    for fix in ("--namespace PROFILE", "--token-path FILE", "--cookie 'oauth2_proxy_kubeflow=...'",
                "KF_PIPELINES_SA_TOKEN_PATH", "--audience pipelines.kubeflow.org"):
        assert fix in message
    assert not kfp_api.requests_to("POST", "runs")


def test_an_unreadable_token_file_or_a_bare_cookie_is_refused_before_any_request(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read the token file .*missing.*create token default-editor"):
        KubeflowAuth.from_options(tmp_path / "missing", None)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="token file .*empty is empty"):
        KubeflowAuth.from_options(tmp_path / "empty", None)
    with pytest.raises(ConfigError, match="is not NAME=VALUE.*oauth2_proxy_kubeflow="):
        KubeflowAuth.from_options(None, "c2Vzc2lvbg")
