"""A compiled pipeline step's pod as KFP's driver would create it, for tests on a node without a KFP backend.

No KFP backend runs on these machines (its driver and launcher are Go programs from
github.com/kubeflow/pipelines, which the Go module proxy here refuses). What the driver would do is
done here from the compiled IR YAML: the step's container (image, command, args with the executor
input in place of `{{$}}`) and the env its Kubernetes platform spec asks for (the container's own
variables, Secret keys, downward-API fields). The pod prints the executor output the component wrote
after EXECUTOR_OUTPUT, which KFP's launcher would upload instead.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

EXECUTOR_OUTPUT = "EXECUTOR-OUTPUT"  # the line after which the pod's log holds the executor output
OUTPUT_METADATA = "/tmp/kfp_outputs/output_metadata.json"


def artifact(name: str, schema: str, uri: str, metadata: dict | None = None) -> dict:
    """One artifact of an executor input (inputs.artifacts or outputs.artifacts), e.g. schema system.Model."""
    return {"artifacts": [{"name": name, "type": {"schemaTitle": schema}, "uri": uri, "metadata": metadata or {}}]}


def executor(pipeline: Path, step: str) -> tuple[dict, dict]:
    """The step's container and its Kubernetes platform settings, from the compiled pipeline."""
    spec, platform = [d for d in yaml.safe_load_all(pipeline.read_text()) if d]
    name = f"exec-{step}"
    return (spec["deploymentSpec"]["executors"][name]["container"],
            platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].get(name, {}))


def env(container: dict, platform: dict) -> list[dict]:
    """The env KFP's driver gives the step's pod: the container's own, Secret keys and downward-API fields."""
    variables = [{"name": e["name"], "value": e["value"]} for e in container.get("env", [])]
    for secret in platform.get("secretAsEnv", []):
        name = secret.get("secretName") or secret["secretNameParameter"]["runtimeValue"]["constant"]
        variables += [{"name": k["envVar"], "valueFrom": {"secretKeyRef": {"name": name, "key": k["secretKey"]}}}
                      for k in secret["keyToEnv"]]
    variables += [{"name": f["name"], "valueFrom": {"fieldRef": {"fieldPath": f["fieldPath"]}}}
                  for f in platform.get("fieldPathAsEnv", [])]
    return variables


def step_pod(pipeline: Path, step: str, executor_input: dict, *, name: str, namespace: str, service_account: str,
             resources: dict | None = None) -> dict:
    """STEP of the compiled PIPELINE as a Pod running EXECUTOR_INPUT, printing its executor output at the end.

    executor_input is KFP's: inputs.parameterValues and inputs.artifacts, outputs.parameters, outputs.artifacts
    (see `artifact`) and outputs.outputFile, which should be OUTPUT_METADATA. The image must be on the node
    (imagePullPolicy Never); /tmp and /minio are emptyDirs, as the launcher's.
    """
    container, platform = executor(pipeline, step)
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    script = " ".join(["exec", *map(shlex.quote, container["command"] + args)])
    command = ["sh", "-c", f"({script}) && echo {EXECUTOR_OUTPUT} && cat {OUTPUT_METADATA}"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"serviceAccountName": service_account, "restartPolicy": "Never",
                     "containers": [{"name": "main", "image": container["image"], "imagePullPolicy": "Never",
                                     "command": command, "env": env(container, platform),
                                     "resources": resources or {"requests": {"cpu": "50m", "memory": "512Mi"}},
                                     "volumeMounts": [{"name": "minio", "mountPath": "/minio"},
                                                      {"name": "tmp", "mountPath": "/tmp"}]}],
                     "volumes": [{"name": "minio", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}


def executor_output(log: str) -> dict:
    """The executor output a step pod (step_pod) printed at the end of its log."""
    return json.loads(log.split(EXECUTOR_OUTPUT, 1)[1])


def deploy_step_pod(pipeline: Path, archive_uri: str, archive_version: str, release_uri: str, *, name: str,
                    namespace: str, service_account: str) -> dict:
    """The deploy step's pod (after the quality gate): ARCHIVE_URI (minio://...) with its version in, release out.

    Compile the pipeline with `segflow pipeline compile --helm-release NAME[/NAMESPACE]` for the step to upgrade
    that release; its executor output then holds the release artifact's metadata (mode helm-release, revision,
    previous_version, namespace).
    """
    executor_input = {
        "inputs": {"parameterValues": {"management_url": ""},
                   "artifacts": {"archive": artifact("archive", "system.Artifact", archive_uri,
                                                     {"version": archive_version})}},
        "outputs": {"parameters": {"Output": {"outputFile": "/tmp/kfp_outputs/Output"}},
                    "artifacts": {"release": artifact("release", "system.Artifact", release_uri)},
                    "outputFile": OUTPUT_METADATA}}
    return step_pod(pipeline, "deploy", executor_input, name=name, namespace=namespace,
                    service_account=service_account)
