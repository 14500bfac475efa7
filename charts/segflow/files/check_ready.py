"""Readiness: the model has a worker in state READY (TorchServe's /ping says Healthy before that).

TorchServe 0.12 counts a worker that is still running the handler's initialize (loading weights,
warming up) as healthy, so a pod probed on /ping takes traffic that then waits for the load.
This asks the management API on the pod's loopback for the model's workers instead. Standard
library only: it runs every few seconds as the kubelet's exec probe.
"""

import json
import sys
import urllib.request

MANAGEMENT, MODEL = sys.argv[1], sys.argv[2]

try:
    with urllib.request.urlopen(f"{MANAGEMENT}/models/{MODEL}", timeout=4) as response:
        workers = json.load(response)[0].get("workers", [])
except (OSError, ValueError, IndexError) as exc:
    sys.exit(f"model {MODEL} not described by {MANAGEMENT}: {exc}")
states = [worker.get("status") for worker in workers]
if "READY" not in states:
    sys.exit(f"model {MODEL} has no READY worker yet: {states}")
