"""charts/segflow renders, lints and validates strictly for every supported set of values; bad values are refused.

Rendered with the Helm SDK (no cluster). Every object is checked with kubernetes-validate in strict
mode (unknown fields are errors) against Kubernetes 1.30 and 1.33, custom resources against the
prometheus-operator CRD schemas in ../shared/schemas; then the policies a reviewer would check by
hand: hardened security contexts, resources on every container, secrets only by reference,
pinned images, and the management API nowhere reachable.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from support.crd import validate_any
from support.helm import CHART, VALUE_SETS, chart, find, render, render_objects

SECRET_ENV = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|ROOT_USER", re.IGNORECASE)


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request):
    return request.param, render_objects(VALUE_SETS[request.param])


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """(owner, pod spec) of every pod the release can create: Deployments, Jobs and the helm test pod."""
    specs = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            specs.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((f"Pod/{obj['metadata']['name']}", obj["spec"]))
    return specs


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def test_lint_is_clean_for_every_value_set():
    import helm_python

    for name, values in VALUE_SETS.items():
        report = helm_python.lint(CHART, values, strict=True, namespace="segflow", kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [], f"{name}: {problems}"


def test_every_object_validates_strictly_on_kubernetes_1_30_and_1_33(rendered):
    name, objects = rendered
    for obj in objects:
        assert validate_any(obj, ("1.30", "1.33")) == [], f"{name}: {obj['kind']}/{obj['metadata']['name']}"


def test_the_strict_validation_would_catch_a_misspelt_field():
    deployment = copy.deepcopy(find(render_objects(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert any("readinessProbes" in e for e in validate_any(deployment))


def test_every_container_is_hardened(rendered):
    name, objects = rendered
    for owner, spec in pod_specs(objects):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, owner
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", owner
        assert spec["automountServiceAccountToken"] is False, owner
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), owner
        for container in containers(spec):
            security = container["securityContext"]
            where = f"{name}: {owner} {container['name']}"
            assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"]["type"] == "RuntimeDefault", where
            assert "add" not in security["capabilities"], where


def test_the_root_filesystem_is_read_only_so_tmp_is_a_volume_everywhere(rendered):
    _, objects = rendered
    for owner, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{owner} {container['name']} has no writable /tmp"


def test_every_container_sets_requests_and_a_memory_limit(rendered):
    name, objects = rendered
    for owner, spec in pod_specs(objects):
        for container in containers(spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), f"{name}: {owner} {container['name']}"
            assert "memory" in resources["limits"], f"{name}: {owner} {container['name']}"


def test_images_are_pinned_never_latest(rendered):
    name, objects = rendered
    for owner, spec in pod_specs(objects):
        for container in containers(spec):
            repository, _, tag = container["image"].rpartition(":")
            assert repository and "/" not in tag and tag not in ("", "latest"), f"{name}: {owner} {container['image']}"
            assert container["imagePullPolicy"] != "Always", f"{owner}: a pinned tag needs no Always pull"


def test_secret_values_are_never_inline(rendered):
    """Credentials reach containers only through secretKeyRef; no value of the chart's Secrets appears elsewhere."""
    name, objects = rendered
    for owner, spec in pod_specs(objects):
        for container in containers(spec):
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {owner} {env['name']} is inline"
    secrets = [o for o in objects if o["kind"] == "Secret"]
    values = {v for s in secrets for v in s.get("data", {}).values()}
    elsewhere = yaml.safe_dump([o for o in objects if o["kind"] != "Secret"])
    assert not [v for v in values if v in elsewhere]
    for secret in secrets:
        assert "stringData" not in secret and secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_management_api_is_reachable_from_nowhere(rendered):
    _, objects = rendered
    properties = find(objects, "ConfigMap", "segflow")["data"]["config.properties"]
    config = dict(line.split("=", 1) for line in properties.splitlines())
    for key in ("inference_address", "management_address"):
        assert config[key].startswith("http://127.0.0.1:"), key
    assert config["grpc_inference_address"] == config["grpc_management_address"] == "127.0.0.1"
    assert config["disable_token_authorization"] == "true"  # the gateway checks the token instead
    service = find(objects, "Service", "segflow")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"gateway", "metrics"}
    serving = find(objects, "Deployment", "segflow")["spec"]["template"]["spec"]
    exposed = {p["containerPort"] for c in serving["containers"] for p in c.get("ports", [])}
    management = int(config["management_address"].rsplit(":", 1)[1])
    assert management not in exposed and int(config["inference_address"].rsplit(":", 1)[1]) not in exposed


def test_probes_need_no_token_and_the_gateway_refuses_requests_without_one():
    objects = render_objects()
    serving = find(objects, "Deployment")["spec"]["template"]["spec"]
    torchserve, gateway = serving["containers"]
    for probe in ("startupProbe", "readinessProbe"):
        assert torchserve[probe]["exec"]["command"] == ["python", "/srv/segflow/config/check_ready.py",
                                                        "http://127.0.0.1:8081", "quickstart"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "gateway"}
    template = find(objects, "ConfigMap", "segflow")["data"]["gateway.conf.template"]
    assert "location = /ping" in template and "return 401" in template and '"Bearer ${SEGFLOW_TOKEN}" 1;' in template


def test_gpu_values_request_devices_and_tolerate_gpu_nodes():
    serving = find(render_objects(VALUE_SETS["gpu"]), "Deployment")["spec"]["template"]["spec"]
    torchserve = next(c for c in serving["containers"] if c["name"] == "torchserve")
    assert torchserve["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in serving["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in serving["tolerations"]
    assert serving["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    gpu_config = find(render_objects(VALUE_SETS["gpu"]), "ConfigMap", "segflow")["data"]["config.properties"]
    cpu_config = find(render_objects(), "ConfigMap", "segflow")["data"]["config.properties"]
    assert "number_of_gpu=2" in gpu_config and "number_of_gpu=0" in cpu_config


def test_autoscaling_owns_the_replicas_on_cpu_or_requests_per_second():
    cpu = render_objects(VALUE_SETS["hpa_cpu"])
    assert "replicas" not in find(cpu, "Deployment")["spec"]  # the HPA's count must not be reset by upgrades
    assert find(cpu, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    requests = find(render_objects(VALUE_SETS["hpa_requests"]), "HorizontalPodAutoscaler")["spec"]["metrics"][0]
    assert requests["pods"]["metric"]["name"] == "segflow_inference_requests_per_second"
    assert requests["pods"]["target"] == {"type": "AverageValue", "averageValue": "25"}


def test_minio_mode_serves_from_the_charts_minio_with_generated_credentials():
    objects = render_objects(VALUE_SETS["minio"])
    serving = find(objects, "Deployment", "segflow")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in serving["initContainers"][0]["env"]}
    assert env["SEGFLOW_S3_ENDPOINT"]["value"] == "http://segflow-minio.segflow.svc:9000"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "segflow-minio"
    assert find(objects, "Secret", "segflow-minio")["data"].keys() == {"accesskey", "secretkey"}
    job = find(objects, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (maker,) = job["spec"]["template"]["spec"]["containers"]
    serving_image = serving["containers"][0]["image"]
    assert maker["image"] == serving_image and 'client.make_bucket("segflow")' in maker["command"][-1]
    assert find(objects, "PersistentVolumeClaim")["spec"]["storageClassName"] == "standard"
    selector = find(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items()
    scraped = [s["metadata"]["name"] for s in objects
               if s["kind"] == "Service" and selector <= s["metadata"]["labels"].items()]
    assert scraped == ["segflow"]  # MinIO's Service is not mistaken for a serving one


def test_ingress_routes_to_the_gateway_and_lets_images_through():
    ingress = find(render_objects(VALUE_SETS["ingress"]), "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "segflow", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "64m"


def test_network_policy_admits_the_helm_test_pod_when_peers_are_restricted():
    objects = render_objects(VALUE_SETS["own_secrets_and_peers"])
    policy = find(objects, "NetworkPolicy")
    peers = policy["spec"]["ingress"][0]["from"]
    test_pod = find(objects, "Pod")
    assert any(p.get("podSelector", {}).get("matchLabels", {}).items() <= test_pod["metadata"]["labels"].items()
               for p in peers if "podSelector" in p)
    assert not [o for o in objects if o["kind"] == "Secret"]  # the token comes from the user's Secret
    init = find(objects, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][3] == "s3://segflow/runs/quickstart/archive/3f2a9c01"


def test_the_web_page_is_off_by_default_and_the_notes_say_how_to_open_it():
    assert not [o for o in render_objects() if "web" in o["metadata"]["name"]]
    assert "Web page:" not in render()["templates/NOTES.txt"]
    assert "port-forward svc/segflow-web 8081:80" in render(VALUE_SETS["web"])["templates/NOTES.txt"]


def test_the_web_page_has_its_own_pods_and_service_and_sends_the_secrets_token_to_the_gateway():
    objects = render_objects(VALUE_SETS["web"])
    pod = find(objects, "Deployment", "segflow-web")["spec"]["template"]
    (web,) = pod["spec"]["containers"]
    assert web["command"] == ["python", "-m", "segflow.serving.webapp",
                              "http://segflow.segflow.svc:80/predictions/quickstart",
                              "--host", "0.0.0.0", "--port", "8000", "--max-upload-mb", "16"]
    token = {e["name"]: e for e in web["env"]}["SEGFLOW_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "segflow-auth", "key": "token"}
    assert web["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    labels = pod["metadata"]["labels"].items()
    serving_labels = find(objects, "Deployment", "segflow")["spec"]["template"]["metadata"]["labels"].items()
    service = find(objects, "Service", "segflow-web")["spec"]
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]
    assert service["selector"].items() <= labels and not service["selector"].items() <= serving_labels
    assert not find(objects, "Service", "segflow")["spec"]["selector"].items() <= labels  # no inference on web pods
    for selected in (find(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
                     find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert not selected.items() <= labels


def test_the_network_policies_let_the_web_page_reach_the_gateway_and_its_users_reach_the_page():
    objects = render_objects(VALUE_SETS["web"])
    labels = find(objects, "Deployment", "segflow-web")["spec"]["template"]["metadata"]["labels"].items()
    gateway = find(objects, "NetworkPolicy", "segflow")["spec"]["ingress"][0]
    assert any(p["podSelector"]["matchLabels"].items() <= labels for p in gateway["from"] if "podSelector" in p)
    page = find(objects, "NetworkPolicy", "segflow-web")["spec"]
    assert page["podSelector"]["matchLabels"].items() <= labels
    assert page["ingress"] == [{"ports": [{"port": "web", "protocol": "TCP"}],
                                "from": VALUE_SETS["web"]["networkPolicy"]["webFrom"]}]


def test_a_web_upload_limit_over_what_the_gateway_accepts_fails_with_both_values_named():
    import helm_python

    over = r"web.maxUploadMB \(65 MiB\) is over torchserve.maxRequestBytes \(67108864 bytes\)"
    with pytest.raises(helm_python.HelmRenderError, match=over):
        render({"web": {"enabled": True, "maxUploadMB": 65}})


def test_notes_give_the_commands_to_check_and_use_the_release():
    notes = render()["templates/NOTES.txt"]
    for command in ("kubectl -n segflow rollout status deploy/segflow", "helm test segflow -n segflow",
                    "kubectl -n segflow get secret segflow-auth", "segflow predict image.png --endpoint",
                    "--set model.archiveVersion="):
        assert command in notes
    minio_notes = render(VALUE_SETS["minio"])["templates/NOTES.txt"]
    assert "port-forward svc/segflow-minio 9000:9000" in minio_notes and "segflow package" in minio_notes


def test_the_charts_metrics_config_is_the_serving_layers():
    serving = (CHART.parents[1] / "serving" / "metrics.yaml").read_text()
    assert (CHART / "files" / "metrics.yaml").read_text() == serving, "copy serving/metrics.yaml to the chart's files/"


def test_dashboard_is_a_labelled_configmap_with_a_unique_uid_per_release():
    dashboards = [find(render_objects(release=release), "ConfigMap", f"{fullname}-dashboard")
                  for release, fullname in (("segflow", "segflow"), ("canary", "canary-segflow"))]
    uids = set()
    for configmap in dashboards:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = configmap["data"].values()
        dashboard = json.loads(text)
        uids.add(dashboard["uid"])
        assert len(dashboard["uid"]) <= 40 and not re.search(r"__[A-Z]+__", text)  # every placeholder filled
        titles = {p["title"] for p in dashboard["panels"]}
        assert {"Requests per second", "Answers by status", "Latency", "Queue time", "Batch size",
                "Predicted class mix", "CPU", "Memory"} <= titles
    assert len(uids) == 2


@pytest.mark.parametrize("values, names", [
    ({"image": {"tag": "latest"}}, "image/tag"),
    ({"gateway": {"image": {"repository": "nginx", "tag": "1.28"}}}, "gateway"),
    ({"minio": {"image": {"tag": ""}}}, "minio/image/tag"),
    ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
    ({"securityContext": {"capabilities": {"drop": [], "add": ["NET_ADMIN"]}}}, "capabilities"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    ({"torchserve": {"resources": {"limits": None}}}, "limits"),
    ({"model": {"name": "my model"}}, "model/name"),
    ({"model": {"archiveUri": "https://bucket/archive"}}, "model/archiveUri"),
    ({"autoscaling": {"metric": "memory"}}, "autoscaling/metric"),
    ({"replicas": 2}, "replicas"),
    ({"prometheusRule": {"for": {"down": "2 minutes"}}}, "prometheusRule/for/down"),
    ({"listenAddress": "*"}, "listenAddress"),
    ({"minio": {"bucket": "Bad_Bucket"}}, "minio/bucket"),
    ({"auth": {"existingSecret": "Not A Name"}}, "auth/existingSecret"),
    ({"web": {"port": 80}}, "web/port"),
    ({"web": {"resources": {"limits": None}}}, "web/resources"),
    ({"web": {"maxUploadMB": 0}}, "web/maxUploadMB"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_invalid_values_are_refused_by_the_schema_naming_the_key(values, names):
    import helm_python

    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart().validate_schema(values)  # merges with the chart's defaults first, as an install does
    assert names in str(refused.value), str(refused.value)
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_autoscaling_bounds_the_wrong_way_round_fail_with_the_values_named():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=r"maxReplicas \(2\) is below autoscaling.minReplicas \(5\)"):
        render({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_the_packaged_chart_holds_its_files_and_renders_the_same(tmp_path):
    """`helm package` output (what a chart repository serves) carries files/ and renders what the folder does."""
    import helm_python

    archive = chart().save(tmp_path)
    packaged = helm_python.Chart.load_archive(open(archive, "rb").read())
    values = VALUE_SETS["own_secrets_and_peers"]  # no generated Secret: renders are deterministic
    ours, theirs = (c.render(values, name="segflow", namespace="segflow") for c in (chart(), packaged))
    assert archive.endswith("segflow-0.1.0.tgz") and ours == theirs
