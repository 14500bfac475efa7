"""A real TorchServe, started once for this module by `segflow serve` on free loopback ports.

Masks equal the in-process model's pixel for pixel, every output format answers, concurrent
requests are batched, the bad-input corpus is answered 4xx while the worker lives on, the
custom metrics reach /metrics, a real Prometheus scrapes them, requests without the key are
refused, and Ctrl-C stops every process the server started.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from segflow.data.palette import palette
from segflow.serving.archive import package
from segflow.serving.client import InferenceClient, Prediction
from segflow.serving.server import read_keys
from support.net import free_port, wait_for_port
from support.real import unavailable
from support.serving import (
    MAX_PIXELS,
    SEGFLOW,
    bad_inputs,
    convertible_inputs,
    encode,
    noise,
    reference_mask,
    save_tiny_segmenter,
    segflow_serve,
)

pytestmark = pytest.mark.slow
SERVING = {"batch_size": 8, "max_batch_delay_ms": 50, "max_pixels": MAX_PIXELS}
SIZES = [(64, 64), (80, 120), (37, 53), (150, 100)]


@dataclass
class Served:
    process: subprocess.Popen
    run_dir: Path
    model: str
    inference: str
    management: str
    metrics: str
    reference: object  # (model, config)
    version: str  # the model version the archive packages

    @property
    def predictions(self) -> str:
        return f"{self.inference}/predictions/{self.model}"

    def key(self, kind: str = "inference") -> str:
        return read_keys(self.run_dir / "key_file.json")[kind]

    def client(self) -> InferenceClient:
        return InferenceClient(self.predictions, self.key())

    def expected(self, image: np.ndarray) -> np.ndarray:
        return reference_mask(*self.reference, image)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    model, config, card = save_tiny_segmenter(str(root / "run" / "model"), SERVING)
    archive = package(str(root / "run" / "model"))
    ports = {"--port": free_port(), "--management-port": free_port(), "--metrics-port": free_port()}
    run_dir = root / "serve"
    arguments = [archive.uri, "--run-dir", str(run_dir), *[str(a) for kv in ports.items() for a in kv]]
    with segflow_serve(arguments, root / "serve.out") as process:
        yield Served(process, run_dir, "tiny", f"http://127.0.0.1:{ports['--port']}",
                     f"http://127.0.0.1:{ports['--management-port']}", f"http://127.0.0.1:{ports['--metrics-port']}",
                     (model, config), card["version"])


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> Prediction:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Prediction(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as exc:
        return Prediction(exc.code, exc.headers.get("Content-Type", ""), exc.read())


def _png_mask(answer: Prediction) -> Image.Image:
    assert answer.status == 200 and answer.content_type == "image/png", answer.body[:300]
    return Image.open(io.BytesIO(answer.body))


def _scrape(served: Served) -> dict[str, float]:
    """Every sample on the metrics port (no key needed), summed over labels: name{labels} -> value."""
    status, text = _get(f"{served.metrics}/metrics")
    assert status == 200
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix + "{") or k == prefix)


def test_mask_equals_the_in_process_model_pixel_for_pixel(served):
    with served.client() as client:
        for seed, (height, width) in enumerate(SIZES):
            image = noise(height, width, seed)
            mask = _png_mask(client.predict(encode(image, "PNG"), "mask"))
            assert mask.mode == "P" and mask.size == (width, height)
            assert np.array_equal(np.asarray(mask), served.expected(image))
            colours = np.array(mask.getpalette()[:9]).reshape(3, 3)
            assert np.array_equal(colours, palette(served.reference[1].classes))


def test_each_output_format(served):
    image = noise(80, 120, 7)
    expected = served.expected(image)
    body = encode(image, "PNG")
    with served.client() as client:
        summary = client.predict(body, "json", rle=True).json()
        overlay_answer = client.predict(body, "overlay")
        overlay = _png_mask(overlay_answer)
        cutout = np.asarray(_png_mask(client.predict(body, "cutout")))
    assert {c["index"] for c in summary["classes"]} == set(np.unique(expected).tolist())
    legend = json.loads(overlay_answer.headers["x-segflow-classes"])  # what the web page draws its legend from
    assert [(c["name"], c["fraction"]) for c in legend] == [(c["name"], c["fraction"]) for c in summary["classes"]]
    assert legend[0]["colour"] == "#000000" and overlay_answer.headers["x-segflow-model-version"] == served.version
    assert sum(c["fraction"] for c in summary["classes"]) == pytest.approx(1.0, abs=1e-5)
    for entry in summary["classes"]:
        region = coco_mask.decode({"size": entry["rle"]["size"], "counts": entry["rle"]["counts"].encode()})
        assert np.array_equal(region, expected == entry["index"]) and entry["pixels"] == int(region.sum())
    assert overlay.mode == "RGB" and overlay.size == (120, 80)
    assert cutout.shape == (80, 120, 4) and np.array_equal(cutout[:, :, 3] == 0, expected == 0)


def test_output_by_accept_header_multipart_field_and_query(served):
    body = encode(noise(40, 50, 3), "PNG")
    auth = {"Authorization": f"Bearer {served.key()}"}
    by_accept = _post(served.predictions, body, {**auth, "Content-Type": "image/png", "Accept": "application/json"})
    assert by_accept.status == 200 and by_accept.content_type == "application/json" and by_accept.json()["width"] == 50
    boundary = "segflowtestboundary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"output\"\r\n\r\noverlay\r\n"
                 f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"x.png\"\r\n"
                 f"Content-Type: image/png\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    by_field = _post(served.predictions, multipart, {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert Image.open(io.BytesIO(by_field.body)).mode == "RGB"
    by_query = _post(f"{served.inference}/{served.model}/predict?output=json", body, {**auth, "Content-Type": "image/png"})
    assert by_query.status == 200 and by_query.json()["height"] == 40
    unknown = _post(served.predictions, body, {**auth, "Content-Type": "image/png", "X-Segflow-Output": "bogus"})
    assert unknown.status == 400 and "not one of mask, json, overlay, cutout" in unknown.json()["message"]


def test_concurrent_requests_are_batched_and_stay_exact(served):
    images = [noise(*SIZES[i % len(SIZES)], seed=100 + i) for i in range(24)]
    before = _scrape(served)

    def one(image: np.ndarray) -> bool:
        with served.client() as client:
            return np.array_equal(np.asarray(_png_mask(client.predict(encode(image, "PNG"), "mask"))), served.expected(image))

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert all(pool.map(one, images))
    after = _scrape(served)
    batches = _total(after, "segflow_batch_size_count") - _total(before, "segflow_batch_size_count")
    requests = _total(after, "segflow_batch_size_sum") - _total(before, "segflow_batch_size_sum")
    assert requests == len(images) and batches < len(images), f"{requests} requests in {batches} batches"


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.name)
def test_bad_input_gets_a_4xx_json_answer(served, case):
    answer = _post(served.predictions, case.body, {"Authorization": f"Bearer {served.key()}",
                                                    "Content-Type": case.content_type})
    assert answer.status == case.status, answer.body[:300]
    assert answer.content_type == "application/json" and answer.json()["reason"] == case.reason


@pytest.mark.parametrize("case", convertible_inputs(), ids=lambda c: c.name)
def test_other_formats_and_modes_are_converted(served, case):
    answer = _post(served.predictions, case.body, {"Authorization": f"Bearer {served.key()}",
                                                    "Content-Type": case.content_type, "X-Segflow-Output": "mask"})
    assert _png_mask(answer).size == (50, 40)


def test_a_batch_mixing_bad_and_good_requests_answers_each_and_the_worker_lives(served):
    worker_before = _worker_pid(served)
    cases = [*bad_inputs(), *convertible_inputs()]

    def one(case) -> int:
        return _post(served.predictions, case.body, {"Authorization": f"Bearer {served.key()}",
                                                     "Content-Type": case.content_type}).status

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        statuses = list(pool.map(one, cases))
    assert statuses == [c.status for c in cases]
    image = noise(64, 64, 9)
    with served.client() as client:
        assert np.array_equal(np.asarray(_png_mask(client.predict(encode(image, "PNG"), "mask"))), served.expected(image))
    assert _worker_pid(served) == worker_before


def _worker_pid(served: Served) -> int:
    status, text = _get(f"{served.management}/models/{served.model}", served.key("management"))
    assert status == 200, text
    return json.loads(text)[0]["workers"][0]["pid"]


def test_custom_metrics_reach_the_metrics_port(served):
    samples = _scrape(served)
    for name in ("segflow_preprocess_seconds_count", "segflow_inference_seconds_sum", "segflow_image_megapixels_count",
                 "segflow_batch_size_count", "segflow_images_total", "segflow_class_pixel_fraction_count",
                 "ts_inference_requests_total"):
        assert _total(samples, name) > 0, name
    assert any('reason="too_many_pixels"' in k for k in samples if k.startswith("segflow_rejected_requests_total"))
    assert any('class_name="square"' in k for k in samples if k.startswith("segflow_class_pixel_fraction_count"))


def test_requests_without_the_key_are_refused(served):
    body = encode(noise(20, 20), "PNG")
    for token in (None, "wrong"):
        answer = InferenceClient(served.predictions, token).send(body)
        assert answer.status == 400 and answer.json()["type"] == "InvalidKeyException"
    assert _get(f"{served.inference}/ping")[0] == 400
    status, text = _get(f"{served.inference}/ping", served.key())
    assert status == 200 and json.loads(text)["status"] == "Healthy"
    assert _get(f"{served.management}/models")[0] == 400
    assert _get(f"{served.management}/models", served.key())[0] == 400  # the inference key does not manage
    assert _get(f"{served.metrics}/metrics")[0] == 200


def test_every_listener_is_on_loopback(served):
    settings = dict(line.split("=", 1) for line in (served.run_dir / "config.properties").read_text().splitlines())
    ports = {int(settings[k]) for k in ("grpc_inference_port", "grpc_management_port")}
    ports |= {int(settings[k].rsplit(":", 1)[1]) for k in ("inference_address", "management_address", "metrics_address")}
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in ports:  # 0A: LISTEN
                listening.setdefault(int(port, 16), set()).add(address)
    assert set(listening) == ports
    assert all(addresses <= {"0100007F", "0000000000000000FFFF00000100007F"} for addresses in listening.values()), listening


def test_segflow_predict_command(served, tmp_path):
    image = noise(30, 40, 5)
    (tmp_path / "in.png").write_bytes(encode(image, "PNG"))
    common = [SEGFLOW, "predict", str(tmp_path / "in.png"), "--endpoint", served.predictions,
              "--key-file", str(served.run_dir / "key_file.json")]
    mask = subprocess.run([*common, "--format", "mask", "--out", str(tmp_path / "mask.png")],
                          capture_output=True, text=True, timeout=120)
    assert mask.returncode == 0, mask.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mask.png")), served.expected(image))
    summary = subprocess.run([*common, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0 and json.loads(summary.stdout)["width"] == 40
    refused = subprocess.run([SEGFLOW, "predict", str(tmp_path / "in.png"), "--endpoint", served.predictions],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert refused.returncode == 1 and "400 (not 401)" in refused.stderr and "--key-file" in refused.stderr


@pytest.fixture
def prometheus(served, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("no prometheus binary; install Debian's package as root: apt-get update && apt-get install -y prometheus")
    target = urllib.parse.urlsplit(served.metrics).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: torchserve\n    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_prometheus_scrapes_torchserve_and_rate_has_data(served, prometheus):
    query = "sum(rate(ts_inference_requests_total[5s])) + sum(rate(segflow_images_total[5s]))"
    body = encode(noise(32, 32, 11), "PNG")
    deadline = time.monotonic() + 60
    with served.client() as client:
        while time.monotonic() < deadline:
            client.predict(body, "mask")
            status, text = _get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
            result = json.loads(text)["data"]["result"] if status == 200 else []
            if result and float(result[0]["value"][1]) > 0:
                return
            time.sleep(0.5)
    pytest.fail(f"no rate() data from Prometheus after 60 s; last answer: {text[:500]}")


def test_ctrl_c_stops_torchserve_and_leaves_no_process(served):
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=60) == 0
    leftovers = [pid for pid in _pids() if str(served.run_dir) in _cmdline(pid)]
    assert leftovers == [], [_cmdline(pid) for pid in leftovers]
    assert not (served.run_dir / "tmp" / ".model_server.pid").exists()


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
