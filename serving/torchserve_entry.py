"""The handler file every .mar ships: TorchServe imports it, and it hands over to installed segflow.

The handler itself lives in the package, not in the archive, so a worker runs the same tested
code as the `segflow` command; the worker's Python needs `segflow[serve]` installed.
"""

from segflow.serving.handler import handle

__all__ = ["handle"]
