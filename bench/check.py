"""Regression checks against a stored baseline: ``optbench baseline`` and ``optbench check``.

A *baseline* is a JSON file holding, for every problem × optimizer cell of one run, the metrics a
change could make worse — success rate, median and 90th-percentile iterations and evaluations,
median final log10(f − f*), run time — together with the settings the run was made with and its
provenance. ``check`` recomputes the same metrics from a fresh run and compares them, metric by
metric, against stated tolerances.

Two kinds of metric, two rules:

* **Convergence metrics** (success, iterations, evaluations, f − f*) are deterministic in float64
  on a CPU: the same code, inputs and software stack give the same bits. They are compared with
  tight tolerances — by default any drop in success rate and any rise of more than 10 % in an
  iteration or evaluation count is a regression. So is any rise in the number of starts that end
  ``max_iter`` or ``diverged`` (the ``failed_starts`` row, from the cell's status counts): a start
  that stopped by itself short of f* and now runs out of iterations or blows up moves neither the
  success rate nor, often, any median.
* **Time** is noisy, so it is off by default. When asked for, a slowdown is a regression only if
  the ratio of medians exceeds a factor *and* the per-repeat times are consistently slower: a
  one-sided Mann–Whitney U test (Mann & Whitney 1947, *Ann. Math. Stat.* 18:50–60) at level
  ``alpha``. This is the rule of asv (airspeed velocity), whose ``compare`` requires both a factor
  and statistical significance. The report states how noisy the machine was (spread of repeats).

Cells present in the run but not in the baseline are reported as ``new`` and not gated (a newly
registered optimizer does not fail CI; regenerate the baseline to gate it); cells of the baseline
missing from the run are failures. A baseline made with other settings (dtype, starts, seeds,
max_iter, gtol) is bad input, not a regression: the two cannot be compared.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from decimal import Decimal
from fractions import Fraction
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from optbench_core import DTYPES, OptbenchError, close_matches

from . import store

#: version of the baseline file layout; loaders refuse any other
BASELINE_SCHEMA_VERSION = 1
BASELINE_KIND = "optbench-baseline"
#: the settings two runs must share for their convergence metrics to be comparable
SETTING_KEYS = ("dtype", "starts", "seeds", "max_iter", "gtol")
COUNTS = ("nit", "nfev", "njev", "nhev", "nhvp")
#: f − f* below SUBOPT_FLOOR_EPS · eps(dtype) · max(1, |f*|) is round-off, not a result: clamp it
SUBOPT_FLOOR_EPS = 100.0

#: metric name → (family, direction): "higher" means bigger is better
METRICS: Dict[str, Tuple[str, str]] = {"success_rate": ("success", "higher")}
for _c in COUNTS:
    METRICS[f"{_c}_median"] = ("nit" if _c == "nit" else "evals", "lower")
    METRICS[f"{_c}_p90"] = ("nit" if _c == "nit" else "evals", "lower")
METRICS["log10_subopt_median"] = ("subopt", "lower")
METRICS["run_s"] = ("time", "lower")

#: family → (default tolerance, meaning)
FAMILIES: Dict[str, Tuple[float, str]] = {
    "success": (0.0, "absolute drop in success rate allowed"),
    "nit": (0.10, "relative rise in iterations allowed"),
    "evals": (0.10, "relative rise in evaluation counts allowed"),
    "subopt": (1.0, "rise in log10(f − f*) allowed, in decades"),
    "time": (1.5, "slowdown factor (ratio of median run times) beyond which a significant change counts"),
    "failed": (0.0, "rise in the number of starts ending max_iter or diverged allowed"),
}
#: statuses of a start that did not finish: ran out of iterations or blew up
FAILED_STATUSES = ("max_iter", "diverged")
#: the row comparing how the starts ended (a cell's status counts), beside the METRICS rows
STATUS_ROW = "failed_starts"
DEFAULT_ALPHA = 0.05


# -- statistics ----------------------------------------------------------------------------------

def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def _u_distribution(n1: int, n2: int) -> List[int]:
    """Counts of the arrangements giving U = 0 … n1·n2 when there are no ties.

    The generating function of U is the Gaussian binomial coefficient
    ∏_{i=1}^{n1} (1 − q^{n2+i}) / (1 − q^i) (Mann & Whitney 1947); we multiply by each numerator
    factor and divide by each denominator factor exactly, in integers.
    """
    size = n1 * n2 + 1
    c = [0] * (size + n1 + n2 + 1)
    c[0] = 1
    for i in range(1, n1 + 1):
        k = n2 + i
        for u in range(len(c) - 1, k - 1, -1):  # multiply by (1 − q^k)
            c[u] -= c[u - k]
        for u in range(i, len(c)):  # divide by (1 − q^i): c'[u] = c[u] + c'[u − i]
            c[u] += c[u - i]
    return c[:size]


#: largest n1 + n2 for which the exact distribution is used (when there are no ties)
EXACT_MAX_N = 40


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str = "greater") -> Tuple[float, float]:
    """Mann–Whitney U statistic of ``x`` against ``y`` and its one-sided p-value.

    ``alternative="greater"``: H1 is that values of ``x`` tend to be larger than those of ``y``
    (``"less"``: smaller). U = #{(i, j): x_i > y_j} + ½ #{x_i = y_j}. Without ties and for
    n1 + n2 ≤ 40 the p-value is exact (the null distribution of U, Mann & Whitney 1947);
    otherwise the normal approximation with tie correction and continuity correction
    (as ``scipy.stats.mannwhitneyu(method="asymptotic")``).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs two non-empty samples")
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    both = np.concatenate([x, y])
    ranks = _average_ranks(both)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, tie_counts = np.unique(both, return_counts=True)
    has_ties = bool(np.any(tie_counts > 1))
    if not has_ties and n <= EXACT_MAX_N:
        dist = _u_distribution(n1, n2)
        total = math.comb(n, n1)
        u = int(round(u1))
        hits = sum(dist[u:]) if alternative == "greater" else sum(dist[:u + 1])
        return u1, hits / total
    mu = n1 * n2 / 2.0
    tie_term = float(np.sum(tie_counts ** 3 - tie_counts)) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return u1, 1.0
    if alternative == "greater":
        z = (u1 - mu - 0.5) / math.sqrt(var)
    else:
        z = (mu - u1 - 0.5) / math.sqrt(var)
    return u1, 0.5 * math.erfc(z / math.sqrt(2.0))


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest one-sided p-value the exact U test can reach with these sample sizes."""
    return 1.0 / math.comb(n1 + n2, n1)


def repeat_spread(times: Sequence[float]) -> Optional[float]:
    """Relative spread of a cell's repeated run times: median absolute deviation / median.

    Robust to the odd outlier (a first call that warms caches, a neighbour's burst of load),
    which a max − min range is not; None with fewer than two repeats.
    """
    t = np.asarray(times, dtype=np.float64)
    t = t[np.isfinite(t)]
    if len(t) < 2 or np.median(t) <= 0:
        return None
    med = np.median(t)
    return float(np.median(np.abs(t - med)) / med)


# -- metrics of one run ---------------------------------------------------------------------------

def _p90(a: np.ndarray) -> float:
    """90th percentile by nearest rank: a value some start actually reached."""
    return float(np.percentile(a, 90, method="inverted_cdf"))


def subopt_floor(dtype: str, f_star: float) -> float:
    """The clamp below which f − f* is taken as round-off: 100 · eps(dtype) · max(1, |f*|)."""
    return SUBOPT_FLOOR_EPS * float(np.finfo(np.dtype(dtype)).eps) * max(1.0, abs(f_star))


#: the per-start arrays of a cell's .npz the metrics are computed from
PER_START_ARRAYS = ("success", "status") + COUNTS


def _cell_arrays(arrays: Dict[str, np.ndarray], where: str, starts: Optional[int] = None) -> int:
    """Check the arrays a cell's metrics come from; return the number of starts.

    A trace file is written by optbench, but may be damaged or edited by hand: a missing array
    would raise KeyError deep inside, an empty one make every median NaN (which compare() takes as
    "not comparable" and passes), a NaN iteration count likewise. Each is a one-line error
    naming the file instead (bad input, exit 2), never a check that passes over it.
    """
    need = list(PER_START_ARRAYS)
    f_star = arrays.get("f_star", None)
    if f_star is not None and np.asarray(f_star).size == 1 and np.isfinite(np.asarray(f_star, dtype=np.float64)):
        need.append("fun")
    lacking = [k for k in need if k not in arrays]
    if lacking:
        raise OptbenchError(f"{where}: lacks the array(s) {', '.join(lacking)}")
    sizes = {k: np.shape(arrays[k]) for k in need}
    n = sizes[need[0]]
    if len(n) != 1 or any(v != n for v in sizes.values()):
        raise OptbenchError(f"{where}: per-start arrays must be 1-D and of one length, got shapes "
                            + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    n = n[0]
    if n == 0:
        raise OptbenchError(f"{where}: the cell has no starts")
    if starts is not None and _is_int(starts) and starts != n:
        raise OptbenchError(f"{where}: holds {n} starts, summary.csv says {starts} (file swapped or edited)")
    ok = np.asarray(arrays["success"])
    if not (ok.dtype.kind == "b" or (ok.dtype.kind in "iu" and np.all((ok == 0) | (ok == 1)))):
        raise OptbenchError(f"{where}: 'success' must hold booleans (or 0/1), got {_short(ok.tolist())}")
    for c in COUNTS:
        a = np.asarray(arrays[c])
        if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or np.any(a < 0):
            raise OptbenchError(f"{where}: '{c}' must hold finite counts >= 0")
    if "run_s_all" in arrays:
        t = np.asarray(arrays["run_s_all"])
        if t.dtype.kind not in "iuf" or not np.all(np.isfinite(t)) or np.any(t < 0):
            raise OptbenchError(f"{where}: 'run_s_all' must hold finite times >= 0")
    return n


def cell_metrics(arrays: Dict[str, np.ndarray], dtype: str, where: str = "cell",
                 starts: Optional[int] = None) -> Tuple[Dict[str, Any], List[float]]:
    """Per-cell metrics from a cell's stored arrays (see :mod:`bench.store`), and the per-repeat
    run times they were timed over. Arrays that cannot be a run's are a one-line OptbenchError
    naming ``where`` (see :func:`_cell_arrays`).

    ``log10_subopt_median`` is the median over starts of log10(max(f − f*, floor)), a
    non-finite final f or a ``diverged`` start (also ended by a non-finite gradient or x, with f
    still finite) counting as +inf; it is None when f* is unknown.
    """
    _cell_arrays(arrays, where, starts)
    out: Dict[str, Any] = {}
    success = np.asarray(arrays["success"]).astype(bool)
    out["success_rate"] = float(np.mean(success))
    for c in COUNTS:
        a = np.asarray(arrays[c], dtype=np.float64)
        out[f"{c}_median"] = float(np.median(a))
        out[f"{c}_p90"] = _p90(a)
    f_star = float(np.asarray(arrays.get("f_star", np.nan), dtype=np.float64).ravel()[0]) \
        if np.asarray(arrays.get("f_star", np.nan)).size == 1 else float("nan")
    if math.isfinite(f_star):
        fun = np.asarray(arrays["fun"], dtype=np.float64)
        diverged = np.asarray(arrays["status"]).astype(str) == "diverged" if "status" in arrays \
            else np.zeros(fun.shape, bool)
        sub = np.where(np.isfinite(fun) & ~diverged, fun - f_star, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.maximum(sub, subopt_floor(dtype, f_star)))
        out["log10_subopt_median"] = float(np.median(logs))
    else:
        out["log10_subopt_median"] = None
    times = [float(t) for t in np.asarray(arrays.get("run_s_all", []), dtype=np.float64).ravel()]
    out["run_s"] = float(np.median(times)) if times else None
    # the same ranges a baseline's metrics must have (a NaN here would pass any check)
    for k in METRICS:
        out[k] = _check_metric(k, out[k], where)
    return out, times


def _statuses(arrays) -> Dict[str, int]:
    names, counts = np.unique(np.asarray(arrays["status"]).astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """math.isfinite, but False for a JSON integer too large for a float (10**400), where
    math.isfinite and float() raise OverflowError."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _norm_setting(key: str, v: Any, where: str) -> Any:
    """One setting of a run or baseline cell, checked and in canonical form (None: not recorded).

    Both files may be edited by hand, so a value of the wrong type is a one-line error naming
    ``where`` (the file and cell) rather than whatever int()/float() raise — or, worse, a value
    int() truncates (3.7 → 3) and then compares equal to the run's.
    """
    if v is None:
        return None
    bad = None
    if key == "seeds":
        seeds = list(v) if isinstance(v, (list, tuple)) else [v]
        if not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
            bad = "an integer >= 0 or a non-empty list of them"
        else:
            return [int(s) for s in seeds]
    elif key == "gtol":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) or v < 0:
            bad = "a finite number >= 0"
        else:
            return float(v)
    elif key in ("starts", "max_iter"):
        if not _is_int(v) or v < 1:
            bad = "an integer >= 1"
        else:
            return int(v)
    elif key == "dtype":
        if v not in DTYPES:
            bad = f"one of {', '.join(DTYPES)}"
        else:
            return v
    else:
        return v
    raise OptbenchError(f"{where}: setting {key!r} must be {bad}, got {_short(v)}")


def _short(v: Any) -> str:
    """repr(v), cut so that one bad value cannot make an error message many lines long."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _cell_settings(meta: Dict[str, Any], mpath: str = "meta.json"
                   ) -> Tuple[Dict[str, Any], Dict[Tuple[str, str], Dict[str, Any]]]:
    """The run's common settings and, where meta.json lists them, each cell's own (``mpath``
    names meta.json in errors)."""
    cfg = meta.get("config") or {}
    common = {}
    for k in SETTING_KEYS:
        v = cfg.get(k)
        if k == "seeds" and v is None and "seed" in cfg:
            v = cfg["seed"]
        common[k] = _norm_setting(k, v, f"{mpath}: config")
    per_cell = {}
    cells = cfg.get("cells") or []
    if not isinstance(cells, list):
        raise OptbenchError(f"{mpath}: config 'cells' must be a list, got {_short(cells)}")
    for i, c in enumerate(cells, 1):
        if isinstance(c, dict) and "problem" in c and "optimizer" in c:
            where = f"{mpath}: config cells[{i}]"
            if not (isinstance(c["problem"], str) and isinstance(c["optimizer"], str)):
                raise OptbenchError(f"{where}: problem and optimizer must be strings")
            s = {k: _norm_setting(k, c.get(k, common.get(k)), where) for k in SETTING_KEYS}
            if c.get("seeds") is None and "seed" in c:
                s["seeds"] = _norm_setting("seeds", c["seed"], where)
            per_cell[(c["problem"], c["optimizer"])] = s
    return common, per_cell


def _portable_command(cmd: Any) -> Any:
    """The command line with absolute paths cut to their last component (no machine paths)."""
    if not isinstance(cmd, str):
        return cmd
    return " ".join(os.path.basename(t.rstrip("/")) or t if os.path.isabs(t) else t for t in cmd.split(" "))


def _check_source(src: Dict[str, Any], where: str) -> None:
    """The provenance fields the reports index or slice must have their type: ``versions`` an
    object of strings, ``git_commit`` a string (either may be null: not recorded)."""
    versions = src.get("versions")
    if versions is not None and not isinstance(versions, dict):
        raise OptbenchError(f"{where}: 'versions' must be an object, got {_short(versions)}")
    commit = src.get("git_commit")
    if commit is not None and not isinstance(commit, str):
        raise OptbenchError(f"{where}: 'git_commit' must be a string, got {_short(commit)}")


def _provenance(run: store.Run) -> Dict[str, Any]:
    m = run.meta
    keys = ("created", "git_commit", "git_dirty", "host", "platform", "cpu_count", "cpu_threads", "backend", "device_kind",
            "device_count", "x64", "versions", "xla_options")
    _check_source(m, os.path.join(run.path, "meta.json"))
    out = {k: m.get(k) for k in keys}
    out["command"] = _portable_command(m.get("command"))
    out["run_dir"] = os.path.basename(os.path.normpath(run.path))
    cfg = m.get("config") or {}
    out["suite"] = cfg.get("suite")
    out["repeats"] = cfg.get("repeats")
    out["fuse_loops"] = cfg.get("fuse_loops", False)   # true, false or "mixed" (absent before it existed)
    return out


def run_metrics(path: str) -> Dict[str, Any]:
    """Load a complete run directory and compute every cell's metrics, in baseline layout."""
    run = store.load_run(path)
    if not run.meta.get("complete", False):
        raise OptbenchError(f"{path}: run is incomplete (meta.json says complete: false); finish it before "
                            "making or checking a baseline")
    if not run.summary:
        raise OptbenchError(f"{path}: run has no cells")
    mpath = os.path.join(path, "meta.json")
    common, per_cell = _cell_settings(run.meta, mpath)
    cells = []
    for row in run.summary:
        key = (row["problem"], row["optimizer"])
        arrays = run.cell(*key, padded=False)   # its metrics read no trace
        settings = dict(per_cell.get(key, common))
        dtype = settings.get("dtype") or _norm_setting("dtype", row.get("dtype") or None,
                                                       os.path.join(path, "summary.csv")) or "float64"
        settings["dtype"] = dtype
        missing = [k for k, v in settings.items() if v is None]
        if missing:
            raise OptbenchError(f"{path}: meta.json does not record the setting(s) {', '.join(missing)} "
                                f"of cell {key[0]} × {key[1]}")
        metrics, times = cell_metrics(arrays, dtype, os.path.join(path, str(row.get("trace_file"))),
                                      row.get("starts"))
        cells.append({"problem": key[0], "optimizer": key[1], "dim": row.get("dim"), "starts_run": row.get("starts"),
                      "settings": settings, "metrics": metrics, "run_s_all": times, "statuses": _statuses(arrays)})
    return {"schema_version": BASELINE_SCHEMA_VERSION, "kind": BASELINE_KIND,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": _provenance(run), "settings": _common_settings(cells),
            "definitions": {
                "success_rate": "fraction of starts solved: f* unknown, converged (gradient norm <= gtol); f* known, "
                                "f - f* <= 1e-6 max(1,|f*|) (float32: max(1e-6, 3.45e-4 |f*|)) at a start that stopped by "
                                "itself (any status but max_iter and diverged)",
                "<count>_median / <count>_p90": "median / nearest-rank 90th percentile over starts",
                "log10_subopt_median": f"median over starts of log10(max(f - f*, {SUBOPT_FLOOR_EPS:g} eps(dtype) "
                                       "max(1,|f*|))); non-finite f counts as +inf; null where f* is unknown",
                "run_s": "median wall time of one batched run over the repeats (run_s_all)"},
            "cells": cells}


def _common_settings(cells: List[Dict[str, Any]]) -> Dict[str, Any]:
    out = {}
    for k in SETTING_KEYS:
        vals = []
        for c in cells:
            if c["settings"][k] not in vals:
                vals.append(c["settings"][k])
        out[k] = vals[0] if len(vals) == 1 else "mixed"
    return out


def _encode(obj):
    """Non-finite floats as strings, so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    return obj


def _decode_number(v: Any, where: str) -> Optional[float]:
    """A number as :func:`_encode` wrote it: a JSON number, or "inf"/"-inf"/"nan" for the
    non-finite ones; None for null. Which values a field may take is :func:`_check_metric`'s."""
    if v is None:
        return None
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise OptbenchError(f"{where}: expected a number, got {_short(v)}")
    if not _finite(v):
        if isinstance(v, int):   # a JSON integer beyond float's range: float() would raise OverflowError
            raise OptbenchError(f"{where}: number too large, got {_short(v)}")
    return float(v)


def _check_metric(name: str, v: Optional[float], where: str) -> Optional[float]:
    """A baseline metric, or a one-line error if it cannot be one a run produced.

    This matters beyond tidiness: compare() takes a NaN on either side as "not comparable"
    (n/a), so a baseline whose nit_median reads NaN would pass any regression. Success rates are
    fractions in [0, 1], counts finite and >= 0; log10(f − f*) is finite or +inf (a diverged
    median), or null where f* is unknown; run_s is finite and >= 0, or null.
    """
    if name == "log10_subopt_median":
        if v is None or math.isfinite(v) or v == math.inf:
            return v
        bad = "a finite number, \"inf\" or null"
    elif name == "run_s":
        if v is None or (math.isfinite(v) and v >= 0):
            return v
        bad = "a finite number >= 0 or null"
    elif v is None:
        bad = "a number (it is null)"
    elif name == "success_rate":
        if math.isfinite(v) and 0.0 <= v <= 1.0:
            return v
        bad = "a fraction between 0 and 1"
    else:
        if math.isfinite(v) and v >= 0:
            return v
        bad = "a finite number >= 0"
    raise OptbenchError(f"{where}: metric {name} must be {bad}, got {_fmt_raw(v)}")


def _fmt_raw(v: Optional[float]) -> str:
    return "null" if v is None else repr(v)


def _read_baseline_doc(path: str) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path`` if it is an optbench baseline, else None."""
    try:
        doc = store.read_json(path, "file")
    except OptbenchError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == BASELINE_KIND else None


def is_baseline_file(path: str) -> bool:
    """Whether ``path`` is an existing file holding an optbench baseline."""
    return os.path.isfile(path) and _read_baseline_doc(path) is not None


def existing_baseline(out: str, option: str = "--out") -> Optional[Dict[str, Any]]:
    """What ``out`` holds now, for a command about to write a baseline there: None if nothing (or
    an empty file), the old baseline's ``source`` (its provenance) if a baseline, which may be
    replaced; any other file — a suite, a report, source code, a file that is not JSON — is a
    one-line error, never silently replaced."""
    if os.path.isdir(out):
        raise OptbenchError(f"{option} {out}: is a directory; give the baseline file's path")
    store.refuse_special(out, f"{option} {out}")
    if not os.path.exists(out) or os.path.getsize(out) == 0:
        return None
    doc = _read_baseline_doc(out)
    if doc is None:
        raise OptbenchError(f"{option} {out}: exists and is not an optbench baseline; refusing to replace it "
                            "(remove it or choose another path)")
    src = doc.get("source")
    return src if isinstance(src, dict) else {}


def write_baseline(run_dir: str, out: str) -> Dict[str, Any]:
    """Compute the baseline of a run directory and write it to ``out`` (JSON), atomically.

    ``out`` may not be one of the run's own files, nor an existing file other than a baseline
    (see :func:`existing_baseline`); an existing baseline is replaced."""
    store.refuse_run_output(out, run_dir)
    existing_baseline(out)
    doc = run_metrics(run_dir)
    store.write_json(out, _encode(doc))
    return doc


def load_baseline(path: str) -> Dict[str, Any]:
    """Read and validate a baseline file; any fault is a one-line OptbenchError (exit 2).

    Everything compare() and the reports use is checked here, for type and range, so that a
    hand-edited file fails with its name and the field, never with an exception from deep inside
    the comparison, and never by passing a check it should fail.
    """
    doc = store.read_json(path, "baseline file")
    if not isinstance(doc, dict) or doc.get("kind") != BASELINE_KIND:
        raise OptbenchError(f"{path}: not an optbench baseline (no \"kind\": \"{BASELINE_KIND}\")")
    ver = doc.get("schema_version")
    if not _is_int(ver) or ver != BASELINE_SCHEMA_VERSION:   # 1.0 and true equal 1 in Python, but are not it
        raise OptbenchError(f"{path}: unknown baseline schema_version {_short(ver)} (this optbench reads "
                            f"{BASELINE_SCHEMA_VERSION})")
    src = doc.get("source")
    if src is None:
        doc["source"] = src = {}
    if not isinstance(src, dict):
        raise OptbenchError(f"{path}: 'source' must be an object, got {_short(src)}")
    _check_source(src, f"{path}: source")
    if doc.get("settings") is None:
        doc["settings"] = {}
    if not isinstance(doc["settings"], dict):
        raise OptbenchError(f"{path}: 'settings' must be an object, got {_short(doc['settings'])}")
    cells = doc.get("cells")
    if not isinstance(cells, list) or not cells:
        raise OptbenchError(f"{path}: baseline has no cells")
    seen = set()
    for i, c in enumerate(cells):
        where = f"{path}: cell {i}"
        if not isinstance(c, dict) or not isinstance(c.get("problem"), str) or not isinstance(c.get("optimizer"), str):
            raise OptbenchError(f"{where}: needs string 'problem' and 'optimizer'")
        key = (c["problem"], c["optimizer"])
        if key in seen:
            raise OptbenchError(f"{where}: cell {key[0]} × {key[1]} appears twice")
        seen.add(key)
        where = f"{path}: cell {key[0]} × {key[1]}"
        if not isinstance(c.get("settings"), dict) or any(k not in c["settings"] for k in SETTING_KEYS):
            raise OptbenchError(f"{where}: needs 'settings' with {', '.join(SETTING_KEYS)}")
        c["settings"] = {k: _norm_setting(k, c["settings"][k], where) for k in SETTING_KEYS}
        m = c.get("metrics")
        if not isinstance(m, dict) or any(k not in m for k in METRICS):
            lacking = [k for k in METRICS if not isinstance(m, dict) or k not in m]
            raise OptbenchError(f"{where}: metrics lack {', '.join(lacking)}")
        c["metrics"] = {k: _check_metric(k, _decode_number(m[k], f"{where}: metric {k}"), where) for k in METRICS}
        times = c.get("run_s_all", [])
        if times is None:
            times = []
        if not isinstance(times, list):
            raise OptbenchError(f"{where}: run_s_all must be a list")
        c["run_s_all"] = [_decode_number(t, f"{where}: run_s_all") for t in times]
        if any(t is None or not math.isfinite(t) or t < 0 for t in c["run_s_all"]):
            raise OptbenchError(f"{where}: run_s_all must hold finite times >= 0")
        st = c.get("statuses")
        if st is not None and not (isinstance(st, dict) and all(isinstance(k, str) and _is_int(v) and v >= 0
                                                                 for k, v in st.items())):
            raise OptbenchError(f"{where}: 'statuses' must be an object of status -> count >= 0, got {_short(st)}")
    return doc


# -- tolerances -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Tolerances:
    """Per-family tolerances, per-metric overrides, whether time is checked, and the test level."""

    family: Dict[str, float] = dataclasses.field(default_factory=lambda: {k: v[0] for k, v in FAMILIES.items()})
    metric: Dict[str, float] = dataclasses.field(default_factory=dict)
    time: bool = False
    alpha: float = DEFAULT_ALPHA
    #: any change of a convergence metric, better or worse, fails (``--exact``: for a change that
    #: must move no result — a refactor, speed work — checked on the baseline's own software stack)
    exact: bool = False

    def of(self, metric: str) -> float:
        return self.metric.get(metric, self.family[METRICS[metric][0]])

    def describe(self) -> str:
        if self.exact:
            parts = ["convergence metrics: any change, better or worse (--exact)"]
        else:
            parts = [f"success rate: {'any drop' if self.family['success'] == 0 else 'drop > ' + _num(self.family['success'])}",
                     f"iterations: +{_percent(self.family['nit'])}", f"evaluations: +{_percent(self.family['evals'])}",
                     f"log10(f-f*): +{self.family['subopt']:g} decade(s)",
                     f"starts ending {'/'.join(FAILED_STATUSES)}: "
                     + ("any rise" if self.family["failed"] == 0 else f"rise > {self.family['failed']:g}")]
        parts.append(f"time: x{self.family['time']:g} and Mann-Whitney p <= {self.alpha:g}" if self.time else "time: off")
        parts += [f"{k}: {v:g}" for k, v in self.metric.items()]
        return "; ".join(parts)

    def as_dict(self) -> Dict[str, Any]:
        return {"family": dict(self.family), "metric": dict(self.metric), "time": self.time, "alpha": self.alpha,
                "exact": self.exact}


def _num(v: float) -> str:
    return f"{v:g}"


def parse_tolerances(items: Sequence[str], time: bool = False, alpha: float = DEFAULT_ALPHA,
                     exact: bool = False) -> Tolerances:
    """``["nit=0.2", "evals=15%,subopt=0.5", "nit_p90=0.3", "time=1.3"]`` → :class:`Tolerances`.

    Keys are the families (success, nit, evals, subopt, time) or single metric names. A time
    tolerance also turns the time check on. ``exact``: any change of a convergence metric fails
    (only a time tolerance may be given with it).
    """
    tol = Tolerances(time=bool(time), alpha=alpha, exact=bool(exact))
    if not (0 < alpha < 1):
        raise OptbenchError(f"--alpha must be in (0, 1), got {alpha:g}")
    seen = set()
    for item in items or []:
        for part in [p.strip() for p in item.split(",") if p.strip()]:
            key, eq, val = part.partition("=")
            key = key.strip()
            if key == STATUS_ROW:
                key = "failed"
            if key in seen:   # the last one silently won
                raise OptbenchError(f"--tolerance: {key} given twice")
            seen.add(key)
            if not eq or not val.strip():
                raise OptbenchError(f"--tolerance: expected KEY=VALUE, got {part!r}")
            if key not in FAMILIES and key not in METRICS:
                raise OptbenchError(f"--tolerance: unknown key {key!r}{close_matches(key, list(FAMILIES) + list(METRICS) + [STATUS_ROW])}; "
                                    f"use one of {', '.join(FAMILIES)} or a metric name")
            text = val.strip()
            try:
                # a percentage as the decimal it names: float("0.7") / 100 is 0.006999…, which
                # failed a rise of exactly 0.7 % that "nit=0.007" passed
                v = float(Decimal(text[:-1]) / 100) if text.endswith("%") else float(text)
            except (ValueError, ArithmeticError):
                raise OptbenchError(f"--tolerance: {key} needs a number, got {text!r}") from None
            fam = key if key in FAMILIES else METRICS[key][0]
            if exact and fam != "time":
                raise OptbenchError(f"--tolerance {key}: --exact allows no change in convergence metrics; "
                                    f"give one or the other")
            if not math.isfinite(v) or v < 0:
                raise OptbenchError(f"--tolerance: {key} must be a finite number >= 0, got {text}")
            if fam == "failed" and (text.endswith("%") or not v.is_integer()):
                raise OptbenchError(f"--tolerance: {key} is a number of starts, a whole number >= 0; got {text}")
            if fam == "success" and v > 1:
                raise OptbenchError(f"--tolerance: {key} is a drop in success rate, between 0 and 1; got {text}")
            if fam == "time":
                if text.endswith("%"):
                    v = 1.0 + v
                if v <= 1:
                    raise OptbenchError(f"--tolerance: {key} is a slowdown factor > 1 (e.g. 1.5 or 50%), got {text}")
                tol.time = True
            if key in FAMILIES:
                tol.family[key] = v
            else:
                tol.metric[key] = v
    return tol


# -- comparison ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class MetricRow:
    metric: str
    baseline: Optional[float]
    current: Optional[float]
    verdict: str          # "same", "regression", "improvement", "inconclusive", "n/a"
    change: str = ""
    detail: str = ""


@dataclasses.dataclass
class CellResult:
    problem: str
    optimizer: str
    status: str           # "ok", "regression", "new", "missing"
    rows: List[MetricRow] = dataclasses.field(default_factory=list)
    run_s: Optional[float] = None

    def changed(self) -> List[MetricRow]:
        return [r for r in self.rows if r.verdict in ("regression", "improvement", "inconclusive")]


@dataclasses.dataclass
class Comparison:
    baseline_path: str
    run_path: str
    baseline: Dict[str, Any]
    current: Dict[str, Any]
    tolerances: Tolerances
    cells: List[CellResult]
    noise: Dict[str, Any]
    notes: List[str]

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cells)

    @property
    def regressions(self) -> List[Tuple[CellResult, MetricRow]]:
        return [(c, r) for c in self.cells for r in c.rows if r.verdict == "regression"]

    @property
    def improvements(self) -> List[Tuple[CellResult, MetricRow]]:
        return [(c, r) for c in self.cells for r in c.rows if r.verdict == "improvement"]

    @property
    def exit_code(self) -> int:
        return 1 if (self.regressions or self.count("missing")) else 0

    @property
    def verdict(self) -> str:
        return "regression" if self.exit_code else "pass"

    def headline(self) -> str:
        n = len(self.cells)
        parts = [f"{len(self.regressions)} regression(s) in {self.count('regression')} cell(s)",
                 f"{len(self.improvements)} improvement(s)", f"{self.count('missing')} missing",
                 f"{self.count('new')} new"]
        word = "FAIL" if self.exit_code else "PASS"
        return f"optbench check: {word} — {n} cells: " + ", ".join(parts)


def _fmt_value(metric: str, v: Optional[float]) -> str:
    if v is None:
        return "-"
    if metric == "success_rate":
        return f"{v:.0%}"
    if metric == "run_s":
        return f"{v * 1e3:.3g} ms"
    if metric == "log10_subopt_median":
        return "inf" if v == math.inf else f"{v:.2f}"
    if metric == STATUS_ROW:
        return f"{int(v)}"
    return f"{v:g}"


def _percent(t: float) -> str:
    """A relative tolerance as a percentage, as written (0.007 → "0.7%", 0.125 → "12.5%")."""
    return f"{float(Decimal(repr(float(t))) * 100):g}%"


def _decimal(t: float) -> Fraction:
    """A tolerance as the decimal the user wrote (``0.15`` from "0.15" or "15%"), exactly: the
    shortest repr of the float, which reads back as it."""
    return Fraction(repr(float(t)))


def _compare_metric(metric: str, b: Optional[float], c: Optional[float], tol: Tolerances,
                    b_times: Sequence[float], c_times: Sequence[float]) -> MetricRow:
    fam, _ = METRICS[metric]
    t = tol.of(metric)
    if b is None or c is None or (isinstance(b, float) and math.isnan(b)) or (isinstance(c, float) and math.isnan(c)):
        if tol.exact and fam != "time" and (b is None) != (c is None):
            # f* known on one side only: the result moved (log10(f − f*) appeared or vanished)
            return MetricRow(metric, b, c, "regression", "known" if b is None else "unknown",
                             "--exact: any change counts, better or worse")
        return MetricRow(metric, b, c, "n/a")
    if tol.exact and fam != "time":
        row = _compare_metric(metric, b, c, Tolerances(family={k: 0.0 for k in FAMILIES}), (), ())
        if b == c:
            return row
        return MetricRow(metric, b, c, "regression", row.change, "--exact: any change counts, better or worse")
    if fam == "success":
        d = c - b
        change = f"{d * 100:+.1f} pts"
        eps = 1e-12  # rates are means of booleans: exact, but leave room for the last bit
        if d < -(t + eps):
            return MetricRow(metric, b, c, "regression", change, f"tolerance: drop <= {t * 100:g} pts")
        if d > t + eps:
            return MetricRow(metric, b, c, "improvement", change)
        return MetricRow(metric, b, c, "same", change)
    if fam in ("nit", "evals"):
        change = f"{(c - b) / b:+.1%}" if b > 0 else (f"{c - b:+g}" if c != b else "+0")
        # in exact rationals: b·(1 + t) in floats can round below the true bound (100 × 1.15 =
        # 114.99999999999999), failing a rise of exactly the tolerance, which is allowed
        fb, fc, ft = Fraction(b), Fraction(c), _decimal(t)
        if fc > fb * (1 + ft):
            return MetricRow(metric, b, c, "regression", change, f"tolerance: +{_percent(t)}")
        if fc * (1 + ft) < fb:
            return MetricRow(metric, b, c, "improvement", change)
        return MetricRow(metric, b, c, "same", change)
    if fam == "subopt":
        if b == c:
            return MetricRow(metric, b, c, "same", "+0 dec")
        d = c - b
        change = "+inf dec" if d == math.inf else ("-inf dec" if d == -math.inf else f"{d:+.2f} dec")
        # finite ends in exact decimals, as the counts: -13.65… against -13.95… is a rise of
        # 0.3000000000000007 in floats, and failed a tolerance of exactly 0.3
        up, down = ((d > 0, d < 0) if not math.isfinite(d) else
                    (_decimal(c) - _decimal(b) > _decimal(t), _decimal(b) - _decimal(c) > _decimal(t)))
        if up:
            return MetricRow(metric, b, c, "regression", change, f"tolerance: +{t:g} decade(s)")
        if down:
            return MetricRow(metric, b, c, "improvement", change)
        return MetricRow(metric, b, c, "same", change)
    # time: a factor and a consistent shift over repeats (asv's rule)
    if not tol.time:
        return MetricRow(metric, b, c, "n/a", f"x{c / b:.2f}" if b > 0 else "", "time not checked")
    if b <= 0:
        return MetricRow(metric, b, c, "n/a")
    ratio = c / b
    change = f"x{ratio:.2f}"
    slower, faster = ratio > t, ratio < 1.0 / t
    if not (slower or faster):
        return MetricRow(metric, b, c, "same", change)
    if len(b_times) < 1 or len(c_times) < 1:
        return MetricRow(metric, b, c, "inconclusive", change, "no per-repeat times")
    _, p = mann_whitney_u(c_times, b_times, "greater" if slower else "less")
    detail = f"Mann-Whitney p={p:.3g} over {len(c_times)}+{len(b_times)} repeats"
    if p <= tol.alpha:
        return MetricRow(metric, b, c, "regression" if slower else "improvement", change, detail)
    floor = min_attainable_p(len(c_times), len(b_times))
    if floor > tol.alpha:
        detail += f"; these repeat counts cannot reach p <= {tol.alpha:g} (best {floor:.3g}): use more --repeats"
    return MetricRow(metric, b, c, "inconclusive", change, detail)


def _failed(statuses: Dict[str, int]) -> int:
    return sum(int(statuses.get(k, 0)) for k in FAILED_STATUSES)


def _statuses_text(statuses: Dict[str, int]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(statuses.items()) if v) or "none"


def _compare_statuses(b: Optional[Dict[str, int]], c: Optional[Dict[str, int]], tol: Tolerances) -> MetricRow:
    """How the starts ended: the number ending max_iter or diverged may not rise (a start that
    stopped by itself at a local minimum and now runs out of iterations or blows up leaves the
    success rate, and often every median, as it was); under --exact the status counts may not
    change at all (a start converged before, stalled now)."""
    if b is None or c is None:
        return MetricRow(STATUS_ROW, None, None, "n/a", "", "status counts not recorded")
    fb, fc = _failed(b), _failed(c)
    d = fc - fb
    change = f"{d:+d} start(s)"
    moved = f"{_statuses_text(b)} -> {_statuses_text(c)}"
    if tol.exact:
        same = {k: v for k, v in b.items() if v} == {k: v for k, v in c.items() if v}
        if same:
            return MetricRow(STATUS_ROW, float(fb), float(fc), "same", change)
        return MetricRow(STATUS_ROW, float(fb), float(fc), "regression", change,
                         f"--exact: any change counts, better or worse; statuses {moved}")
    t = tol.family["failed"]
    if d > t:
        return MetricRow(STATUS_ROW, float(fb), float(fc), "regression", change,
                         f"starts ending {' or '.join(FAILED_STATUSES)}, tolerance: +{t:g}; statuses {moved}")
    if d < -t:
        # fewer starts ran out or blew up: an improvement only where as many more converged (a
        # start that now gives up early, linesearch_failed short of f*, is no better off)
        if int(c.get("converged", 0)) - int(b.get("converged", 0)) >= -d:
            return MetricRow(STATUS_ROW, float(fb), float(fc), "improvement", change, f"statuses {moved}")
        return MetricRow(STATUS_ROW, float(fb), float(fc), "same", change,
                         f"fewer end {' or '.join(FAILED_STATUSES)}, but no more converge; statuses {moved}")
    return MetricRow(STATUS_ROW, float(fb), float(fc), "same", change)


def _noise(doc: Dict[str, Any]) -> Dict[str, Any]:
    spreads = []
    for c in doc["cells"]:
        s = repeat_spread(c.get("run_s_all") or [])
        if s is not None:
            spreads.append((s, f"{c['problem']} × {c['optimizer']}"))
    reps = sorted({len(c.get("run_s_all") or []) for c in doc["cells"]})
    if not spreads:
        return {"cells_timed": 0, "repeats": reps, "median_spread": None, "max_spread": None, "worst_cell": None}
    spreads.sort()
    return {"cells_timed": len(spreads), "repeats": reps,
            "median_spread": float(np.median([s for s, _ in spreads])), "max_spread": spreads[-1][0],
            "worst_cell": spreads[-1][1]}


def _check_settings(base: Dict[str, Any], cur: Dict[str, Any], baseline_path: str) -> None:
    """Raise a one-line OptbenchError naming every setting on which the two runs differ."""
    bcells = {(c["problem"], c["optimizer"]): c for c in base["cells"]}
    diffs: Dict[str, Tuple[Any, Any, str]] = {}
    for c in cur["cells"]:
        b = bcells.get((c["problem"], c["optimizer"]))
        if b is None:
            continue
        for k in SETTING_KEYS:
            if b["settings"][k] != c["settings"][k] and k not in diffs:
                diffs[k] = (b["settings"][k], c["settings"][k], f"{c['problem']} × {c['optimizer']}")
    if not any((c["problem"], c["optimizer"]) in bcells for c in cur["cells"]):
        for k in SETTING_KEYS:  # nothing in common: the common settings still say whether they compare
            bv, cv = (base.get("settings") or {}).get(k), cur["settings"].get(k)
            if bv is not None and bv != cv and not (bv == "mixed" or cv == "mixed"):
                diffs[k] = (bv, cv, "")
    if diffs:
        text = "; ".join(f"{k} {bv!r} in the baseline vs {cv!r} in the run" for k, (bv, cv, _) in diffs.items())
        raise OptbenchError(f"{baseline_path}: baseline was made with different settings: {text} "
                            "(rerun with the baseline's settings or regenerate the baseline)")


def compare(baseline: Dict[str, Any], current: Dict[str, Any], tol: Tolerances,
            baseline_path: str = "baseline", run_path: str = "run") -> Comparison:
    """Compare a run's metrics (:func:`run_metrics`) with a baseline (:func:`load_baseline`)."""
    _check_settings(baseline, current, baseline_path)
    notes = []
    bsrc, csrc = baseline.get("source", {}), current.get("source", {})
    same_dev = (bsrc.get("backend"), bsrc.get("device_kind")) == (csrc.get("backend"), csrc.get("device_kind"))
    if not same_dev:
        where = (f"baseline on {bsrc.get('backend')} ({bsrc.get('device_kind')}), run on {csrc.get('backend')} "
                 f"({csrc.get('device_kind')})")
        if tol.time:
            raise OptbenchError(f"{baseline_path}: cannot compare times across devices: {where}")
        notes.append(f"{where}: convergence metrics compared; they may differ in the last bits across devices")
    bt, ct = bsrc.get("cpu_threads"), csrc.get("cpu_threads")
    if same_dev and tol.time and bt is not None and ct is not None and bt != ct:
        notes.append(f"the baseline ran on {bt} CPU thread(s), the run on {ct} (--cpu-threads): times compared "
                     "across different thread pools")
    bjax, cjax = (bsrc.get("versions") or {}).get("jax"), (csrc.get("versions") or {}).get("jax")
    if bjax != cjax:
        notes.append(f"jax {bjax} in the baseline, {cjax} "
                     "in the run: compiled code may differ, regenerate the baseline after an upgrade")
    blib, clib = (bsrc.get("versions") or {}).get("jaxlib"), (csrc.get("versions") or {}).get("jaxlib")
    if blib is not None and clib is not None and blib != clib:
        notes.append(f"jaxlib {blib} in the baseline, {clib} in the run: compiled code may differ, regenerate the "
                     "baseline after an upgrade")
    bxla, cxla = bsrc.get("xla_options"), csrc.get("xla_options")
    if bxla is not None and cxla is not None and bxla != cxla:
        notes.append("the baseline and the run were compiled with different XLA options (optbench's own rules, "
                     "OPTBENCH_XLA_OPTIONS or OPTBENCH_XLA_DEFAULTS; meta.json's xla_options): convergence metrics may "
                     "differ in the last bits")
    bfuse, cfuse = bsrc.get("fuse_loops", False), csrc.get("fuse_loops", False)
    if bfuse != cfuse:
        notes.append(f"fuse_loops {json.dumps(bfuse)} in the baseline, {json.dumps(cfuse)} in the run: loops compiled "
                     "differently, so convergence metrics may differ in the last bits (and, on ill-conditioned "
                     "problems, in iterations)")
    bcells = {(c["problem"], c["optimizer"]): c for c in baseline["cells"]}
    ccells = {(c["problem"], c["optimizer"]): c for c in current["cells"]}
    results = []
    for key, c in ccells.items():
        b = bcells.get(key)
        if b is None:
            results.append(CellResult(key[0], key[1], "new", run_s=c["metrics"].get("run_s")))
            continue
        rows = [_compare_metric(m, b["metrics"].get(m), c["metrics"].get(m), tol, b.get("run_s_all") or [],
                                c.get("run_s_all") or []) for m in METRICS]
        rows.append(_compare_statuses(b.get("statuses"), c.get("statuses"), tol))
        status = "regression" if any(r.verdict == "regression" for r in rows) else "ok"
        results.append(CellResult(key[0], key[1], status, rows, run_s=c["metrics"].get("run_s")))
    for key in bcells:
        if key not in ccells:
            results.append(CellResult(key[0], key[1], "missing"))
    noise = {"baseline": _noise(baseline), "run": _noise(current)}
    if tol.time:
        med = noise["run"]["median_spread"]
        if med is None:
            # what one repeat a side can show depends on --alpha (the best p of 1+1 repeats is 0.5)
            notes.append("time check asked for, but the run has fewer than two repeats per cell: its noise "
                         "cannot be measured, and a time difference is significant only at a loose --alpha "
                         f"(best p with 1 repeat each: {min_attainable_p(1, 1):.3g}; use --repeats 5 or more)")
        elif med > tol.family["time"] - 1.0:
            notes.append(f"the machine is noisier (repeats vary by {med:.0%}) than the time threshold "
                         f"(x{tol.family['time']:g}): smaller slowdowns cannot be told from noise")
    if any(r.status == "new" for r in results):
        notes.append("new cells are not in the baseline and are not checked: regenerate the baseline to gate them")
    return Comparison(baseline_path, run_path, baseline, current, tol, results, noise, notes)


# -- reports ------------------------------------------------------------------------------------------

def _noise_line(noise: Dict[str, Any]) -> str:
    parts = []
    for who in ("baseline", "run"):
        n = noise[who]
        if n["median_spread"] is None:
            parts.append(f"{who}: not measurable ({'/'.join(map(str, n['repeats'])) or 0} repeat(s) per cell)")
        else:
            parts.append(f"{who}: repeats vary by {n['median_spread']:.1%} (MAD/median; median over cells), "
                         f"worst {n['max_spread']:.1%} ({n['worst_cell']}), "
                         f"{'/'.join(map(str, n['repeats']))} repeats per cell")
    return "timing noise — " + "; ".join(parts)


def _source_line(label: str, path: str, src: Dict[str, Any]) -> str:
    commit = (src.get("git_commit") or "unknown")[:12]
    return (f"{label}: {path} (run {src.get('run_dir')} of {src.get('created')}, commit {commit}, "
            f"{src.get('backend')} {src.get('device_kind')}, jax {(src.get('versions') or {}).get('jax')})")


def _settings_line(s: Dict[str, Any]) -> str:
    return "settings: " + " ".join(f"{k}={s.get(k)}" for k in SETTING_KEYS)


def _table_rows(cmp: Comparison) -> List[List[str]]:
    rows = []
    order = {"regression": 0, "inconclusive": 1, "improvement": 2}
    for c in cmp.cells:
        if c.status in ("new", "missing"):
            rows.append([c.problem, c.optimizer, "(cell)", "-" if c.status == "new" else "present",
                         "present" if c.status == "new" else "-", "",
                         "MISSING" if c.status == "missing" else "new (not checked)"])
            continue
        for r in sorted(c.changed(), key=lambda r: order[r.verdict]):
            verdict = {"regression": "REGRESSION", "improvement": "improvement", "inconclusive": "inconclusive"}[r.verdict]
            if r.detail and r.verdict != "improvement":
                verdict += f" ({r.detail})"
            rows.append([c.problem, c.optimizer, r.metric, _fmt_value(r.metric, r.baseline),
                         _fmt_value(r.metric, r.current), r.change, verdict])
    return rows


_HEAD = ["problem", "optimizer", "metric", "baseline", "current", "change", "verdict"]


def format_text(cmp: Comparison) -> str:
    """The report as plain text: headline, provenance, tolerances, noise, and a table of changes."""
    lines = [cmp.headline(), _source_line("baseline", cmp.baseline_path, cmp.baseline.get("source", {})),
             _source_line("run     ", cmp.run_path, cmp.current.get("source", {})),
             _settings_line(cmp.current["settings"]), "tolerances: " + cmp.tolerances.describe(),
             _noise_line(cmp.noise)]
    lines += [f"note: {n}" for n in cmp.notes]
    rows = _table_rows(cmp)
    lines.append("")
    if not rows:
        lines.append(f"no metric changed beyond its tolerance ({sum(c.status == 'ok' for c in cmp.cells)} cells × "
                     f"{len(METRICS) + 1} metrics compared)")
    else:
        table = [_HEAD] + rows
        w = [max(len(r[i]) for r in table) for i in range(len(_HEAD))]
        for j, r in enumerate(table):
            lines.append("  ".join(s.ljust(w[i]) for i, s in enumerate(r)).rstrip())
            if j == 0:
                lines.append("  ".join("-" * x for x in w))
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def format_markdown(cmp: Comparison) -> str:
    """The report as GitHub-flavoured markdown, for a pull-request comment."""
    word = "❌ regression" if cmp.exit_code else "✅ no regression"
    out = [f"### optbench check: {word}", "", cmp.headline().split(" — ", 1)[1] + ".", "",
           f"- {_md_escape(_source_line('baseline', cmp.baseline_path, cmp.baseline.get('source', {})))}",
           f"- {_md_escape(_source_line('run', cmp.run_path, cmp.current.get('source', {})))}",
           f"- {_md_escape(_settings_line(cmp.current['settings']))}",
           f"- tolerances: {_md_escape(cmp.tolerances.describe())}",
           f"- {_md_escape(_noise_line(cmp.noise))}"]
    out += [f"- note: {_md_escape(n)}" for n in cmp.notes]
    rows = _table_rows(cmp)
    out.append("")
    if not rows:
        out.append("No metric changed beyond its tolerance.")
    else:
        out.append("| " + " | ".join(_HEAD) + " |")
        out.append("|" + "|".join(["---"] * 2 + ["---"] + ["---:"] * 3 + ["---"]) + "|")
        for r in rows:
            cells = [f"`{_md_escape(r[0])}`", f"`{_md_escape(r[1])}`"] + [_md_escape(x) for x in r[2:]]
            if r[-1].startswith(("REGRESSION", "MISSING")):
                cells[-1] = f"**{cells[-1]}**"
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _json_num(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def as_dict(cmp: Comparison) -> Dict[str, Any]:
    """The report as a JSON-ready dict (non-finite numbers as the strings "inf"/"-inf")."""
    return {
        "schema_version": BASELINE_SCHEMA_VERSION, "verdict": cmp.verdict, "exit_code": cmp.exit_code,
        "headline": cmp.headline(), "baseline": {"path": cmp.baseline_path, **cmp.baseline.get("source", {})},
        "run": {"path": cmp.run_path, **cmp.current.get("source", {})}, "settings": cmp.current["settings"],
        "tolerances": cmp.tolerances.as_dict(), "noise": cmp.noise, "notes": cmp.notes,
        "counts": {"cells": len(cmp.cells), "regressions": len(cmp.regressions),
                   "improvements": len(cmp.improvements),
                   **{s: cmp.count(s) for s in ("ok", "regression", "new", "missing")}},
        "cells": [{"problem": c.problem, "optimizer": c.optimizer, "status": c.status,
                   "metrics": [{"metric": r.metric, "baseline": _json_num(r.baseline), "current": _json_num(r.current),
                                "verdict": r.verdict, "change": r.change, "detail": r.detail} for r in c.rows]}
                  for c in cmp.cells]}


def is_check_output(path: str) -> bool:
    """Whether ``path`` holds an earlier ``optbench check --out`` report in any of its formats (or
    is empty): the only files ``check --out`` replaces. It replaced any file (``--out notes.txt``)."""
    head = store.file_head(path)
    if head is None:
        return False
    if not head.strip():
        return True
    if head.startswith(("optbench check: ", "### optbench check:")):     # text, markdown
        return True
    if head.startswith("<?xml") and '<testsuites name="optbench check"' in head:   # junit
        return True
    # json: the report's own first keys, in the order format_json writes them
    return bool(re.match(r'\{\s*"schema_version": \d+,\s*"verdict": "', head))


def format_json(cmp: Comparison) -> str:
    # _encode: a provenance field of a hand-edited baseline may hold a NaN (the metrics are
    # checked on loading; the free-form source is not), which strict JSON cannot carry
    return json.dumps(_encode(as_dict(cmp)), indent=1, allow_nan=False) + "\n"


#: characters XML 1.0 cannot hold, even escaped
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_safe(text: str) -> str:
    return _XML_BAD.sub("?", text)


def format_junit(cmp: Comparison) -> str:
    """JUnit XML: one ``testcase`` per problem × optimizer (classname ``optbench.<problem>``).

    A regression or a missing cell is a ``failure`` whose message names the metrics; a new cell
    is ``skipped``; improvements and inconclusive time changes go to ``system-out``.
    """
    failures = sum(c.status in ("regression", "missing") for c in cmp.cells)
    skipped = cmp.count("new")
    total_time = sum(c.run_s or 0.0 for c in cmp.cells)
    suites = ET.Element("testsuites", name="optbench check", tests=str(len(cmp.cells)), failures=str(failures),
                        errors="0", skipped=str(skipped), time=f"{total_time:.6f}")
    suite = ET.SubElement(suites, "testsuite", name="optbench check", tests=str(len(cmp.cells)),
                          failures=str(failures), errors="0", skipped=str(skipped), time=f"{total_time:.6f}",
                          timestamp=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", cmp.baseline_path), ("run", cmp.run_path),
                        ("baseline_commit", cmp.baseline.get("source", {}).get("git_commit") or ""),
                        ("run_commit", cmp.current.get("source", {}).get("git_commit") or ""),
                        ("settings", _settings_line(cmp.current["settings"])),
                        ("tolerances", cmp.tolerances.describe()), ("noise", _noise_line(cmp.noise))):
        ET.SubElement(props, "property", name=name, value=str(value))
    for c in cmp.cells:
        tc = ET.SubElement(suite, "testcase", classname=f"optbench.{c.problem}", name=c.optimizer,
                           time=f"{(c.run_s or 0.0):.6f}")
        if c.status == "missing":
            ET.SubElement(tc, "failure", type="missing", message="cell is in the baseline but not in the run").text = (
                f"{c.problem} × {c.optimizer} is in the baseline but the run has no such cell")
        elif c.status == "new":
            ET.SubElement(tc, "skipped", message="new cell: not in the baseline, not checked")
        else:
            regs = [r for r in c.rows if r.verdict == "regression"]
            if regs:
                msg = "; ".join(f"{r.metric} {_fmt_value(r.metric, r.baseline)} -> {_fmt_value(r.metric, r.current)} "
                                f"({r.change})" for r in regs)
                body = "\n".join(f"{r.metric}: baseline {_fmt_value(r.metric, r.baseline)}, current "
                                 f"{_fmt_value(r.metric, r.current)}, change {r.change}; {r.detail}" for r in regs)
                ET.SubElement(tc, "failure", type="regression", message=msg).text = body
            other = [r for r in c.rows if r.verdict in ("improvement", "inconclusive")]
            if other:
                ET.SubElement(tc, "system-out").text = "\n".join(
                    f"{r.verdict}: {r.metric} {_fmt_value(r.metric, r.baseline)} -> "
                    f"{_fmt_value(r.metric, r.current)} ({r.change}) {r.detail}".rstrip() for r in other)
    ET.SubElement(suite, "system-out").text = format_text(cmp)
    for el in suites.iter():
        if el.text:
            el.text = _xml_safe(el.text)
        for k, v in el.attrib.items():
            el.attrib[k] = _xml_safe(v)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


FORMATTERS = {"text": format_text, "markdown": format_markdown, "json": format_json, "junit": format_junit}


def check(run_dir: str, baseline_path: str, tol: Optional[Tolerances] = None) -> Comparison:
    """Load both sides and compare them (bad input raises a one-line OptbenchError)."""
    baseline = load_baseline(baseline_path)
    current = run_metrics(run_dir)
    return compare(baseline, current, tol or Tolerances(), baseline_path, run_dir)
