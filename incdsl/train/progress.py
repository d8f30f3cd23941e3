"""A progress line per epoch: a redrawn bar on a terminal, occasional plain lines otherwise."""
from __future__ import annotations

import time


class Progress:
    """Shows `done/total` steps with images per second, the running loss and the learning rate.

    On a TTY the line is redrawn in place (at most ten times a second) and erased by `close`;
    elsewhere (a log file, CI) a plain line is written every `interval` seconds, so logs stay
    short but long epochs still show signs of life.
    """

    def __init__(self, stream, total: int, prefix: str, *, enabled: bool = True, interval: float = 30.0):
        self.stream, self.total, self.prefix, self.enabled = stream, total, prefix, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval = interval
        self.start = self.last = time.perf_counter()
        self.width = 0

    def update(self, done: int, images: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < (0.1 if self.tty else self.interval) and done < self.total:
            return
        self.last = now
        rate = images / max(now - self.start, 1e-9)
        stats = f"{done}/{self.total}  {rate:,.0f} img/s  loss {loss:.4f}  lr {lr:.4g}"
        if self.tty:
            filled = round(20 * done / max(self.total, 1))
            line = f"{self.prefix} [{'#' * filled}{'.' * (20 - filled)}] {stats}"
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif done < self.total:  # the epoch's summary line reports the end
            self.stream.write(f"{self.prefix} {stats}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
