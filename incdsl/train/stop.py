"""SIGTERM (a cluster's preemption, `kill`, `timeout`) stops training between two steps, so that
the run ends as on Ctrl-C, saying how to resume, instead of dying without a word.

The handler only records the request: an exception raised from a signal handler can land
anywhere, inside a `fork` that starts a data-loading worker say, where it hung the run. The
training and validation loops honour it at their next batch. A second SIGTERM stops at once.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_requested = threading.Event()


class Terminated(KeyboardInterrupt):
    """Training stopped on SIGTERM (a KeyboardInterrupt: it ends the run as Ctrl-C does)."""


def check() -> None:
    """Raise `Terminated` if a SIGTERM has come: call it where stopping is safe (between steps)."""
    if _requested.is_set():
        raise Terminated()


def _on_sigterm(signum, frame) -> None:
    if _requested.is_set():  # asked twice: do not wait for the step to end
        raise Terminated()
    _requested.set()


@contextmanager
def sigterm_stops_training():
    """Within the block, SIGTERM asks the training loops to stop (main thread only: signals
    reach no other)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _requested.clear()
