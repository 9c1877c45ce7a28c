"""Measures computed from stored traces (pure numpy): work, time and cost to reach a target,
performance profiles, data profiles and runtime ECDFs.

Everything here reads the arrays of a run's cells (``trace_f``, ``trace_grad_norm``,
``trace_nfev`` … of shape (starts, max_iter+1), the per-start ``nit``) and never touches files
or solves anything, so the same numbers come out whether a figure is drawn right after a run or
years later from its directory.

An *instance* of a profile is one (problem, start) pair: every optimizer of a run starts from
the same points, so each start is a separate, comparable test — the convention of multistart
benchmarking, and finer-grained than one median per problem.

Costs of one start, measured up to the first iteration k at which a test holds:

- iterations: k;
- work: the weighted evaluation count ``nfev + w_g·njev + w_h·nhev + w_hvp·nhvp`` after k steps
  (see :class:`WorkWeights`);
- time: k × (run time / iterations the batch ran). Under ``vmap`` every start of a batch runs to
  the slowest one, so a batch's run time divided by the loop iterations it made is what one
  iteration costs; compile time is excluded (it is reported apart).

References: E. D. Dolan and J. J. Moré, "Benchmarking optimization software with performance
profiles", Math. Program. 91 (2002) 201–213; J. J. Moré and S. M. Wild, "Benchmarking
derivative-free optimization algorithms", SIAM J. Optim. 20 (2009) 172–191; N. Hansen et al.,
"COCO: performance assessment", arXiv:1605.03560 (2016), for the runtime ECDF.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from optbench_core import OptbenchError

#: targets of the runtime ECDF (COCO style, on f − f*, or ‖∇f‖ where f* is unknown)
ECDF_TARGETS = tuple(10.0 ** -k for k in range(1, 9))
#: tolerances τ of the data profiles (Moré & Wild 2009 show 1e-1 … 1e-7)
DATA_PROFILE_TAUS = (1e-1, 1e-3, 1e-5, 1e-7)
#: the cost measures a performance profile can use
MEASURES = ("iterations", "work", "time")


@dataclasses.dataclass(frozen=True)
class WorkWeights:
    """Weights of the "work" axis: ``nfev + g·njev + H·nhev + hvp·nhvp``.

    Defaults follow the usual automatic-differentiation cost model (Griewank & Walther,
    "Evaluating Derivatives", 2nd ed., 2008, ch. 4–5): a gradient counts as one evaluation (the
    tabulation convention of Nocedal & Wright and scipy, nfev + njev), a Hessian-vector product
    (forward over reverse, Pearlmutter 1994) as two gradients, and a dense Hessian as n
    Hessian-vector products, i.e. ``h = 2`` with ``h_per_dim`` (weight 2n).
    """

    g: float = 1.0
    h: float = 2.0
    h_per_dim: bool = True
    hvp: float = 2.0

    def hessian_weight(self, dim: int) -> float:
        return self.h * dim if self.h_per_dim else self.h

    def label(self) -> str:
        """The weights as a formula, for axis labels and legends."""
        h = f"{_num(self.h)}n" if self.h_per_dim else _num(self.h)
        return f"nfev + {_num(self.g)}·njev + {h}·nhev + {_num(self.hvp)}·nhvp"

    @classmethod
    def parse(cls, text: Optional[str]) -> "WorkWeights":
        """Parse ``g=1,h=2n,hvp=2`` (any subset; ``h=5`` is a fixed weight, ``h=2n`` scales with n)."""
        if text is None or not str(text).strip():
            return cls()
        kw: Dict[str, object] = {}
        for part in str(text).split(","):
            key, sep, val = part.partition("=")
            key, val = key.strip(), val.strip()
            if not sep or key not in ("g", "h", "hvp"):
                raise OptbenchError(f"bad work weight {part.strip()!r}: use g=…, h=… (or h=…n) and hvp=…")
            if key in kw:  # "h=2n,h=5" would silently keep only the last
                raise OptbenchError(f"bad work weights {text!r}: {key} given twice")
            if not val:  # "h=" is a slip, not a weight: it must not quietly become 1
                raise OptbenchError(f"bad work weight {part.strip()!r}: {key} needs a number")
            per_dim = key == "h" and val.endswith("n")
            num = val[:-1] if per_dim else val
            try:
                w = float(num) if num else 1.0
            except ValueError:
                raise OptbenchError(f"bad work weight {part.strip()!r}: {val!r} is not a number") from None
            if not (np.isfinite(w) and w >= 0):
                raise OptbenchError(f"bad work weight {part.strip()!r}: weights must be finite and >= 0")
            kw[key] = w
            if key == "h":
                kw["h_per_dim"] = per_dim
        return cls(**kw)


def _num(x: float) -> str:
    return f"{x:g}"


# -- per-cell quantities -------------------------------------------------------------------------

def convergence_values(cell: Dict[str, np.ndarray]) -> Tuple[np.ndarray, str]:
    """The (B, T) series a convergence plot shows: f − f* where f* is known, else ‖∇f‖."""
    f_star = float(cell["f_star"]) if "f_star" in cell else float("nan")
    if np.isfinite(f_star):
        return np.asarray(cell["trace_f"], dtype=np.float64) - f_star, "f − f*"
    return np.asarray(cell["trace_grad_norm"], dtype=np.float64), "‖∇f‖"


def work(cell: Dict[str, np.ndarray], dim: int, weights: WorkWeights = WorkWeights()) -> np.ndarray:
    """Cumulative weighted evaluations after each iteration, shape (B, T)."""
    z = np.zeros_like(np.asarray(cell["trace_nfev"], dtype=np.float64))
    get = lambda k: np.asarray(cell[k], dtype=np.float64) if k in cell else z  # noqa: E731
    return (get("trace_nfev") + weights.g * get("trace_njev") + weights.hessian_weight(dim) * get("trace_nhev")
            + weights.hvp * get("trace_nhvp"))


def iterations_run(cell: Dict[str, np.ndarray]) -> int:
    """Loop iterations the batch made: the slowest start's iteration count (all lanes run to it)."""
    if "iterations_run" in cell:
        return int(cell["iterations_run"])
    nit = np.asarray(cell["nit"])
    return int(nit.max()) if nit.size else 0


def run_seconds(cell: Dict[str, np.ndarray], summary_run_s: Optional[float] = None) -> float:
    """The batch's run time: the summary's ``run_s`` if given, else the median of ``run_s_all``."""
    if summary_run_s is not None and np.isfinite(summary_run_s):
        return float(summary_run_s)
    if "run_s_all" in cell and np.asarray(cell["run_s_all"]).size:
        return float(np.median(cell["run_s_all"]))
    return float("nan")


def time_per_iteration(cell: Dict[str, np.ndarray], summary_run_s: Optional[float] = None) -> float:
    """Run time / iterations the batch ran (the batch runs to its slowest start)."""
    return run_seconds(cell, summary_run_s) / max(iterations_run(cell), 1)


def valid_mask(nit: np.ndarray, length: int) -> np.ndarray:
    """(B, T) mask of the columns a start actually reached (k ≤ nit); later columns repeat its end."""
    return np.arange(length)[None, :] <= np.asarray(nit).reshape(-1, 1)


def first_hit(values: np.ndarray, target: float, nit: Optional[np.ndarray] = None) -> np.ndarray:
    """Per start, the first iteration k ≤ nit with ``values[k] <= target``; −1 where never."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v <= target)
    if nit is not None:
        ok &= valid_mask(nit, v.shape[1])
    idx = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), idx, -1)


def cost_at(costs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``costs[b, idx[b]]`` per start, +inf where ``idx`` is −1 (never reached)."""
    c = np.asarray(costs, dtype=np.float64)
    i = np.asarray(idx)
    out = np.full(i.shape, np.inf)
    hit = i >= 0
    out[hit] = c[np.nonzero(hit)[0], i[hit]]
    return out


def measure_costs(cell: Dict[str, np.ndarray], measure: str, dim: int, weights: WorkWeights = WorkWeights(),
                  summary_run_s: Optional[float] = None) -> np.ndarray:
    """The (B, T) cumulative cost of each iteration in ``measure`` (iterations, work or time)."""
    b, t = np.asarray(cell["trace_f"]).shape[:2]
    k = np.broadcast_to(np.arange(t, dtype=np.float64), (b, t))
    if measure == "iterations":
        return k
    if measure == "work":
        return work(cell, dim, weights)
    if measure == "time":
        return k * time_per_iteration(cell, summary_run_s)
    raise OptbenchError(f"unknown cost measure {measure!r}: use one of {', '.join(MEASURES)}")


def success_costs(cell: Dict[str, np.ndarray], measure: str, dim: int, weights: WorkWeights = WorkWeights(),
                  summary_run_s: Optional[float] = None) -> np.ndarray:
    """Per start, the cost at which it stopped if it succeeded (the driver's test), else +inf.

    This is the Dolan–Moré convention: one convergence test shared by every solver (here the
    driver's ‖∇f‖ ≤ gtol plus f − f* ≤ 1e-6·max(1, |f*|), in float32 max(1e-6, 3.45e-4·|f*|)), and
    the cost a solver spent to pass it.
    """
    nit = np.asarray(cell["nit"]).astype(int)
    c = cost_at(measure_costs(cell, measure, dim, weights, summary_run_s), nit)
    return np.where(np.asarray(cell["success"]).astype(bool), c, np.inf)


def target_costs(cell: Dict[str, np.ndarray], target: float, measure: str, dim: int,
                 weights: WorkWeights = WorkWeights(), summary_run_s: Optional[float] = None) -> np.ndarray:
    """Per start, the cost to first reach ``convergence_values <= target`` (+inf if never).

    Time-to-target of a start = its iteration at target × the batch's time per iteration.
    """
    vals, _ = convergence_values(cell)
    idx = first_hit(vals, target, cell["nit"])
    return cost_at(measure_costs(cell, measure, dim, weights, summary_run_s), idx)


# -- performance profiles (Dolan & Moré 2002) ----------------------------------------------------

def performance_ratios(costs: np.ndarray) -> np.ndarray:
    """r[p, s] = t[p, s] / min_s t[p, s] for costs of shape (instances P, solvers S).

    Failures are +inf (or NaN) and get ratio +inf; an instance no solver solves has +inf for all.
    Costs must be positive where finite (floor counts at one unit before calling).
    """
    t = np.asarray(costs, dtype=np.float64)
    if t.ndim != 2:
        raise OptbenchError(f"performance ratios need a (problems, solvers) array, got shape {t.shape}")
    t = np.where(np.isfinite(t), t, np.inf)
    if np.any(t <= 0):
        raise OptbenchError("performance-profile costs must be positive (floor counts at one unit)")
    best = t.min(axis=1, keepdims=True) if t.shape[1] else np.full((t.shape[0], 1), np.inf)
    with np.errstate(invalid="ignore"):
        r = t / best
    return np.where(np.isfinite(best), r, np.inf)


def performance_profile(costs: np.ndarray, taus: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """ρ_s(τ) = |{p : r[p, s] ≤ τ}| / P (Dolan & Moré 2002, eq. 1).

    Returns (taus, rho) with rho of shape (len(taus), S). Without ``taus`` the grid is every
    distinct finite ratio (and 1), so the step function is exact.
    """
    r = performance_ratios(costs)
    if taus is None:
        finite = r[np.isfinite(r)]
        taus = np.unique(np.concatenate([[1.0], finite]))
    taus = np.asarray(taus, dtype=np.float64)
    if r.shape[0] == 0:
        return taus, np.zeros((len(taus), r.shape[1]))
    rho = (r[None, :, :] <= taus[:, None, None]).mean(axis=1)
    return taus, rho


# -- data profiles (Moré & Wild 2009) ------------------------------------------------------------

def data_profile_test(f_trace: np.ndarray, f_low, tau: float, nit: Optional[np.ndarray] = None) -> np.ndarray:
    """First k (≤ nit) with f(x0) − f(x_k) ≥ (1 − τ)(f(x0) − f_L), per row of ``f_trace``; −1 if never.

    ``f_trace`` is (B, T) with column 0 at the start x0; f_L (a scalar or one value per row) is
    the least value any solver reached on that instance (Moré & Wild 2009, eq. 2.2).
    """
    f = np.asarray(f_trace, dtype=np.float64)
    f0 = f[:, :1]
    f_low = np.asarray(f_low, dtype=np.float64)
    need = (1.0 - tau) * (f0 - (f_low.reshape(-1, 1) if f_low.ndim else f_low))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & (f0 - f >= need)
    if nit is not None:
        ok &= valid_mask(nit, f.shape[1])
    idx = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), idx, -1)


def best_values(f_traces: Iterable[np.ndarray], nits: Iterable[Optional[np.ndarray]]) -> np.ndarray:
    """f_L per instance (row): the least finite f reached by any solver (k ≤ nit), shape (B,)."""
    mins = []
    for f, nit in zip(f_traces, nits):
        f = np.asarray(f, dtype=np.float64)
        ok = np.isfinite(f)
        if nit is not None:
            ok &= valid_mask(nit, f.shape[1])
        mins.append(np.where(ok, f, np.inf).min(axis=1))
    if not mins:
        return np.zeros(0)
    # solvers may have run different numbers of starts (compared runs): instances missing count as +inf
    best = np.full(max(len(m) for m in mins), np.inf)
    for m in mins:
        best[: len(m)] = np.minimum(best[: len(m)], m)
    return best


def data_profile(costs: np.ndarray, dims: np.ndarray, kappas: Sequence[float]) -> np.ndarray:
    """d_s(κ) = |{p : t[p, s] ≤ κ (n_p + 1)}| / P (Moré & Wild 2009, eq. 2.3), shape (len(κ), S).

    ``costs`` (P, S) are evaluations (here: weighted work) to pass the data-profile test, +inf on
    failure; ``dims`` (P,) the instances' dimensions n_p; κ counts simplex gradients.

    The test is evaluated as t / (n_p + 1) ≤ κ, the same division that puts an instance on the κ
    axis: κ·(n_p + 1) can round below t (61/7·7 < 61 in floating point), and a profile drawn on
    the instances' own κ values would then miss the step at each of them.
    """
    t = np.asarray(costs, dtype=np.float64)
    t = np.where(np.isfinite(t), t, np.inf)
    n1 = np.asarray(dims, dtype=np.float64).reshape(-1, 1) + 1.0
    k = np.asarray(kappas, dtype=np.float64)
    if t.shape[0] == 0:
        return np.zeros((len(k), t.shape[1]))
    return ((t / n1)[None, :, :] <= k[:, None, None]).mean(axis=1)


# -- runtime ECDF (COCO) -------------------------------------------------------------------------

def runtime_ecdf(runtimes: np.ndarray, budgets: Sequence[float]) -> np.ndarray:
    """Fraction of (instance, target) pairs whose runtime is ≤ each budget (Hansen et al. 2016).

    ``runtimes`` holds one entry per (instance, target) pair, +inf where the target was never
    reached; the curve's plateau is the fraction ever reached.
    """
    r = np.asarray(runtimes, dtype=np.float64).reshape(-1)
    b = np.asarray(budgets, dtype=np.float64)
    if r.size == 0:
        return np.zeros(len(b))
    r = np.where(np.isnan(r), np.inf, r)
    return (r[None, :] <= b[:, None]).mean(axis=1)


def ecdf_runtimes(cell: Dict[str, np.ndarray], dim: int, targets: Sequence[float] = ECDF_TARGETS,
                  weights: WorkWeights = WorkWeights(), per_dim: bool = True) -> np.ndarray:
    """Work (÷ n if ``per_dim``, as COCO plots evaluations / dimension) for each start to reach each
    target, shape (B, len(targets)); +inf where never reached."""
    w = work(cell, dim, weights)
    if per_dim:
        w = w / dim
    vals, _ = convergence_values(cell)
    out = np.empty((w.shape[0], len(targets)))
    for j, tgt in enumerate(targets):
        out[:, j] = cost_at(w, first_hit(vals, tgt, cell["nit"]))
    return out


# -- helpers shared by the figures ---------------------------------------------------------------

def median_band(values: np.ndarray, floor: float = 0.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and interquartile range across starts (axis 0), ignoring NaN/inf; floored at ``floor``."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    if floor:
        v = np.maximum(v, floor)
    q25, med, q75 = nan_quantiles(v, (0.25, 0.5, 0.75))
    return med, q25, q75


def nan_quantiles(v: np.ndarray, qs: Sequence[float]) -> List[np.ndarray]:
    """Quantiles along axis 0 ignoring NaN (linear interpolation, as numpy's default), NaN where a
    column is all NaN. Vectorised: ``np.nanpercentile`` loops over columns in Python when NaNs
    are present, which is slow for (starts, max_iter+1) traces."""
    v = np.sort(np.asarray(v, dtype=np.float64), axis=0)  # NaNs sort last
    n = np.sum(~np.isnan(v), axis=0)
    cols = np.arange(v.shape[1]) if v.ndim == 2 else None
    out = []
    for q in qs:
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = pos - lo
        a, b = v[lo, cols], v[hi, cols]
        with np.errstate(invalid="ignore"):
            r = a + (b - a) * frac
        # keeps inf endpoints exact: at a whole position, and between two equal values (inf − inf
        # is NaN, so the upper quartile of [1, 2, inf, inf] came out NaN above a median of inf)
        r = np.where((frac == 0) | (a == b), a, r)
        out.append(np.where(n > 0, r, np.nan))
    return out


def resample_steps(x: np.ndarray, y: np.ndarray, grid: np.ndarray, nit: Optional[np.ndarray] = None) -> np.ndarray:
    """Per row, the y of the last recorded point with x ≤ grid value (NaN before the first point).

    Used to take medians across starts against a per-start axis such as work: each start's
    curve is a step function of its own cumulative cost.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.full((x.shape[0], len(grid)), np.nan)
    for b in range(x.shape[0]):
        end = x.shape[1] if nit is None else int(nit[b]) + 1
        xb, yb = x[b, :end], y[b, :end]
        # counts are non-decreasing; keep the last point of any run of equal x
        j = np.searchsorted(xb, grid, side="right") - 1
        ok = j >= 0
        out[b, ok] = yb[j[ok]]
    return out
