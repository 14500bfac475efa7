"""Check that Ctrl-C still reaches the caller once a Ray run has returned in this process."""

from __future__ import annotations

import os
import signal
import time

import pytest


def assert_ctrl_c_raises_keyboard_interrupt() -> None:
    """SIGINT to this process raises KeyboardInterrupt in the main thread, as Python's own handler does.

    A handler left behind by Ray Train or Ray Tune would swallow it (Tune), or call an ended
    run's controller and exit (Train).
    """
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs at the next bytecode; the sleep is what it interrupts
