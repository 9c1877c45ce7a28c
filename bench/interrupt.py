"""Turning SIGINT and SIGTERM into an orderly stop of ``optbench run``.

Python delivers SIGINT as :class:`KeyboardInterrupt` wherever the interpreter happens to be, and
SIGTERM kills the process outright. A run must instead stop *between* files: every finished cell
kept, meta.json marked incomplete, the lock released, a non-zero exit code. :class:`Guard`
installs handlers that raise :class:`Interrupted` (a ``KeyboardInterrupt``, so code that does not
know about it still unwinds through ``finally`` blocks rather than swallowing it in an
``except Exception``) — except inside :meth:`Guard.critical` sections, where the signal is held
until the section ends, so a cell's files are never half-committed by the stop itself.
SIGKILL cannot be caught; the atomic, commit-last writes of ``bench.store`` cover it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Optional

#: the signals a run turns into an orderly stop
SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a guarded run receives SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)
        self.signame = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        """The shell convention for death by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


def in_main_thread() -> bool:
    """Whether this is the main thread, the only one Python lets install signal handlers."""
    return threading.current_thread() is threading.main_thread()


class Guard:
    """Context manager: while active, SIGINT/SIGTERM raise :class:`Interrupted`, deferred out of
    :meth:`critical` sections. Outside the main thread (where Python cannot install handlers) it
    does nothing, and the previous handlers come back on exit."""

    #: seconds after an Interrupted is raised during which further signals are ignored: the stop
    #: is under way, and a second exception raised into the unwinding (a ``finally`` of threading's
    #: locks, the writer's cleanup) would replace the first with an unrelated error and skip the
    #: cleanup. A signal after that raises again, in case the first was swallowed somewhere.
    GRACE_S = 3.0

    def __init__(self):
        self._old = {}
        self._depth = 0
        self.pending: Optional[int] = None
        self._raised_at: Optional[float] = None

    def _raise(self, signum):
        self._raised_at = time.monotonic()
        raise Interrupted(signum)

    def _handler(self, signum, frame):
        if self._raised_at is not None and time.monotonic() - self._raised_at < self.GRACE_S:
            return   # already stopping
        if self._depth > 0:
            if self.pending is None:
                self.pending = signum
            return
        self._raise(signum)

    def __enter__(self):
        if in_main_thread():
            for s in SIGNALS:
                try:
                    self._old[s] = signal.signal(s, self._handler)
                except (ValueError, OSError):  # pragma: no cover - restricted environments
                    pass
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
        return False

    @contextlib.contextmanager
    def critical(self):
        """Hold SIGINT/SIGTERM until the block ends, then raise for a signal that came meanwhile."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self.pending is not None:
            signum, self.pending = self.pending, None
            self._raise(signum)
