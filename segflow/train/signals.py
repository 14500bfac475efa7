"""Signal handlers that Ray installs and never gives back.

Ray Train's `TorchTrainer.fit` (on the main thread) and Ray Tune's `Tuner.fit` replace the
process's SIGINT handler with their own and leave it there when they return. A later Ctrl-C in
the same process then reaches a handler for a run that has ended: Tune's swallows it, Train's
calls a dead controller. Whoever calls them from segflow does so inside `kept_signal_handlers`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RAY_SIGNALS = (signal.SIGINT, signal.SIGUSR1)


@contextmanager
def kept_signal_handlers(signals: tuple[signal.Signals, ...] = RAY_SIGNALS) -> Iterator[None]:
    """Whatever handles `signals` before the block handles them again after it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set them
        yield
        return
    saved = {number: signal.getsignal(number) for number in signals}
    try:
        yield
    finally:
        for number, handler in saved.items():
            if handler is not None:  # None: installed outside Python, nothing to put back
                signal.signal(number, handler)
