"""The PrometheusRule's groups pass `promtool check rules`, and each alert fires on its condition only.

promtool's unit tests (`promtool test rules`) feed synthetic series through the rendered rules
with the chart's default `for:` durations and thresholds: an expression that never matches
(a wrong metric or label name, a ratio the wrong way up) fails here, as does one that fires on a
healthy endpoint. The live check, the rules loaded by prometheus-operator's Prometheus and fed by a
real TorchServe, is in test_cluster_monitoring.py.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from support.helm import render_objects
from support.prometheus import binary
from support.real import unavailable

SELECTOR = 'namespace="segflow", job="segflow"'
HEALTHY = [  # 10 requests/s, all 2xx, 50 ms mean latency, 5 ms mean queue time, for 30 minutes
    (f'up{{{SELECTOR}, pod="segflow-a", instance="10.0.0.7:8082"}}', "1+0x30"),
    (f"Requests2XX{{{SELECTOR}, pod=\"segflow-a\"}}", "0+600x30"),
    (f"Requests4XX{{{SELECTOR}, pod=\"segflow-a\"}}", "0+6x30"),
    (f"Requests5XX{{{SELECTOR}, pod=\"segflow-a\"}}", "0+0x30"),
    (f"ts_inference_requests_total{{{SELECTOR}, pod=\"segflow-a\", model_name=\"m\"}}", "0+600x30"),
    (f"ts_inference_latency_microseconds{{{SELECTOR}, pod=\"segflow-a\", model_name=\"m\"}}", "0+30000000x30"),
    (f"ts_queue_latency_microseconds{{{SELECTOR}, pod=\"segflow-a\", model_name=\"m\"}}", "0+3000000x30"),
]


def with_series(**changes: str) -> list[dict]:
    """The healthy series with some replaced, by metric name."""
    return [{"series": series, "values": changes.get(series.split("{")[0], values)} for series, values in HEALTHY]


CASES = {
    # alert -> (input series, whether it fires at minute 30)
    "healthy": (with_series(), set()),
    "down": (with_series(up="1+0x10 0+0x20"), {"SegflowServingDown", "SegflowServingPodDown"}),
    "no_target": ([s for s in with_series() if not s["series"].startswith("up")], {"SegflowServingDown"}),
    "errors": (with_series(Requests5XX="0+60x30"), {"SegflowServingErrors"}),
    # TorchServe creates Requests4XX at its first 4xx: until then only 2xx and 5xx series exist. 606 2xx
    # a minute (the healthy 600 + 6) keep the 9.009 % of `errors`, which the annotation checks.
    "errors_before_any_4xx": ([s for s in with_series(Requests2XX="0+606x30", Requests5XX="0+60x30")
                               if not s["series"].startswith("Requests4XX")], {"SegflowServingErrors"}),
    "few_errors": (with_series(Requests5XX="0+6x30"), set()),  # 1 % of answers: under the 5 % threshold
    "slow": (with_series(ts_inference_latency_microseconds="0+600000000x30"), {"SegflowServingLatencyHigh"}),
    "queueing": (with_series(ts_queue_latency_microseconds="0+300000000x30",
                             ts_inference_latency_microseconds="0+30000000x30"), {"SegflowServingQueueing"}),
}
ALERTS = ["SegflowServingDown", "SegflowServingPodDown", "SegflowServingErrors", "SegflowServingLatencyHigh",
          "SegflowServingQueueing"]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory):
    if binary("promtool") is None:
        unavailable("no promtool; it comes with Debian's prometheus package: apt-get install -y prometheus")
    (rule,) = [o for o in render_objects() if o["kind"] == "PrometheusRule"]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_promtool_check_rules_accepts_the_rendered_groups(rules_file):
    checked = subprocess.run([binary("promtool"), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_on_its_condition_and_not_on_a_healthy_endpoint(rules_file):
    rules = {r["alert"]: r for group in yaml.safe_load(rules_file.read_text())["groups"] for r in group["rules"]}
    assert sorted(rules) == sorted(ALERTS)
    tests = []
    for name, (series, firing) in CASES.items():
        checks = [{"eval_time": "30m", "alertname": alert,
                   "exp_alerts": [_expected(alert, rules[alert])] if alert in firing else []} for alert in ALERTS]
        tests.append({"name": name, "interval": "1m", "input_series": series, "alert_rule_test": checks})
    unit = rules_file.parent / "rules_test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [rules_file.name], "evaluation_interval": "1m", "tests": tests},
                                   sort_keys=False))
    result = subprocess.run([binary("promtool"), "test", "rules", str(unit)], capture_output=True, text=True,
                            cwd=rules_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


# What the annotations' templates must expand to for the firing cases above.
EXPANSIONS = {
    "$labels.pod": "segflow-a",
    "$labels.instance": "10.0.0.7:8082",
    "$value | humanizePercentage": "9.009%",  # 60 / (600 + 6 + 60) answers per minute were 5xx
}
VALUES = {"SegflowServingLatencyHigh": "1000", "SegflowServingQueueing": "500"}  # ms, from the series above


def _expected(alert: str, rule: dict) -> dict:
    """The labels an alert carries (its severity and what its expression keeps) and its expanded annotations."""
    labels = {"severity": rule["labels"]["severity"]}
    if alert in ("SegflowServingDown", "SegflowServingPodDown"):
        labels |= {"namespace": "segflow", "job": "segflow"}
    if alert == "SegflowServingPodDown":
        labels |= {"pod": "segflow-a", "instance": "10.0.0.7:8082"}
    expansions = EXPANSIONS | {"$value | printf `%.0f`": VALUES.get(alert, "")}
    annotations = {key: re.sub(r"\{\{ (.+?) \}\}", lambda m: expansions[m.group(1)], text)
                   for key, text in rule["annotations"].items()}
    return {"exp_labels": labels, "exp_annotations": annotations}
