"""A one-line progress bar over the cells of a run, on stderr, only when stderr is a terminal.

It shows the cell count, a bar, the current problem × optimizer, its phase (``compile`` or
``run``) and the elapsed time, redrawn a few times a second by a daemon thread so that a long
compilation still shows the clock moving. Runs shorter than ``delay_s`` never draw anything, and
nothing is written when stderr is a pipe or a file (CI logs stay clean).
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import Optional, TextIO


class Progress:
    """``with Progress(total) as bar: bar.cell(i, label); bar.phase("compile"); ...``."""

    def __init__(self, total: int, enabled: Optional[bool] = None, stream: Optional[TextIO] = None,
                 delay_s: float = 1.0, interval_s: float = 0.25):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = max(1, int(total))
        self.delay_s = delay_s
        self.interval_s = interval_s
        self.index = 0
        self.label = ""
        self.phase_name = ""
        self.t0 = time.perf_counter()
        self._drawn = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- the caller's side ----------------------------------------------------------------------
    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="optbench-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def cell(self, index: int, label: str) -> None:
        """Cell ``index`` (1-based) of ``total`` starts: ``label`` is "problem × optimizer"."""
        with self._lock:
            self.index, self.label, self.phase_name = index, label, ""
        self.draw()

    def phase(self, name: str) -> None:
        """The current cell entered phase ``name`` ("compile", "run", or "run 3/10" for scipy)."""
        with self._lock:
            self.phase_name = name
        self.draw()

    def close(self) -> None:
        """Stop redrawing and erase the line, so what is printed next starts clean."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        with self._lock:
            if self._drawn:
                self.stream.write("\r" + " " * self._width() + "\r")
                self.stream.flush()
                self._drawn = False

    # -- drawing --------------------------------------------------------------------------------
    def _width(self) -> int:
        # the width of the terminal the bar is drawn on: shutil asks stdout's, and with stdout
        # redirected (`optbench run > out.txt`) fell back to 80 columns, so on a narrower terminal
        # the line wrapped and every redraw scrolled it by a line. $COLUMNS still overrides.
        columns = None
        if not os.environ.get("COLUMNS", "").strip().isdigit():
            try:
                columns = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, ValueError, OSError):   # not a file, or not a terminal
                columns = None
        if not columns:
            columns = shutil.get_terminal_size((80, 24)).columns
        return max(20, columns - 1)

    def line(self) -> str:
        """The text of the bar as it would be drawn now (fixed width; used by tests too)."""
        width = self._width()
        elapsed = time.perf_counter() - self.t0
        done = max(0, self.index - 1)
        head = f"[{self.index}/{self.total}] "
        bar_w = 20
        fill = int(bar_w * done / self.total)
        bar = "#" * fill + "-" * (bar_w - fill)
        tail = f" {self.phase_name:<9} {elapsed:6.1f}s"
        room = width - len(head) - bar_w - len(tail) - 3
        label = self.label if len(self.label) <= room else self.label[:max(0, room - 1)] + "…"
        return f"{head}{bar} {label:<{max(0, room)}} {tail}"[:width]

    def draw(self) -> None:
        if not self.enabled or time.perf_counter() - self.t0 < self.delay_s:
            return
        with self._lock:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            self._drawn = True

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.draw()
