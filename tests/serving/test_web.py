"""The web page in headless Chromium, against a real TorchServe that `segflow serve --web` started.

A user's path through the page: pick or drop an image, choose the output, see the answer
beside the original with its legend, the model version and the latency; and a clear message
for a file that is not an image, one over the upload limit, one TorchServe refuses, an output
the model does not have, and a model server that is down. The pixels the page shows are checked
against the in-process model, the token is looked for in everything the browser received, and a
refused (expired) key is renewed by the proxy. Chromium is Debian's (`make test` installs it),
driven by Playwright without its own browser download. Screenshots are kept (see the
`[artifact]` lines after the run).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segflow.data.palette import palette
from segflow.serving.archive import package
from segflow.serving.codec import overlay_png
from segflow.serving.server import read_keys
from support.net import free_port, wait_for_port
from support.real import unavailable
from support.serving import (
    CLOTHES,
    MAX_PIXELS,
    encode,
    noise,
    reference_mask,
    save_tiny_classifier,
    save_tiny_segmenter,
    segflow_serve,
    web_form,
)

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium")
MAX_UPLOAD_MIB = 1  # small, so an over-limit upload is quick to make
ANSWER_TIMEOUT_MS = 60_000  # a first request on a busy 2-core machine


@dataclass
class Web:
    url: str
    run_dir: Path
    process: subprocess.Popen
    reference: tuple  # (model, config) of the served segmenter
    version: str  # its model version

    def keys(self) -> dict[str, str]:
        return read_keys(self.run_dir / "key_file.json")

    def management(self) -> str:
        settings = dict(line.split("=", 1) for line in (self.run_dir / "config.properties").read_text().splitlines())
        return settings["management_address"]


def _serve_web(root: Path, model_uri: str) -> tuple[list[str], str]:
    port = free_port()
    archive = package(model_uri)
    return ([archive.uri, "--run-dir", str(root / "serve"), "--web", "--web-port", str(port),
             "--max-upload-mb", str(MAX_UPLOAD_MIB)], f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    root = tmp_path_factory.mktemp("web")
    model, config, card = save_tiny_segmenter(str(root / "run" / "model"), {"max_pixels": MAX_PIXELS})
    arguments, url = _serve_web(root, str(root / "run" / "model"))
    with segflow_serve(arguments, root / "serve.out", ready="web page:") as process:
        yield Web(url, root / "serve", process, (model, config), card["version"])


@pytest.fixture(scope="module")
def classifier_web(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("web-classifier")
    save_tiny_classifier(str(root / "run" / "model"))
    arguments, url = _serve_web(root, str(root / "run" / "model"))
    with segflow_serve(arguments, root / "serve.out", ready="web page:"):
        yield url


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        unavailable("no chromium on PATH: install Debian's package as root (apt-get install -y chromium; "
                    "`make test` does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1180, "height": 860})
    page = context.new_page()
    page.set_default_timeout(ANSWER_TIMEOUT_MS)
    yield page
    context.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#output option", state="attached")  # the page's config has arrived


def _pick(page, name: str, body: bytes, mime: str = "image/png") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": body}])


def _drop(page, name: str, body: bytes, mime: str) -> None:
    """A real drop event on the drop zone, carrying the file in its DataTransfer."""
    page.evaluate("""([name, data, mime]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [name, base64.b64encode(body).decode(), mime])


def _result_image(page) -> Image.Image:
    page.wait_for_selector("#result:not([hidden])")
    source = page.get_attribute("#result", "src")
    assert source.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))


def _error(page) -> str:
    page.wait_for_selector("#error:not([hidden])")
    return page.inner_text("#error")


def _legend(page) -> list[tuple[str, str, str]]:
    """(class name, swatch colour as CSS computes it, fraction text) per legend row."""
    page.wait_for_selector("#legend:not([hidden]) tbody tr")
    return page.eval_on_selector_all("#legend tbody tr", """rows => rows.map(row => [
        row.cells[0].textContent, getComputedStyle(row.querySelector('.swatch')).backgroundColor,
        row.cells[1].textContent])""")


def test_picked_image_shows_the_overlay_legend_model_version_and_latency(web, page, keep_artifact):
    image = noise(120, 160, 21)
    expected = reference_mask(*web.reference, image)
    _open(page, web.url)
    assert page.inner_text("#model") == "model: tiny"
    assert page.input_value("#output") == "overlay"
    _pick(page, "shapes.png", encode(image, "PNG"))
    overlay = np.asarray(_result_image(page))
    colours = palette(web.reference[1].classes)
    assert np.array_equal(overlay, np.asarray(Image.open(io.BytesIO(overlay_png(image, expected, colours)))))
    present = np.unique(expected)
    names = [c.name for c in web.reference[1].classes]
    rows = _legend(page)
    assert [row[0] for row in rows] == [names[i] for i in present]
    assert [row[1] for row in rows] == ["rgb({}, {}, {})".format(*colours[i]) for i in present]
    assert [row[2] for row in rows] == [f"{(expected == i).mean() * 100:.1f} %" for i in present]
    meta = page.inner_text("#meta")
    assert f"model tiny, version {web.version}" in meta and "ms at the model server" in meta and "round trip" in meta
    assert page.is_visible("#original") and page.get_attribute("#original", "alt") == "shapes.png"
    page.screenshot(path=keep_artifact("web/overlay.png"), full_page=True)


def test_dropped_jpeg_gives_the_mask_then_the_cutout_when_the_output_changes(web, page):
    body = encode(noise(90, 70, 22), "JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    expected = reference_mask(*web.reference, decoded)
    _open(page, web.url)
    page.select_option("#output", "mask")
    _drop(page, "photo.jpg", body, "image/jpeg")
    mask = _result_image(page)
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), expected)
    page.select_option("#output", "cutout")  # the last image is sent again with the new choice
    page.wait_for_selector("#result-caption:has-text('cutout')")
    cutout = np.asarray(_result_image(page))
    assert cutout.shape == (90, 70, 4) and np.array_equal(cutout[:, :, 3] == 0, expected == 0)
    assert page.inner_text("#result-caption") == "Result: cutout (background removed)"


def test_a_file_that_is_not_an_image_is_refused_with_its_name(web, page, keep_artifact):
    _open(page, web.url)
    _pick(page, "notes.txt", b"shopping list: milk, eggs\n", "text/plain")
    assert _error(page) == "notes.txt is not a PNG, JPEG, WebP or TIFF image; choose an image in one of those formats"
    page.wait_for_selector("#original", state="hidden")  # the browser cannot preview it either
    assert page.is_hidden("#result") and page.is_hidden("#details")
    page.screenshot(path=keep_artifact("web/not-an-image.png"), full_page=True)


def test_a_file_over_the_upload_limit_names_the_limit(web, page):
    big = encode(noise(700, 800, 23), "PNG")  # noise does not compress: about 1.6 MiB
    assert len(big) > MAX_UPLOAD_MIB * 1024 * 1024
    _open(page, web.url)
    assert f"up to {MAX_UPLOAD_MIB}.0 MiB" in page.inner_text("#formats")
    _pick(page, "huge.png", big)
    message = _error(page)
    assert message.startswith("the file is 1.6 MiB; this page accepts images up to 1 MiB"), message


def test_an_image_torchserve_refuses_shows_the_handlers_reason(web, page):
    png = encode(noise(40, 50), "PNG")
    _open(page, web.url)
    _pick(page, "cut.png", png[: len(png) // 2])
    assert _error(page).startswith("cut.png: the PNG image data is truncated or corrupt")


def test_an_output_the_model_does_not_have_says_so(web, page):
    _open(page, web.url)
    page.select_option("#output", "topk")
    _pick(page, "shapes.png", encode(noise(30, 30), "PNG"))
    assert _error(page).startswith("this model cannot answer with classification top-k (output 'topk' is not one of")


def test_a_classifier_answers_its_top_k(classifier_web, browser, keep_artifact):
    page = browser.new_page(viewport={"width": 1180, "height": 700})
    try:
        page.set_default_timeout(ANSWER_TIMEOUT_MS)
        _open(page, classifier_web)
        page.select_option("#output", "topk")
        _pick(page, "shirt.png", encode(noise(28, 28, 24), "PNG"))
        page.wait_for_selector("#topk:not([hidden]) li")
        items = page.eval_on_selector_all("#topk li", "items => items.map(item => item.textContent)")
        assert sorted(item.split(":")[0] for item in items) == sorted(CLOTHES)
        shares = [float(item.split(": ")[1].removesuffix(" %")) for item in items]
        assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(100, abs=0.3)
        assert page.is_hidden("#legend") and page.is_hidden("#result")
        assert "model clothes, version" in page.inner_text("#meta")
        page.screenshot(path=keep_artifact("web/top-k.png"), full_page=True)
    finally:
        page.close()


def test_the_token_never_reaches_the_browser(web, page):
    received = []
    page.on("response", lambda response: received.append(response))
    _open(page, web.url)
    _pick(page, "shapes.png", encode(noise(40, 40), "PNG"))
    _legend(page)
    _pick(page, "notes.txt", b"not an image", "text/plain")
    _error(page)
    # blob: URLs are the page's own preview of the picked file, made in the browser
    seen = [(r.url, json.dumps(r.all_headers()), r.body()) for r in received if r.url.startswith(web.url)]
    for path, form in (("/api/config", None), ("/healthz", None), ("/no/such/page", None),
                       ("/api/predict", (b"", "multipart/form-data; boundary=x")),
                       ("/api/predict", web_form("x.png", encode(noise(20, 20), "PNG"), "mask"))):
        seen.append(_http(web.url + path, form))
    assert {"/", "/static/app.js", "/static/style.css", "/api/config", "/api/predict"} <= {
        "/" + url.split("/", 3)[3] for url, _, _ in seen}
    for kind, key in web.keys().items():
        leaks = [url for url, headers, body in seen if key in headers or key.encode() in body]
        assert leaks == [], f"the {kind} key was sent to the browser by {leaks}"


def test_a_refused_key_is_renewed_and_the_request_sent_again(web):
    image = web_form("a.png", encode(noise(24, 24), "PNG"), "mask")
    assert json.loads(_http(web.url + "/api/predict", image)[2])["output"] == "mask"  # the proxy holds a key now
    renewal = urllib.request.Request(f"{web.management()}/token?type=inference",
                                     headers={"Authorization": f"Bearer {web.keys()['API']}"})
    urllib.request.urlopen(renewal, timeout=30).close()  # as after 60 minutes: the proxy's key is void
    renewed_elsewhere = web.keys()["inference"]
    url, _, body = _http(web.url + "/api/predict", image)
    assert json.loads(body)["output"] == "mask", body[:300]
    assert web.keys()["inference"] != renewed_elsewhere  # refused once, the proxy renewed the key itself


def test_a_model_server_that_is_down_is_named_as_such(page, closed_port, tmp_path):
    """The page as the chart runs it (`python -m segflow.serving.webapp`, token from the env), TorchServe absent."""
    port = free_port()
    command = [sys.executable, "-m", "segflow.serving.webapp", f"http://127.0.0.1:{closed_port}/predictions/tiny",
               "--port", str(port)]
    with open(tmp_path / "web.out", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "SEGFLOW_TOKEN": "a-token-of-the-gateway"})
    try:
        wait_for_port(port, process)
        _open(page, f"http://127.0.0.1:{port}")
        _pick(page, "shapes.png", encode(noise(30, 30), "PNG"))
        assert _error(page).startswith("the model server is not answering: it is down or still starting")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_web_page_needs_a_token_to_start(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "SEGFLOW_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "segflow.serving.webapp", "http://127.0.0.1:1/predictions/tiny"],
                            capture_output=True, text=True, timeout=120, env={**environment, "COLUMNS": "200"})
    assert result.returncode == 1 and "no inference token: set SEGFLOW_TOKEN or pass --token-file" in result.stderr


def test_ctrl_c_stops_the_page_with_torchserve(web):
    web.process.send_signal(signal.SIGINT)
    assert web.process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(web.url + "/healthz", timeout=5)


def _http(url: str, form: tuple[bytes, str] | None) -> tuple[str, str, bytes]:
    """(url, headers as JSON, body) of a GET, or of a POST of `form` (body, Content-Type), whatever the status."""
    body, headers = (form[0], {"Content-Type": form[1]}) if form else (None, {})
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return url, json.dumps(dict(response.headers)), response.read()
    except urllib.error.HTTPError as exc:
        return url, json.dumps(dict(exc.headers)), exc.read()
