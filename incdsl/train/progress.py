"""A progress line per epoch: a redrawn bar on a terminal, occasional plain lines otherwise."""
from __future__ import annotations

import math
import threading
import time


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_rate(per_second: float) -> str:
    """`1,234`, `56.7`, `0.31`: a throughput to three significant digits (two below one), so a
    slow run shows its rate instead of `0`; whole numbers from 100 up."""
    if not math.isfinite(per_second) or per_second <= 0:
        return "0" if per_second == 0 else str(per_second)
    digits = 3 if per_second >= 1 else 2
    shown = float(f"{per_second:.{digits}g}")  # rounded first: 9.996 shows as 10.0, not 10.00
    if shown >= 100:
        return f"{per_second:,.0f}"
    return f"{shown:.{max(0, digits - 1 - math.floor(math.log10(shown)))}f}"


def estimate_left(done: int, total: int, elapsed: float, later_epochs: int = 0,
                  epoch_seconds: float | None = None) -> tuple[float | None, float | None]:
    """(seconds left in this epoch, seconds left in the run), or None before the first step.

    The run's estimate adds `later_epochs` epochs of `epoch_seconds` each (the mean of the
    epochs so far, evaluation included), or of this epoch's projected length when none is done.
    """
    if done <= 0 or elapsed <= 0:
        return None, None
    epoch_left = elapsed / done * max(total - done, 0)
    per_epoch = epoch_seconds if epoch_seconds else elapsed / done * total
    return epoch_left, epoch_left + later_epochs * per_epoch


class Progress:
    """Shows `done/total` steps, images per second, the running loss, the learning rate and ETAs.

    On a TTY the line is redrawn in place at least once a second (a timer thread keeps the
    times moving while a long step runs) and `close` erases it; when the epoch ends by an
    exception, `close(ok=False)` ends the line instead, so the message that follows starts on
    a line of its own. Elsewhere (a log file, CI) a plain line is written every `interval`
    seconds, so logs stay short but long epochs still show signs of life.
    """

    def __init__(self, stream, total: int, prefix: str, *, enabled: bool = True, interval: float = 30.0,
                 later_epochs: int = 0, epoch_seconds: float | None = None, tick: float = 1.0):
        self.stream, self.total, self.prefix, self.enabled = stream, total, prefix, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval, self.later_epochs, self.epoch_seconds = interval, later_epochs, epoch_seconds
        self.tick = tick  # seconds between redraws on a terminal when no step ends
        self.start = time.perf_counter()
        self.last = self.start if not self.tty else float("-inf")  # a terminal shows the first step at once
        self.width = 0
        self.state = None  # (done, images, loss, lr) of the latest update
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker = None
        if self.tty:
            self.ticker = threading.Thread(target=self._tick, name="incdsl-progress", daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while not self.stopped.wait(self.tick):
            with self.lock:
                if self.state is not None and not self.stopped.is_set():
                    self._draw(time.perf_counter())

    def update(self, done: int, images: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        with self.lock:
            self.state = (done, images, loss, lr)
            if now - self.last < (0.1 if self.tty else self.interval) and done < self.total:
                return
            if self.tty:
                self._draw(now)
            elif done < self.total:  # the epoch's summary line reports the end
                self.stream.write(f"{self.prefix} {self._stats(now)}\n")
                self.stream.flush()
            self.last = now

    def _stats(self, now: float) -> str:
        done, images, loss, lr = self.state
        elapsed = now - self.start
        rate = images / max(elapsed, 1e-9)
        epoch_left, run_left = estimate_left(done, self.total, elapsed, self.later_epochs, self.epoch_seconds)
        eta = ""
        if epoch_left is not None:
            eta = f"  ETA {format_duration(epoch_left)}"
            if self.later_epochs:
                eta += f" (run {format_duration(run_left)})"
        shown = f"{loss:.4f}" if loss == loss else "-"  # NaN: no loss summed over processes yet
        return f"{done}/{self.total}  {format_rate(rate)} img/s  loss {shown}  lr {lr:.4g}{eta}"

    def _draw(self, now: float) -> None:
        done = self.state[0]
        filled = round(20 * done / max(self.total, 1))
        line = f"{self.prefix} [{'#' * filled}{'.' * (20 - filled)}] {self._stats(now)}"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)
        self.last = now

    def close(self, ok: bool = True) -> None:
        """Stop redrawing; erase the line (`ok`) or end it so a message can follow."""
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
        with self.lock:
            if self.tty and self.width:
                self.stream.write("\r" + " " * self.width + "\r" if ok else "\n")
                self.stream.flush()
                self.width = 0
