"""Progress of long phases (bottleneck extraction, classifying a folder), without dependencies.

On a terminal, one line is redrawn in place with ``\\r`` (at most 10 times a
second).  Anywhere else (pipes, log files, cron mail) there are no control
characters at all: a plain line at most every ``interval_s`` seconds and one
final line, e.g.::

    Bottlenecks: 300/1000 (30%), 11.2/s, 1m02s left
    Bottlenecks: 1000/1000 (100%), 11.5/s, done in 1m27s
"""
from __future__ import annotations

import math
import shutil
import sys
import threading
import time

TTY_REDRAW_S = 0.1  # at most 10 redraws a second on a terminal
BAR_WIDTH = 24


def format_duration(seconds) -> str:
    """``7s``, ``1m02s``, ``2h05m``; ``?`` when unknown (None, NaN, infinite)."""
    if seconds is None:
        return "?"
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return "?"
    if math.isnan(seconds) or math.isinf(seconds):
        return "?"
    total = int(round(max(0.0, seconds)))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_rate(per_second: float) -> str:
    if per_second >= 100:
        return f"{per_second:.0f}/s"
    if per_second >= 1:
        return f"{per_second:.1f}/s"
    return f"{per_second:.2f}/s"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class Progress:
    """Count work items and show how far along, how fast and how long is left.

    ``with Progress(len(jobs), "Bottlenecks") as p: ... p.update(n)``.
    ``enabled=False`` (for --quiet) makes every method a no-op.  ``clock`` is
    a seconds counter, injectable for tests.  ``tty`` forces terminal mode on
    or off (default: ``stream.isatty()``).  Safe to update from several threads.
    """

    def __init__(
        self,
        total: int,
        description: str,
        stream=None,
        interval_s: float = 10.0,
        enabled: bool = True,
        clock=time.monotonic,
        tty: bool | None = None,
    ):
        self.total = max(0, int(total))
        self.description = description
        self.stream = sys.stderr if stream is None else stream
        self.interval_s = float(interval_s)
        self.enabled = enabled
        self.clock = clock
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.count = 0
        self.closed = False
        self._lock = threading.Lock()
        self._start = clock()
        self._last_draw = self._start  # a plain line only after interval_s, not at once
        self._drawn_width = 0
        if self.enabled and self.tty and self.total:
            self._draw_tty(self._start)

    # -- public -----------------------------------------------------------------

    def update(self, n: int = 1) -> None:
        if not self.enabled or self.closed or n == 0:
            return
        with self._lock:
            self.count += n
            now = self.clock()
            if self.tty:
                if now - self._last_draw >= TTY_REDRAW_S or self._drawn_width == 0:
                    self._draw_tty(now)
            elif now - self._last_draw >= self.interval_s:
                self._write(self.plain_line(now) + "\n")
                self._last_draw = now

    def close(self, failed: bool = False) -> None:
        """Draw the final state and end the line; further calls do nothing."""
        if not self.enabled or self.closed:
            self.closed = True
            return
        with self._lock:
            self.closed = True
            if not self.total and not self.count:
                if self.tty and self._drawn_width:
                    self._write("\n")
                return
            now = self.clock()
            if self.tty:
                self._draw_tty(now, final=True, failed=failed)
                self._write("\n")
            else:
                self._write(self.plain_line(now, final=True, failed=failed) + "\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    # -- text -------------------------------------------------------------------

    def _numbers(self, now: float):
        elapsed = max(0.0, now - self._start)
        rate = self.count / elapsed if elapsed > 0 and self.count else None
        left = (max(0, self.total - self.count) / rate) if rate else None
        return elapsed, rate, left

    def _fraction(self) -> float | None:
        return min(1.0, self.count / self.total) if self.total else None

    def plain_line(self, now: float | None = None, final: bool = False, failed: bool = False) -> str:
        """``Bottlenecks: 300/1000 (30%), 11.2/s, 1m02s left`` - printable characters only."""
        now = self.clock() if now is None else now
        elapsed, rate, left = self._numbers(now)
        parts = [f"{self.description}: {self._count_text()}"]
        fraction = self._fraction()
        if fraction is not None:
            parts[0] += f" ({fraction * 100:.0f}%)"
        if rate is not None:
            parts.append(format_rate(rate))
        if failed:
            parts.append(f"stopped after {format_duration(elapsed)}")
        elif final:
            parts.append(f"done in {format_duration(elapsed)}")
        else:
            parts.append(f"{format_duration(left)} left")
        return ", ".join(parts)

    def tty_line(self, now: float | None = None, final: bool = False, failed: bool = False) -> str:
        """``Bottlenecks [#####-----]  30% 300/1000 11.2/s 0m27s elapsed, 1m02s left`` (no ``\\r``)."""
        now = self.clock() if now is None else now
        elapsed, rate, left = self._numbers(now)
        fraction = self._fraction()
        bar = ""
        if fraction is not None:
            filled = int(fraction * BAR_WIDTH)
            bar = f" [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%"
        rate_text = format_rate(rate) if rate is not None else "?/s"
        if failed:
            tail = f"stopped after {format_duration(elapsed)}"
        elif final:
            tail = f"done in {format_duration(elapsed)}"
        else:
            tail = f"{format_duration(elapsed)} elapsed, ETA {format_duration(left)}"
        line = f"{self.description}{bar} {self._count_text()} {rate_text} {tail}"
        columns = shutil.get_terminal_size((100, 24)).columns
        if len(line) >= columns and bar:  # never wrap: a wrapped line cannot be redrawn with \r
            line = line.replace(bar, f" {fraction * 100:.0f}%")
        return line[: max(10, columns - 1)]

    def _count_text(self) -> str:
        return f"{self.count}/{self.total}" if self.total else str(self.count)

    # -- output -----------------------------------------------------------------

    def _draw_tty(self, now: float, final: bool = False, failed: bool = False) -> None:
        line = self.tty_line(now, final, failed)
        pad = max(0, self._drawn_width - len(line))  # wipe what a longer previous line left
        self._write("\r" + line + " " * pad)
        self._drawn_width = len(line)
        self._last_draw = now

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed pipe or stream: progress is never worth a crash
            self.enabled = False
