"""`helm test`: one image through the Service must come back as a mask summary, and no token, no answer.

Runs in the serving image (segflow is installed there). Reads SEGFLOW_ENDPOINT (the model's
/predictions URL) and SEGFLOW_TOKEN (from the auth Secret); exits non-zero with the reason on
any failure, so `helm test` shows what broke.
"""

import io
import os
import sys

import numpy as np
from PIL import Image

from segflow.serving.client import InferenceClient

WIDTH, HEIGHT = 96, 64


def main() -> int:
    endpoint, token = os.environ["SEGFLOW_ENDPOINT"], os.environ["SEGFLOW_TOKEN"]
    image = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(image, "PNG")
    with InferenceClient(endpoint, None) as anonymous:
        refused = anonymous.send(image.getvalue(), "json")
    if refused.status != 401:
        return fail(f"a request without the token got {refused.status}, not 401: the gateway lets anyone in")
    with InferenceClient(endpoint, token) as client:
        answer = client.send(image.getvalue(), "json")
    if answer.status != 200:
        return fail(f"{endpoint} answered {answer.status}: {answer.body[:500]!r}")
    summary = answer.json()
    if (summary.get("width"), summary.get("height")) != (WIDTH, HEIGHT):
        return fail(f"the answer describes a {summary.get('width')}x{summary.get('height')} image, "
                    f"not the {WIDTH}x{HEIGHT} one sent: {summary}")
    total = sum(entry["fraction"] for entry in summary.get("classes", []))
    if abs(total - 1.0) > 1e-3:
        return fail(f"class fractions sum to {total}, not 1: {summary}")
    names = ", ".join(f"{entry['name']} {entry['fraction']:.2f}" for entry in summary["classes"])
    print(f"ok: {endpoint} answered a {WIDTH}x{HEIGHT} image with classes {names}")
    return 0


def fail(message: str) -> int:
    print(f"FAILED: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
