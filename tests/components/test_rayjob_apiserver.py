"""The train step's submit-and-follow against a real kube-apiserver, as the pipeline runner's ServiceAccount.

The step runs with a token the API server issued to segflow-pipeline-runner (TokenRequest), so
k8s/rbac.yaml decides what it may do, as in the cluster. No KubeRay operator runs here: the
test writes the recorded statuses (tests/components/recorded, the shape KubeRay 1.7 writes; the retry, written from
KubeRay 1.5's controller, says so) into
the RayJob's status subresource, standing in for the operator, and the step follows them.
Where no kube-apiserver can be built these tests skip and say why; test_rayjob_submit.py replays
the same statuses through a loopback stand-in.
"""

from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from segflow.components.rayjob import GROUP, PLURAL, VERSION, ClusterSettings, rayjob_manifest, submit_and_follow
from segflow.errors import PipelineError
from support.kube import not_as_written

RECORDED = Path(__file__).parent / "recorded"
NAMES = (f"segflow-quickstart-{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def cluster(kube_api):
    kube_api.install_crds()
    kube_api.apply_k8s()
    return kube_api


@pytest.fixture(scope="module")
def runner(cluster):
    """The CustomObjectsApi the step gets in its pod: the pipeline runner's ServiceAccount token."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                  expiration_seconds=3600))
    token = client.CoreV1Api(cluster.client()).create_namespaced_service_account_token(
        "segflow-pipeline-runner", "segflow", request).status.token
    return client.CustomObjectsApi(cluster.client(token))


@pytest.fixture(scope="module")
def operator(cluster):
    """The admin's CustomObjectsApi, writing RayJob statuses as KubeRay would."""
    from kubernetes import client

    return client.CustomObjectsApi(cluster.client())


def manifest(name: str, namespace: str = "segflow") -> dict:
    return rayjob_manifest(name, "s3://runs/q/recipe.json", "s3://mlpipeline/data/q", "s3://mlpipeline/runs/q",
                           ClusterSettings(namespace=namespace))


def follow(runner, operator, recording: str) -> tuple[dict, object]:
    """Submit a RayJob as the runner while the operator stand-in plays RECORDING; (stored job, outcome)."""
    job = manifest(next(NAMES))
    name = job["metadata"]["name"]
    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(submit_and_follow, runner, job, poll_s=0.1, timeout_s=120)
        stored = _wait_created(operator, name)
        for status in json.loads((RECORDED / recording).read_text())["statuses"]:
            if status:
                operator.patch_namespaced_custom_object_status(GROUP, VERSION, "segflow", PLURAL, name,
                                                               {"status": status}, field_validation="Strict")
            time.sleep(0.3)
        try:
            outcome = step.result(timeout=60)
        except PipelineError as exc:
            outcome = exc
    assert not_as_written(job["spec"], stored["spec"]) == []  # stored as submitted, nothing pruned
    return stored, outcome


def test_the_step_creates_the_rayjob_and_follows_it_to_success(runner, operator):
    stored, outcome = follow(runner, operator, "rayjob_succeeded.json")
    assert outcome["jobStatus"] == "SUCCEEDED" and outcome["jobDeploymentStatus"] == "Complete"
    assert stored["metadata"]["uid"] and stored["metadata"]["generation"] == 1


def test_a_failed_job_fails_the_step_with_the_jobs_message(runner, operator):
    _, outcome = follow(runner, operator, "rayjob_failed.json")
    assert isinstance(outcome, PipelineError)
    assert "ended Failed (AppFailed), job FAILED: Job entrypoint command failed" in str(outcome)
    assert "NaN/inf in epoch 3" in str(outcome)


def test_kuberays_retries_run_to_their_end(runner, operator):
    """A failed attempt that KubeRay retries (backoffLimit) is not the end of the step: the retry's success is."""
    stored, outcome = follow(runner, operator, "rayjob_retried.json")
    assert not isinstance(outcome, Exception), outcome
    assert outcome["jobStatus"] == "SUCCEEDED" and outcome["failed"] == 1 and outcome["succeeded"] == 1


def test_the_step_is_refused_outside_its_namespace(runner):
    with pytest.raises(PipelineError, match=r"refused RayJob default/segflow-elsewhere: 403 Forbidden"):
        submit_and_follow(runner, manifest("segflow-elsewhere", "default"), poll_s=0.1, timeout_s=5)


def test_a_rayjob_of_the_same_name_is_refused(runner, operator):
    job = manifest(next(NAMES))
    operator.create_namespaced_custom_object(GROUP, VERSION, "segflow", PLURAL, job)
    with pytest.raises(PipelineError, match=r"refused RayJob segflow/.*: 409 Conflict.*already exists"):
        submit_and_follow(runner, job, poll_s=0.1, timeout_s=5)


def _wait_created(operator, name: str, timeout: float = 30.0) -> dict:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return operator.get_namespaced_custom_object(GROUP, VERSION, "segflow", PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        time.sleep(0.1)
    raise TimeoutError(f"RayJob segflow/{name} was not created within {timeout} s")
