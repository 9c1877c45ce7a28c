"""Results on disk — the only module that touches files.

A run directory is the unit of record::

    meta.json        schema_version, command line, versions, backend/devices, dtype, git commit,
                     host, the expanded config, completion state
    summary.csv      one row per problem × optimizer (see SUMMARY_COLUMNS)
    starts.csv       one row per start (see STARTS_COLUMNS)
    traces/*.npz     per cell: the history arrays (B, columns recorded), ``trace_length`` (max_iter+1,
                     to which Run.cell pads them) and per-start finals
    plots/           figures

Every file is written atomically (temporary file in the same directory, then ``os.replace``), cell by
cell, so a run killed at any moment leaves a valid directory holding every finished cell; meta.json
says ``"complete": false`` until the last cell is in. A lock file (held with ``flock`` by its owner,
who also writes its pid and host there) keeps two processes from writing into one directory. ``.npz`` files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import zipfile
from typing import Any, Dict, List, Optional

import numpy as np

try:  # POSIX: the lock's owner holds an flock on it for as long as it lives
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the pid in the file is all there is
    fcntl = None

from optbench_core import OptbenchError

#: version 2 stores each trace's recorded columns and ``trace_length`` (see :func:`pad_columns`);
#: version 1 stored every trace padded to max_iter + 1 columns. Both are read.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
#: zlib level of the trace files: level 1 compresses a 2-D Newton cell of 10⁴ starts to 5 % more
#: bytes than the default level 6 in two thirds of the time
NPZ_COMPRESSLEVEL = 1
SUMMARY_COLUMNS = ["problem", "optimizer", "dim", "starts", "success_rate", "nit_median", "nfev_median",
                   "njev_median", "nhev_median", "nhvp_median", "f_final_median", "subopt_median",
                   "grad_norm_median", "f_star", "statuses", "compile_s", "run_s", "dtype", "trace_file"]
STARTS_COLUMNS = ["problem", "optimizer", "start", "status", "success", "nit", "nfev", "njev", "nhev", "nhvp",
                  "f_final", "grad_norm_final", "subopt"]
LOCK_NAME = ".lock"
#: what a run directory holds that cannot be made again from the rest: an output file of another
#: command (a baseline, a check report) must never land on one of these (see refuse_run_output)
RUN_DATA_FILES = ("meta.json", "summary.csv", "starts.csv", LOCK_NAME)
RUN_TRACES_DIR = "traces"
#: keys every run's meta.json holds (RunWriter writes them with the first file): a JSON object
#: without them is some other document, e.g. a baseline copied over meta.json
RUN_META_KEYS = ("schema_version", "complete", "cells_done")
#: temporary files of atomic writes start with this (a killed writer may leave one; loaders ignore it)
TMP_PREFIX = "."


def atomic_write_bytes(path: str, data: bytes, *, durable: bool = True, what: str = "files") -> None:
    """Write ``data`` to ``path`` atomically (a temporary beside it, then ``os.replace``): readers
    see the old file or the new one, never half. ``durable``: fsync before the rename (run files;
    figures, which can be redrawn, skip it). On a failure (a full disk, a vanished or read-only
    directory) the half-written temporary is removed, the old file stays as it was, and the error
    is one line naming the file ("``what`` written before are intact").

    A symbolic link is written through: the file it points to is replaced, the link kept (a
    baseline kept as a link to a shared file was turned into a file of its own, the shared one
    left old). A path that holds something other than a regular file — a device, a named pipe, a
    socket — is refused, never replaced (``--out /dev/null`` as root replaced the device)."""
    shown = path
    if os.path.islink(path):
        path = os.path.realpath(path)
    refuse_special(path, shown, what)
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, f"{TMP_PREFIX}{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise OptbenchError(f"{shown}: cannot write ({exc.strerror or exc}); {what} written before are intact") from None


def refuse_special(path: str, shown: Optional[str] = None, what: str = "files") -> None:
    """A one-line error if ``path`` exists and is neither a regular file nor a directory (a
    device, a named pipe, a socket): no output replaces one, nor reads from it (a pipe blocks)."""
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise OptbenchError(f"{shown or path}: not a regular file (a device, pipe or socket); refusing to write "
                            f"there; {what} written before are intact")


def file_head(path: str, size: int = 4096) -> Optional[str]:
    """The first ``size`` bytes of ``path`` as text (undecodable bytes replaced), or None when it
    cannot be read or is not a regular file (a named pipe would block the read): what the --out
    guards look at to recognise an earlier output of their own."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError:
        return None


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _csv_text(columns: List[str], rows: List[Dict[str, Any]], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    return buf.getvalue()


def _cells_csv_text(columns: List[str], rows: List[Dict[str, Any]], cache: Dict[tuple, tuple]) -> str:
    """:func:`_csv_text` of ``rows``, each cell's block of rows (consecutive rows of one problem ×
    optimizer) formatted once and kept in ``cache`` (cell → (the rows themselves, text); a cell whose
    rows are other objects, one run again, is formatted afresh): a run directory rewrites its CSVs
    after every cell, and formatting every row each time grew with the square of the cells (the
    525-cell mgh suite: 7.2 s in all, 0.7 s this way, measured on its CSVs)."""
    out = [_csv_text(columns, [])]
    i = 0
    while i < len(rows):
        cell = (rows[i].get("problem"), rows[i].get("optimizer"))
        j = i + 1
        while j < len(rows) and (rows[j].get("problem"), rows[j].get("optimizer")) == cell:
            j += 1
        block = rows[i:j]
        hit = cache.get(cell)
        if hit is None or len(hit[0]) != len(block) or any(a is not b for a, b in zip(hit[0], block)):
            hit = cache[cell] = (tuple(block), _csv_text(columns, block, header=False))
        out.append(hit[1])
        i = j
    return "".join(out)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def cell_file_name(problem: str, optimizer: str) -> str:
    """A file-system-safe, collision-free name for a problem × optimizer cell."""
    raw = f"{problem}__{optimizer}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)[:80]
    return f"{safe}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}.npz"


def _git(where: str, *args: str) -> Optional[str]:
    """``git -C where args…``'s output, or None where git fails or is missing."""
    try:
        out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _git_source(path: Optional[str]):
    """(directory, pathspec) of the source tree ``path`` (default: the one holding optbench)."""
    if path:
        return path, "."
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root, os.path.relpath(os.path.abspath(__file__), root)


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The git commit of the source tree holding optbench, or None. None too where the
    repository around it does not track it: an installed copy (a virtual environment's
    site-packages inside some other project's checkout, with ``.venv/`` ignored) would otherwise
    record that project's commit as optbench's."""
    where, spec = _git_source(path)
    if _git(where, "ls-files", "--error-unmatch", "--", spec) is None:
        return None
    out = _git(where, "rev-parse", "HEAD")
    return (out.strip() or None) if out is not None else None


def git_dirty(path: Optional[str] = None) -> Optional[bool]:
    """Whether tracked files of the source tree holding optbench differ from its commit (the
    code that ran is then not the recorded commit's), or None where there is no commit."""
    where, _ = _git_source(path)
    if git_commit(path) is None:
        return None
    out = _git(where, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return None if out is None else bool(out.strip())


def provenance(dtype: str, device=None, devices=None) -> Dict[str, Any]:
    """Versions, backend, devices, host and commit: what a result needs to be reproduced.
    ``devices``: the devices the run uses (``device_count``; default every device of ``device``'s
    kind, which a run on one chosen device, ``cpu:1``, does not use)."""
    import jax
    import jaxlib
    import matplotlib
    import optax
    dev = device or jax.devices()[0]
    return {
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "optax": optax.__version__, "numpy": np.__version__, "matplotlib": matplotlib.__version__,
                     # the scipy: cells are scipy's code (null: not installed)
                     "scipy": _installed_version("scipy")},
        "backend": dev.platform,
        "device_kind": getattr(dev, "device_kind", ""),
        "device_count": len(devices) if devices is not None else len(jax.devices(dev.platform)),
        "process_count": jax.process_count(),
        "dtype": dtype,
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": git_commit(),
        # uncommitted changes to tracked files: the code that ran is not that commit's
        "git_dirty": git_dirty(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        # XLA_FLAGS as set in the environment (they can change compiled code and its speed)
        "xla_flags": os.environ.get("XLA_FLAGS") or None,
        # the thread pool XLA ran CPU programs on (--cpu-threads; default one per usable CPU)
        "cpu_threads": _cpu_threads() if dev.platform == "cpu" else None,
        # XLA options optbench's executables were compiled with on CPU, and those added for
        # small problems (see bench.solve.CPU_COMPILER_OPTIONS), or "xla defaults"
        "xla_options": _xla_options(dev.platform),
        # whether compiled programs were kept in, and loaded from, the program store
        # (bench.solve.enable_program_cache): a loaded cell's compile_s is its load time
        "program_store": _program_store(),
    }


def _cpu_model() -> Optional[str]:
    """The host processor's model name (/proc/cpuinfo's first "model name"; else what Python's
    platform module says; null where neither knows)."""
    from .solve import cpuinfo
    return cpuinfo().get("model name") or platform.processor() or None


def _program_store() -> bool:
    from .solve import program_store_in_use
    return program_store_in_use()


def _installed_version(name: str) -> Optional[str]:
    """An installed distribution's version, read without importing it; None if not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_threads() -> int:
    from .solve import cpu_threads
    return cpu_threads()


def _xla_options(platform_name: str):
    from .solve import NO_SPLIT_ARRAY_MAX, SMALL_BATCH_MAX, SMALL_DATA_MAX, SMALL_DIM_MAX, xla_options
    options = xla_options(platform_name, n=SMALL_DIM_MAX + 1)   # what every problem gets
    if options is None:
        return "xla defaults"
    small = xla_options(platform_name, n=1)   # what small problems get besides
    extra = {k: v for k, v in small.items() if options.get(k) != v}
    if not extra:
        return {"options": options}
    rec = {"options": options, "small_problems": {"options": extra, "for_dim_at_most": SMALL_DIM_MAX,
                                                  "for_data_at_most": SMALL_DATA_MAX}}
    tiny = xla_options(platform_name, n=1, batch=1)   # and small batches of them besides
    batch_extra = {k: v for k, v in tiny.items() if small.get(k) != v}
    if batch_extra:
        rec["small_problems"]["small_batches"] = {"options": batch_extra, "for_starts_times_dim_at_most": SMALL_BATCH_MAX}
    lean = xla_options(platform_name, n=1, array_bytes=1)   # and loops carrying only small arrays besides
    lean_extra = {k: v for k, v in lean.items() if small.get(k) != v}
    if lean_extra:
        rec["small_problems"]["small_arrays"] = {"options": lean_extra, "for_largest_carried_array_bytes_at_most":
                                                 NO_SPLIT_ARRAY_MAX}
    return rec


def summarize(res, problem_dim: int, trace_file: str) -> (Dict[str, Any], List[Dict[str, Any]]):
    """The summary row and per-start rows of one cell, from a batched :class:`bench.Result`.

    Medians of iterations and evaluations are over all starts; those of the final f, f − f* and
    ‖∇f‖ over the starts where they are finite (``statuses`` counts the starts of each status)."""
    fs = res.f_star
    subopt = res.fun - fs if fs is not None else np.full_like(res.fun, np.nan)
    statuses, counts = np.unique(res.status, return_counts=True)
    # a float32 run's numbers are written with the digits float32 has (the shortest decimal that
    # reads back as the same float32: 0.0088295, not 0.00882949959486723)
    num = (lambda v: float(str(np.float32(v)))) if res.dtype == "float32" else float  # noqa: E731
    med = lambda a: float(np.median(a)) if len(a) else float("nan")  # noqa: E731

    def med_finite(a):
        # a start that diverged has f = NaN or ±inf: the median of the others stays informative,
        # and the `statuses` column says how many starts it leaves out
        a = np.asarray(a, dtype=np.float64)
        return num(med(a[np.isfinite(a)]))
    row = {"problem": res.problem, "optimizer": res.optimizer, "dim": problem_dim, "starts": len(res.fun),
           "success_rate": float(np.mean(res.success)), "nit_median": med(res.nit), "nfev_median": med(res.nfev),
           "njev_median": med(res.njev), "nhev_median": med(res.nhev), "nhvp_median": med(res.nhvp),
           "f_final_median": med_finite(res.fun), "subopt_median": med_finite(subopt) if fs is not None else None,
           "grad_norm_median": med_finite(res.grad_norm), "f_star": fs,
           "statuses": ";".join(f"{s}={c}" for s, c in zip(statuses, counts)),
           "compile_s": res.compile_s, "run_s": res.run_s, "dtype": res.dtype, "trace_file": trace_file}
    starts = [{"problem": res.problem, "optimizer": res.optimizer, "start": i, "status": res.status[i],
               "success": bool(res.success[i]), "nit": int(res.nit[i]), "nfev": int(res.nfev[i]),
               "njev": int(res.njev[i]), "nhev": int(res.nhev[i]), "nhvp": int(res.nhvp[i]),
               "f_final": num(res.fun[i]), "grad_norm_final": num(res.grad_norm[i]),
               "subopt": num(subopt[i]) if fs is not None else None} for i in range(len(res.fun))]
    return row, starts


def _lock_info(lock_path: str) -> Dict[str, Any]:
    """What a lock file says about its owner ({} if unreadable)."""
    try:
        with open(lock_path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return {}
    if text.strip().isdigit():  # the foundation's lock held a bare pid
        return {"pid": int(text)}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _lock_unwritten(lock_path: str) -> bool:
    """True for an empty lock file: its writer died before writing its pid, or is about to take
    it (``_acquire_lock`` then settles who holds it)."""
    try:
        return os.path.getsize(lock_path) == 0
    except OSError:
        return False


def _lock_is_stale(lock_path: str) -> bool:
    """True when the lock's owner was on this host and is gone (e.g. SIGKILLed): only then may it
    be broken. A lock from another host, or one we cannot read, is never judged stale."""
    info = _lock_info(lock_path)
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host", socket.gethostname()) != socket.gethostname():
        return False
    return pid != os.getpid() and _pid_gone(pid)


def _pid_gone(pid: int) -> bool:
    """True when no process of this host has ``pid`` (or it is no pid at all); a live process,
    ours or another user's, is not gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OverflowError, ValueError):   # not a pid at all
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced by another)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


_TMP_RE = re.compile(r"\.tmp(\d+)$")


def _stale_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary (``.<name>.tmp<pid>``) whose writer is gone: this process
    (which writes none right now) or a dead one. A live process's is another command's write in
    progress (``optbench report`` writes ``.report.html.tmp<pid>`` beside the run's files)."""
    m = _TMP_RE.search(name)
    if not (name.startswith(TMP_PREFIX) and m):
        return False
    pid = int(m.group(1))
    return pid == os.getpid() or _pid_gone(pid)


def _remove_stale_temporaries(path: str) -> None:
    """Delete temporaries a killed writer left behind (``.<name>.tmp<pid>``); never a real file,
    nor the temporary of a process that is still writing it."""
    for d in (path, os.path.join(path, "traces")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if _stale_temporary(name):
                try:
                    os.remove(os.path.join(d, name))
                except OSError:
                    pass


class RunWriter:
    """Creates a run directory (or reopens one with ``resume=True``) and appends finished cells
    to it atomically, holding the directory's lock file while it lives.

    meta.json is written last for every cell: its ``cells_done`` is the commit record, and
    :func:`load_run` trusts nothing in the CSVs that it does not list.
    """

    def __init__(self, path: str, meta: Optional[Dict[str, Any]] = None, resume: bool = False):
        self.path = path
        self._lock = os.path.join(path, LOCK_NAME)
        self._locked = False
        self._fd: Optional[int] = None
        self._created = False
        self._resumed = resume
        self._written = set()   # the CSV and trace files this writer wrote (see discard)
        # each cell's CSV rows formatted once (see _cells_csv_text)
        self._csv_cache: Dict[str, Dict[tuple, tuple]] = {"summary": {}, "starts": {}}
        if resume:
            load_meta(path)  # a one-line error if this is not a run, before touching the lock
            self._acquire_lock()
            try:
                run = load_run(path)
            except BaseException:
                self.release()
                raise
            self.meta = run.meta
            # cells written from now on are stored as this version writes them (the loader
            # reads each trace file by what it holds, so a run may mix both)
            self.meta["schema_version"] = SCHEMA_VERSION
            self.summary, self.starts = run.summary, run.starts
            _remove_stale_temporaries(path)
        else:
            if os.path.exists(path) and not os.path.isdir(path):
                raise OptbenchError(f"output path {path} exists and is not a directory; choose another --out")
            entries = set(os.listdir(path)) if os.path.isdir(path) else set()
            if entries and LOCK_NAME in entries and (_lock_is_stale(self._lock) or _lock_unwritten(self._lock)) \
                    and all(e == LOCK_NAME or _stale_temporary(e) for e in entries):
                # a writer killed between creating the lock and committing meta.json (its
                # temporary may be there): nothing was recorded, the directory counts as empty
                _remove_stale_temporaries(path)
                entries = set()
            if entries:
                if LOCK_NAME in entries and not _lock_is_stale(self._lock):
                    raise OptbenchError(self._locked_message())
                kind = "a run (continue it with --resume)" if "meta.json" in entries else "not a run"
                raise OptbenchError(f"output directory {path} already exists and is {kind}; choose another --out")
            self._created = not os.path.isdir(path) or os.path.abspath(path) in _RESERVED
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise OptbenchError(f"{path}: cannot create the run directory ({exc.strerror or exc})") from None
            self._acquire_lock()
            self.meta = dict(meta or {}, schema_version=SCHEMA_VERSION, complete=False, cells_done=[])
            self.summary, self.starts = [], []
            self._write_meta()
        os.makedirs(os.path.join(path, "traces"), exist_ok=True)

    def _locked_message(self) -> str:
        info = _lock_info(self._lock)
        who = f"optbench process {info['pid']}" if "pid" in info else "another optbench process"
        if info.get("host"):
            who += f" on {info['host']}"
        if info.get("started"):
            who += f" (since {info['started']})"
        return (f"run directory {self.path} is locked by {who}; two runs never write into one directory "
                f"(if that process is gone, remove {os.path.join(self.path, LOCK_NAME)})")

    def _acquire_lock(self):
        """Take the directory's lock: of two processes exactly one succeeds, a live owner or one on
        another host is refused, and a lock whose owner died on this host is taken over.

        On POSIX the owner holds an ``flock`` on the file for as long as it lives (the kernel drops
        it when the process dies, however it dies), and a lock is taken over in place, never
        removed and created again: two processes breaking one stale lock at once cannot both
        end up holding it. Elsewhere the file is created with O_EXCL and judged by its pid."""
        if fcntl is None:  # pragma: no cover - not POSIX
            return self._acquire_lock_excl()
        for _ in range(100):
            try:
                fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OptbenchError(f"{self._lock}: cannot create the lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live optbench process (this one included)
                os.close(fd)
                raise OptbenchError(self._locked_message()) from None
            if not _same_file(fd, self._lock):  # its owner removed it on release meanwhile: take the next one
                os.close(fd)
                continue
            try:
                text = os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                text = ""
            if text.strip() and not _lock_is_stale(self._lock):
                # written by an owner that holds no flock (on another host, an older optbench, or
                # unreadable): never judged stale here
                os.close(fd)
                raise OptbenchError(self._locked_message())
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError as exc:
                os.close(fd)
                raise OptbenchError(f"{self._lock}: cannot write the lock file ({exc.strerror or exc})") from None
            self._fd = fd
            self._locked = True
            return
        raise OptbenchError(self._locked_message())

    def _acquire_lock_excl(self):  # pragma: no cover - not POSIX
        for attempt in (0, 1):
            try:
                fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if attempt == 0 and _lock_is_stale(self._lock):
                    try:
                        os.remove(self._lock)
                    except FileNotFoundError:
                        pass
                    continue
                raise OptbenchError(self._locked_message()) from None
            except OSError as exc:
                raise OptbenchError(f"{self._lock}: cannot create the lock file ({exc.strerror or exc})") from None
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.write(fd, json.dumps(info).encode())
            os.close(fd)
            self._locked = True
            return
        raise OptbenchError(self._locked_message())

    def release(self):
        """Remove the lock file if this writer holds it (idempotent)."""
        if not self._locked:
            return
        try:
            if self._fd is not None:   # the file at the path is still the one this writer holds
                ours = _same_file(self._fd, self._lock)
            else:
                ours = _lock_info(self._lock).get("pid") in (None, os.getpid())
            if ours:
                os.remove(self._lock)   # removed before the flock goes, so nobody takes a dying lock
        except FileNotFoundError:
            pass
        finally:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None
            self._locked = False

    def done_cells(self):
        return {(c[0], c[1]) for c in self.meta.get("cells_done", [])}

    def discard(self) -> None:
        """Undo a new run that failed before its first cell: remove what this writer created
        (meta.json, the empty traces/, the lock, the directory), so a failed start leaves nothing.
        An empty directory that was there before (``--out`` made by the user) is kept, but emptied
        of what this writer put in it: left with a meta.json, it read as a run and the next run
        into it was refused ("already exists and is a run")."""
        if self._resumed or self.meta.get("cells_done"):
            return
        # with meta.json go the files of a first cell that failed half-written (a full disk):
        # a directory of summary.csv and a trace without meta.json is "not a run" to --resume
        # and to the next run into it
        for p in [os.path.join(self.path, "meta.json")] + sorted(self._written):
            try:
                os.remove(p)
            except OSError:
                pass
        _remove_stale_temporaries(self.path)
        self.release()
        for d in (os.path.join(self.path, "traces"),) + ((self.path,) if self._created else ()):
            try:
                os.rmdir(d)  # only if empty: never deletes anything else
            except OSError:
                pass

    def mark_interrupted(self, reason: str) -> None:
        """Record in meta.json that the run stopped early (it stays ``complete: false``)."""
        self.meta["complete"] = False
        self.meta["interrupted"] = {"reason": reason, "cells_done": len(self.meta.get("cells_done", [])),
                                    "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        self._write_meta()

    def note_resumed(self, info: Dict[str, Any]) -> None:
        """Append ``info`` (when, provenance of this process) to meta's ``resumed`` list."""
        self.meta.pop("interrupted", None)
        self.meta.setdefault("resumed", []).append(info)
        self._write_meta()

    def _write_meta(self):
        atomic_write_text(os.path.join(self.path, "meta.json"), json.dumps(self.meta, indent=2, default=_json_default) + "\n")

    def add_cell(self, res, problem_dim: int, extra: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, Any]:
        """Write one finished cell: its traces, then the CSVs, then meta (each atomically)."""
        if res.trace is None:
            raise OptbenchError(f"{res.problem} × {res.optimizer}: a run directory keeps every cell's history "
                                f"(its plots and profiles read it); this result was solved with history=False")
        if np.ndim(res.fun) == 0:
            raise OptbenchError(f"{res.problem} × {res.optimizer}: a run directory holds batches of starts; this "
                                f"result was solved from one start of shape (n,) (pass it as shape (1, n))")
        fname = cell_file_name(res.problem, res.optimizer)
        # the recorded columns only, and the length they stand for: the columns after the last
        # iteration any start ran repeat the last one (Run.cell puts them back on reading). A run
        # of 10⁴ starts to max_iter = 500 that stops after 31 iterations writes 32 columns, not 501
        arrays = {f"trace_{k}": v for k, v in res.trace.recorded().items()}
        arrays["trace_length"] = np.array(res.trace.length, np.int64)
        arrays.update(x=res.x, x0=res.x0, fun=res.fun, grad_norm=res.grad_norm, nit=res.nit, nfev=res.nfev,
                      njev=res.njev, nhev=res.nhev, nhvp=res.nhvp, status=res.status.astype(str),
                      success=res.success, problem=np.array(res.problem), optimizer=np.array(res.optimizer),
                      f_star=np.array(np.nan if res.f_star is None else res.f_star),
                      run_s_all=np.asarray(res.run_s_all), compile_s=np.array(res.compile_s))
        if extra:
            arrays.update(extra)
        buf = io.BytesIO()
        write_npz(buf, arrays)
        self._written.update(os.path.join(self.path, f) for f in (os.path.join("traces", fname), "summary.csv",
                                                                    "starts.csv"))
        atomic_write_bytes(os.path.join(self.path, "traces", fname), buf.getvalue())
        row, starts = summarize(res, problem_dim, os.path.join("traces", fname))
        self.summary = [r for r in self.summary if (r["problem"], r["optimizer"]) != (res.problem, res.optimizer)]
        self.starts = [r for r in self.starts if (r["problem"], r["optimizer"]) != (res.problem, res.optimizer)]
        self.summary.append(row)
        self.starts.extend(starts)
        atomic_write_text(os.path.join(self.path, "summary.csv"),
                          _cells_csv_text(SUMMARY_COLUMNS, self.summary, self._csv_cache["summary"]))
        atomic_write_text(os.path.join(self.path, "starts.csv"),
                          _cells_csv_text(STARTS_COLUMNS, self.starts, self._csv_cache["starts"]))
        done = self.meta.setdefault("cells_done", [])
        if [res.problem, res.optimizer] not in done:
            done.append([res.problem, res.optimizer])
        self._write_meta()  # the commit point of the cell
        return row

    def finish(self, **updates):
        self.meta.update(updates)
        self.meta["complete"] = True
        self.meta.pop("interrupted", None)
        self._write_meta()
        self.release()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@dataclasses.dataclass
class Run:
    """A loaded run directory."""

    path: str
    meta: Dict[str, Any]
    summary: List[Dict[str, Any]]
    starts: List[Dict[str, Any]]

    def cell(self, problem: str, optimizer: str, padded: bool = True) -> Dict[str, np.ndarray]:
        """The arrays of one cell's .npz (traces under ``trace_<name>``), each trace of max_iter + 1
        columns. ``padded=False``: a trace file of version 2 as stored, the columns recorded (up to
        the last iteration any start ran) — what every figure, profile and check reads, as they
        look at no column past a start's ``nit``; a version-1 file's traces are padded either way."""
        for r in self.summary:
            if r["problem"] == problem and r["optimizer"] == optimizer:
                path = os.path.join(self.path, r["trace_file"])
                arrays = load_npz(path)
                for key, want in (("problem", problem), ("optimizer", optimizer)):
                    if key in arrays and str(arrays[key]) != want:
                        raise OptbenchError(f"{path}: holds {key} {str(arrays[key])!r}, but summary.csv "
                                            f"says {want!r} (file swapped or edited)")
                return padded_traces(arrays, path, pad=padded, length=self._trace_length(problem, optimizer))
        raise OptbenchError(f"run {self.path} has no cell {problem} × {optimizer}")

    def _trace_length(self, problem: str, optimizer: str) -> Optional[int]:
        """max_iter + 1 of a cell as meta.json's config records it (its own entry in ``cells``,
        else the run's), or None where it records no whole number."""
        cfg = self.meta.get("config") if isinstance(self.meta.get("config"), dict) else {}
        value = cfg.get("max_iter")
        cells = cfg.get("cells")
        for c in cells if isinstance(cells, list) else ():
            if isinstance(c, dict) and c.get("problem") == problem and c.get("optimizer") == optimizer:
                value = c.get("max_iter", value)
                break
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        return value + 1

    def problems(self) -> List[str]:
        return list(dict.fromkeys(r["problem"] for r in self.summary))

    def optimizers(self) -> List[str]:
        return list(dict.fromkeys(r["optimizer"] for r in self.summary))


def pad_columns(a: np.ndarray, length: int, axis: int = 1) -> np.ndarray:
    """``a`` with its time axis extended to ``length`` columns, each new column a copy of the last
    (a start that stopped keeps its final values). ``a`` itself where it has them already."""
    a = np.asarray(a)
    t = a.shape[axis]
    if t >= length:
        return a
    shape = list(a.shape)
    shape[axis] = length
    out = np.empty(shape, a.dtype)
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(0, t)
    out[tuple(idx)] = a
    idx[axis] = slice(t, length)
    last = [slice(None)] * a.ndim
    last[axis] = slice(t - 1, t)
    out[tuple(idx)] = a[tuple(last)]
    return out


def padded_traces(arrays: Dict[str, np.ndarray], path: str, pad: bool = True,
                  length: Optional[int] = None) -> Dict[str, np.ndarray]:
    """A cell's arrays as :meth:`Run.cell` gives them: each ``trace_*`` of ``trace_length`` =
    max_iter + 1 columns (``pad=False``: checked, left as stored), without ``trace_length``, which
    must equal ``length`` where that is known (meta.json's max_iter + 1). A trace file of this
    version holds the recorded columns and ``trace_length`` (``RunWriter.add_cell``); one of
    version 1 holds them padded already."""
    if "trace_length" not in arrays:
        return arrays
    arrays = dict(arrays)
    raw = arrays.pop("trace_length")
    traces = [k for k in arrays if k.startswith("trace_")]
    first = None
    for k in traces:
        shape = arrays[k].shape
        if len(shape) < 2 or shape[1] == 0:
            raise OptbenchError(f"{path}: {k} must be numbers of shape (starts, iterations[, n]) with at least one "
                                f"column, got {arrays[k].dtype} {shape}")
        if first is None:
            first = (k, shape[:2])
        elif shape[:2] != first[1]:   # padding would hide a trace cut short
            raise OptbenchError(f"{path}: {k} has {shape[0]} starts × {shape[1]} columns, {first[0]} "
                                f"{first[1][0]} × {first[1][1]} (every trace has the same)")
    cols = first[1][1] if first is not None else 1
    if raw.shape != () or raw.dtype.kind not in "iu" or int(raw) < cols or int(raw) > 10**9:
        raise OptbenchError(f"{path}: trace_length must be one integer from the traces' columns ({cols}) to 10⁹, "
                            f"got {raw.dtype} {raw.shape} {str(raw.ravel()[:1])[:40]}")
    if length is not None and int(raw) != length:
        raise OptbenchError(f"{path}: trace_length is {int(raw)}, but meta.json's max_iter makes it {length} "
                            f"(file swapped or edited)")
    if pad:
        for k in traces:
            arrays[k] = pad_columns(arrays[k], int(raw))
    return arrays


def write_npz(fh, arrays: Dict[str, np.ndarray], compresslevel: int = NPZ_COMPRESSLEVEL) -> None:
    """``arrays`` as an .npz (what ``np.load`` reads; no pickles), deflated at ``compresslevel``
    (``np.savez_compressed`` offers only zlib's default, the slowest part of writing a large cell)."""
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for name, value in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def load_npz(path: str) -> Dict[str, np.ndarray]:
    """Load an .npz safely (no pickles) into a dict, with a one-line error on damage."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise OptbenchError(f"{path}: file is missing") from None
    except Exception as exc:  # zipfile/ValueError on a truncated or edited file
        raise OptbenchError(f"{path}: unreadable trace file ({type(exc).__name__}: {exc})") from None


_TEXT_COLUMNS = ("problem", "optimizer", "status", "statuses", "dtype", "trace_file")


def _parse_csv_value(col: str, v: str):
    if col in _TEXT_COLUMNS:
        return v
    if v == "":
        return None
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"column {col!r} holds {v[:40]!r}, not a number") from None


def _parse_extra_value(v: str):
    try:
        return _parse_csv_value("", v)
    except ValueError:
        return v


def _read_csv(path: str, columns: List[str]) -> List[Dict[str, Any]]:
    """Rows of a run's CSV as dicts of parsed values; a one-line error naming the file, line and
    column on a missing file, a missing column, a truncated row or a value that is not a number."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise OptbenchError(f"{path}: file is missing") from None
    except IsADirectoryError:
        raise OptbenchError(f"{path}: is a directory, not a CSV file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OptbenchError(f"{path}: not a valid CSV file ({exc})") from None
    absent = [c for c in columns if c not in header]
    if absent:
        what = "is empty" if not header else f"header lacks column(s) {', '.join(absent)}"
        raise OptbenchError(f"{path}: {what}")
    out = []
    for i, r in enumerate(rows, start=2):
        missing = [c for c in columns if r.get(c) is None]
        if missing:
            raise OptbenchError(f"{path}: line {i} is truncated (lacks {', '.join(missing)})")
        if None in r:
            raise OptbenchError(f"{path}: line {i} has more fields than the header")
        try:
            # a column optbench does not read (a note added by hand, a later version's field) is
            # kept, as a number where it reads as one, and never makes the run unreadable
            out.append({c: _parse_csv_value(c, r[c]) if c in columns else _parse_extra_value(r[c]) for c in r})
        except ValueError as exc:
            raise OptbenchError(f"{path}: line {i}: {exc}") from None
    return out


def read_json(path: str, what: str = "file") -> Dict[str, Any]:
    """A JSON object from ``path``; a one-line error naming the file if it is missing, truncated,
    not JSON or not an object (``what`` names the kind of file in the messages)."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        raise OptbenchError(f"{path}: {what} is missing") from None
    except IsADirectoryError:
        raise OptbenchError(f"{path}: is a directory, not a {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OptbenchError(f"{path}: corrupt or truncated JSON ({exc})") from None
    except RecursionError:
        # the parser recurses once per nested array/object: a hand-made file nested thousands of
        # levels deep exhausts Python's stack, which no file optbench writes comes near
        raise OptbenchError(f"{path}: corrupt JSON (nested too deeply to read)") from None
    except ValueError as exc:  # valid JSON Python still refuses, e.g. an integer of over 4300 digits
        raise OptbenchError(f"{path}: unreadable JSON ({exc})") from None
    except OSError as exc:
        raise OptbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(obj, dict):
        raise OptbenchError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def load_meta(path: str) -> Dict[str, Any]:
    """A run directory's meta.json, checked: schema version, config, completion state, cell list."""
    mpath = os.path.join(path, "meta.json")
    if not os.path.isdir(path):
        raise OptbenchError(f"{path}: not a directory" if os.path.exists(path) else f"{path}: no such run directory")
    if not os.path.exists(mpath):
        raise OptbenchError(f"{path}: not a run directory (no meta.json)")
    meta = read_json(mpath, "meta.json")
    if "kind" in meta:
        # a run's meta.json has no "kind"; baselines ("optbench-baseline") and other documents do
        raise OptbenchError(f"{mpath}: not a run's meta.json (it has \"kind\": {json.dumps(meta['kind'])[:60]}; "
                            "a baseline file copied over it?)")
    lacking = [k for k in RUN_META_KEYS if k not in meta]
    if lacking:
        raise OptbenchError(f"{mpath}: not a run's meta.json (lacks {', '.join(repr(k) for k in lacking)})")
    ver = meta["schema_version"]
    if isinstance(ver, bool) or not isinstance(ver, int) or ver not in READABLE_SCHEMA_VERSIONS:   # not true, not 1.0
        raise OptbenchError(f"{mpath}: unknown schema_version {ver!r} (this optbench reads "
                            f"{' and '.join(str(v) for v in READABLE_SCHEMA_VERSIONS)})")
    cells = meta.get("cells_done", [])
    if not (isinstance(cells, list) and all(isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c)
                                            for c in cells)):
        raise OptbenchError(f"{mpath}: 'cells_done' must be a list of [problem, optimizer] pairs")
    if not isinstance(meta.get("complete", False), bool):
        raise OptbenchError(f"{mpath}: 'complete' must be true or false")
    if "config" in meta and not isinstance(meta["config"], dict):
        raise OptbenchError(f"{mpath}: 'config' must be an object")
    return meta


def load_run(path: str) -> Run:
    """Load a run directory, or raise a one-line OptbenchError naming the file and the fault.

    meta.json's ``cells_done`` is the commit record (it is written after a cell's CSV rows and
    traces): rows of a cell it does not list — a writer killed between files — are ignored, and a
    listed cell missing from the CSVs, or with fewer start rows than it had starts, is an error.
    """
    meta = load_meta(path)
    done = [tuple(c) for c in meta.get("cells_done", [])]
    if not done:
        return Run(path, meta, [], [])
    spath, tpath = os.path.join(path, "summary.csv"), os.path.join(path, "starts.csv")
    committed = set(done)
    summary = [r for r in _read_csv(spath, SUMMARY_COLUMNS) if (r["problem"], r["optimizer"]) in committed]
    starts = [r for r in _read_csv(tpath, STARTS_COLUMNS) if (r["problem"], r["optimizer"]) in committed]
    have = {}
    for r in summary:
        key = (r["problem"], r["optimizer"])
        if key in have:
            raise OptbenchError(f"{spath}: cell {key[0]} × {key[1]} appears twice")
        have[key] = r
        tf = r.get("trace_file") or ""
        norm = os.path.normpath(tf)
        if os.path.isabs(tf) or norm.split(os.sep)[0] != "traces" or ".." in norm.split(os.sep):
            raise OptbenchError(f"{spath}: trace_file {tf!r} of {key[0]} × {key[1]} is not under traces/")
    counts: Dict[tuple, int] = {}
    for r in starts:
        key = (r["problem"], r["optimizer"])
        counts[key] = counts.get(key, 0) + 1
    for key in done:
        if key not in have:
            raise OptbenchError(f"{spath}: lacks the cell {key[0]} × {key[1]} that meta.json lists as done "
                                f"(truncated or edited)")
        n = have[key].get("starts")
        if isinstance(n, int) and counts.get(key, 0) != n:
            raise OptbenchError(f"{tpath}: cell {key[0]} × {key[1]} has {counts.get(key, 0)} start rows, "
                                f"summary.csv says {n} (truncated or edited)")
    order = {k: i for i, k in enumerate(done)}
    summary.sort(key=lambda r: order[(r["problem"], r["optimizer"])])
    return Run(path, meta, summary, starts)


#: directories :func:`default_run_dir` created (empty) in this process: a :class:`RunWriter` given
#: one counts it as its own, so a run that fails before its first cell removes it again
_RESERVED = set()


def default_run_dir(root: str = os.path.join("results", "runs"), what: str = "files") -> str:
    """``results/runs/<UTC timestamp>`` (``-2``, ``-3``, … added if that exists), created here
    with ``os.mkdir``, which fails where the name is taken. Only looking for a free name let
    runs started in the same second without ``--out`` pick the same directory, and all but
    one stopped ("run directory … is locked by optbench process …"). ``what`` names the
    contents in errors (``perf``'s tables use it too, under ``results/perf``)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    writable_dir(root, what)
    i = 1
    while True:
        path = os.path.join(root, stamp if i == 1 else f"{stamp}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            i += 1
            continue
        except OSError as exc:
            raise OptbenchError(f"{path}: cannot create the directory for {what} ({exc.strerror or exc})") from None
        _RESERVED.add(os.path.abspath(path))
        return path


def command_line() -> str:
    """The command as typed: the program's name and its arguments."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog == "__main__.py":
        # ``python -m bench …``: argv[0] is bench/__main__.py, and "__main__.py run …" is no command
        prog = "python -m " + os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))
    return " ".join([prog] + sys.argv[1:])


def command_record(argv=None) -> Dict[str, Any]:
    """meta.json's ``command`` and ``argv``: the arguments ``bench.cli.main`` was given. Called from
    Python (``main([...])``), those are not the host process's ``sys.argv`` (which recorded
    ``pytest …`` or a notebook kernel's arguments as the command of the run)."""
    if argv is None or list(argv) == sys.argv[1:]:
        return {"command": command_line(), "argv": sys.argv[1:]}
    return {"command": " ".join(["optbench"] + [str(a) for a in argv]), "argv": [str(a) for a in argv]}


def writable_dir(path: str, what: str = "files") -> None:
    """Create the directory ``path`` (and its parents) if needed and check that ``what`` can be
    written there: one line naming the directory otherwise, before anything is computed or drawn
    for it (the commands' ``--out`` folders, a run's plots/)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        # FileExistsError here means a file of that name (exist_ok covers a directory)
        why = "a file of that name exists" if isinstance(exc, FileExistsError) else (exc.strerror or str(exc))
        raise OptbenchError(f"{path}: cannot create the directory for {what} ({why})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OptbenchError(f"{path}: cannot write {what} there (permission denied)")


def write_output_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating a missing parent directory first.

    For files outside a run directory that a command writes to a user's ``--out`` (a baseline, a
    check report), so that every such option treats a path in a directory not made yet alike.
    """
    d = os.path.dirname(path)
    if d:
        writable_dir(d)
    atomic_write_text(path, text)


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as strict JSON (no NaN/Infinity literals) to ``path`` atomically.

    Used for files outside a run directory, such as ``optbench baseline`` output; a missing
    parent directory is created.
    """
    try:
        text = json.dumps(obj, indent=1, allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise OptbenchError(f"{path}: cannot write non-finite numbers as JSON ({exc})") from None
    write_output_text(path, text + "\n")


def refuse_run_output(out: str, run_dir: str, option: str = "--out") -> None:
    """A one-line error if writing ``out`` would replace a file of the run in ``run_dir``.

    ``optbench baseline RUN --out RUN/meta.json`` would otherwise replace the run's record with
    its own baseline and report success. Paths are compared after resolving links and ``..``
    (realpath), and an existing file also by identity (a hard link); any path into the run's
    traces/ is refused. Other files in the run directory (a baseline kept beside it) are fine.
    """
    target = os.path.realpath(out)
    root = os.path.realpath(run_dir)
    protected = [os.path.join(root, name) for name in RUN_DATA_FILES]
    traces = os.path.join(root, RUN_TRACES_DIR)
    hit = target in protected or target == traces or target.startswith(traces + os.sep)
    if not hit and os.path.isfile(target):
        for p in protected:
            try:
                hit = hit or os.path.samefile(target, p)
            except OSError:
                pass
    if hit:
        raise OptbenchError(f"{option} {out}: would overwrite the data of the run {run_dir} (its meta.json, "
                            "summary.csv, starts.csv or traces/); choose a path outside them")
