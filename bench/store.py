"""Results on disk — the only module that touches files.

A run directory is the unit of record::

    meta.json        schema_version, command line, versions, backend/devices, dtype, git commit,
                     host, the expanded config, completion state
    summary.csv      one row per problem × optimizer (see SUMMARY_COLUMNS)
    starts.csv       one row per start (see STARTS_COLUMNS)
    traces/*.npz     per cell: the history arrays (B, max_iter+1) and per-start finals
    plots/           figures

Every file is written atomically (temporary file in the same directory, then ``os.replace``), cell by
cell, so a run killed at any moment leaves a valid directory holding every finished cell; meta.json
says ``"complete": false`` until the last cell is in. A lock file (created with O_EXCL) keeps two
processes from writing into one directory. ``.npz`` files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from optbench_core import OptbenchError

SCHEMA_VERSION = 1
SUMMARY_COLUMNS = ["problem", "optimizer", "dim", "starts", "success_rate", "nit_median", "nfev_median",
                   "njev_median", "nhev_median", "nhvp_median", "f_final_median", "subopt_median",
                   "grad_norm_median", "f_star", "statuses", "compile_s", "run_s", "dtype", "trace_file"]
STARTS_COLUMNS = ["problem", "optimizer", "start", "status", "success", "nit", "nfev", "njev", "nhev", "nhvp",
                  "f_final", "grad_norm_final", "subopt"]
LOCK_NAME = ".lock"


def _atomic_write_bytes(path: str, data: bytes) -> None:
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    _atomic_write_bytes(path, text.encode("utf-8"))


def _csv_text(columns: List[str], rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    return buf.getvalue()


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


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The git commit of the source tree holding optbench, or None."""
    where = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(dtype: str, device=None) -> Dict[str, Any]:
    """Versions, backend, devices, host and commit: what a result needs to be reproduced."""
    import jax
    import jaxlib
    import matplotlib
    import optax
    dev = device or jax.devices()[0]
    return {
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "optax": optax.__version__, "numpy": np.__version__, "matplotlib": matplotlib.__version__},
        "backend": dev.platform,
        "device_kind": getattr(dev, "device_kind", ""),
        "device_count": len(jax.devices(dev.platform)),
        "dtype": dtype,
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def summarize(res, problem_dim: int, trace_file: str) -> (Dict[str, Any], List[Dict[str, Any]]):
    """The summary row and per-start rows of one cell, from a batched :class:`bench.Result`."""
    fs = res.f_star
    subopt = res.fun - fs if fs is not None else np.full_like(res.fun, np.nan)
    statuses, counts = np.unique(res.status, return_counts=True)
    med = lambda a: float(np.median(a)) if len(a) else float("nan")  # noqa: E731
    row = {"problem": res.problem, "optimizer": res.optimizer, "dim": problem_dim, "starts": len(res.fun),
           "success_rate": float(np.mean(res.success)), "nit_median": med(res.nit), "nfev_median": med(res.nfev),
           "njev_median": med(res.njev), "nhev_median": med(res.nhev), "nhvp_median": med(res.nhvp),
           "f_final_median": med(res.fun), "subopt_median": med(subopt) if fs is not None else None,
           "grad_norm_median": med(res.grad_norm), "f_star": fs,
           "statuses": ";".join(f"{s}={c}" for s, c in zip(statuses, counts)),
           "compile_s": res.compile_s, "run_s": res.run_s, "dtype": res.dtype, "trace_file": trace_file}
    starts = [{"problem": res.problem, "optimizer": res.optimizer, "start": i, "status": res.status[i],
               "success": bool(res.success[i]), "nit": int(res.nit[i]), "nfev": int(res.nfev[i]),
               "njev": int(res.njev[i]), "nhev": int(res.nhev[i]), "nhvp": int(res.nhvp[i]),
               "f_final": float(res.fun[i]), "grad_norm_final": float(res.grad_norm[i]),
               "subopt": float(subopt[i]) if fs is not None else None} for i in range(len(res.fun))]
    return row, starts


class RunWriter:
    """Creates a run directory and appends finished cells to it atomically."""

    def __init__(self, path: str, meta: Dict[str, Any], resume: bool = False):
        self.path = path
        self._lock = os.path.join(path, LOCK_NAME)
        if resume:
            run = load_run(path)
            self.meta = run.meta
            self.summary, self.starts = run.summary, run.starts
            self._acquire_lock()
        else:
            if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
                kind = "a run" if os.path.exists(os.path.join(path, "meta.json")) else "not a run"
                raise OptbenchError(f"output directory {path} already exists and is {kind}; choose another --out")
            os.makedirs(path, exist_ok=True)
            self._acquire_lock()
            self.meta = dict(meta, schema_version=SCHEMA_VERSION, complete=False, cells_done=[])
            self.summary, self.starts = [], []
            self._write_meta()
        os.makedirs(os.path.join(path, "traces"), exist_ok=True)

    def _acquire_lock(self):
        try:
            fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise OptbenchError(f"run directory {self.path} is locked by another optbench process "
                                f"(remove {LOCK_NAME} there if that process is gone)") from None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)

    def release(self):
        try:
            os.remove(self._lock)
        except FileNotFoundError:
            pass

    def done_cells(self):
        return {(c[0], c[1]) for c in self.meta.get("cells_done", [])}

    def _write_meta(self):
        atomic_write_text(os.path.join(self.path, "meta.json"), json.dumps(self.meta, indent=2, default=_json_default) + "\n")

    def add_cell(self, res, problem_dim: int, extra: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, Any]:
        """Write one finished cell: its traces, then the CSVs, then meta (each atomically)."""
        fname = cell_file_name(res.problem, res.optimizer)
        arrays = {f"trace_{k}": v for k, v in res.trace.arrays().items()}
        arrays.update(x=res.x, x0=res.x0, fun=res.fun, grad_norm=res.grad_norm, nit=res.nit, nfev=res.nfev,
                      njev=res.njev, nhev=res.nhev, nhvp=res.nhvp, status=res.status.astype(str),
                      success=res.success, problem=np.array(res.problem), optimizer=np.array(res.optimizer),
                      f_star=np.array(np.nan if res.f_star is None else res.f_star),
                      run_s_all=np.asarray(res.run_s_all), compile_s=np.array(res.compile_s))
        if extra:
            arrays.update(extra)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        _atomic_write_bytes(os.path.join(self.path, "traces", fname), buf.getvalue())
        row, starts = summarize(res, problem_dim, os.path.join("traces", fname))
        self.summary = [r for r in self.summary if (r["problem"], r["optimizer"]) != (res.problem, res.optimizer)]
        self.starts = [r for r in self.starts if (r["problem"], r["optimizer"]) != (res.problem, res.optimizer)]
        self.summary.append(row)
        self.starts.extend(starts)
        atomic_write_text(os.path.join(self.path, "summary.csv"), _csv_text(SUMMARY_COLUMNS, self.summary))
        atomic_write_text(os.path.join(self.path, "starts.csv"), _csv_text(STARTS_COLUMNS, self.starts))
        self.meta.setdefault("cells_done", []).append([res.problem, res.optimizer])
        self._write_meta()
        return row

    def finish(self, **updates):
        self.meta.update(updates)
        self.meta["complete"] = True
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

    def cell(self, problem: str, optimizer: str) -> Dict[str, np.ndarray]:
        """The arrays of one cell's .npz (traces under ``trace_<name>``)."""
        for r in self.summary:
            if r["problem"] == problem and r["optimizer"] == optimizer:
                return load_npz(os.path.join(self.path, r["trace_file"]))
        raise OptbenchError(f"run {self.path} has no cell {problem} × {optimizer}")

    def problems(self) -> List[str]:
        return list(dict.fromkeys(r["problem"] for r in self.summary))

    def optimizers(self) -> List[str]:
        return list(dict.fromkeys(r["optimizer"] for r in self.summary))


def load_npz(path: str) -> Dict[str, np.ndarray]:
    """Load an .npz safely (no pickles) into a dict, with a one-line error on damage."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise OptbenchError(f"{path}: file is missing") from None
    except Exception as exc:  # zipfile/ValueError on a truncated or edited file
        raise OptbenchError(f"{path}: unreadable trace file ({type(exc).__name__}: {exc})") from None


def _parse_csv_value(col: str, v: str):
    if col in ("problem", "optimizer", "status", "statuses", "dtype", "trace_file"):
        return v
    if v == "":
        return None
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        return float(v)


def _read_csv(path: str, columns: List[str]) -> List[Dict[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise OptbenchError(f"{path}: file is missing") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OptbenchError(f"{path}: not a valid CSV file ({exc})") from None
    out = []
    for i, r in enumerate(rows, start=2):
        missing = [c for c in columns if c not in r or r[c] is None]
        if missing:
            raise OptbenchError(f"{path}: line {i} lacks column(s) {', '.join(missing)}")
        try:
            out.append({c: _parse_csv_value(c, r[c]) for c in r if c is not None})
        except ValueError as exc:
            raise OptbenchError(f"{path}: line {i}: bad value ({exc})") from None
    return out


def load_meta(path: str) -> Dict[str, Any]:
    mpath = os.path.join(path, "meta.json")
    if not os.path.isdir(path):
        raise OptbenchError(f"{path}: not a directory")
    try:
        with open(mpath, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise OptbenchError(f"{path}: not a run directory (no meta.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OptbenchError(f"{mpath}: corrupt JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise OptbenchError(f"{mpath}: expected a JSON object")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise OptbenchError(f"{mpath}: unknown schema_version {meta.get('schema_version')!r} (this optbench reads {SCHEMA_VERSION})")
    return meta


def load_run(path: str) -> Run:
    """Load a run directory, or raise a one-line OptbenchError naming the file and the fault."""
    meta = load_meta(path)
    if not meta.get("cells_done"):
        return Run(path, meta, [], [])
    summary = _read_csv(os.path.join(path, "summary.csv"), SUMMARY_COLUMNS)
    starts = _read_csv(os.path.join(path, "starts.csv"), STARTS_COLUMNS)
    return Run(path, meta, summary, starts)


def default_run_dir(root: str = os.path.join("results", "runs")) -> str:
    """``results/runs/<UTC timestamp>`` (a suffix is added if that exists)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, stamp)
    i = 1
    while os.path.exists(path):
        i += 1
        path = os.path.join(root, f"{stamp}-{i}")
    return path


def command_line() -> str:
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
