"""Memory estimates for a solve, and refusal of requests that cannot fit, before anything runs.

A batched solve holds, on the device, for B starts of dimension n and T = max_iter + 1 recorded
iterations:

* the history buffers — 4 floating and 4 int32 values per start per iteration, plus the iterate
  itself when n ≤ 3 (see ``bench.solve.TRACE_X_MAX_DIM``); the rows fetched to the host make a
  copy, and reading a trace field writes its (B, T) padded form, another;
* the optimizer state — a handful of n-vectors per start (x, g, a direction, a trial point, …),
  2m more for L-BFGS with memory m (and, beyond a few thousand numbers, its m×m matrices SᵀY and
  YᵀY), double-buffered by ``lax.while_loop``;
* for methods that form dense matrices — an n×n Hessian (or BFGS inverse-Hessian approximation)
  per start plus the eigen/solve workspace, or an m×n Jacobian and the n×n JᵀJ for
  Gauss-Newton and Levenberg-Marquardt;
* the problem's data (a regression's design matrix), on host and device.

The estimate is deliberately an order-of-magnitude figure: its job is to turn "the machine died
an hour in" into "this needs 7.3 TiB, you have 24 GiB" at once. The matrix-free methods
(Newton-CG, trust-ncg, L-BFGS) never form an n×n matrix (Nocedal & Wright ch. 7), which is why
they — and not ``newton`` — are the ones that reach n = 10⁶.
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Dict, Optional

import numpy as np

from optbench_core import OptbenchError

#: optimizers that form an n×n matrix per start (exact Hessian, its eigendecomposition, or the
#: BFGS inverse-Hessian approximation). An Optimizer may also declare ``dense_hessian = True``.
DENSE_HESSIAN = frozenset({"newton", "newton-raphson", "trust-region", "bfgs"})
#: optimizers that form the m×n residual Jacobian and the n×n Gauss-Newton matrix JᵀJ per start
DENSE_JACOBIAN = frozenset({"gauss-newton", "levenberg-marquardt"})
#: matrix-free methods, named here so that error messages can point the user to them
MATRIX_FREE = ("newton-cg", "trust-ncg", "lbfgs")

#: n-vectors of optimizer state and temporaries per start (x, g, direction, trial x, trial g, …)
STATE_VECTORS = 10
#: n×n matrices alive at once per start for a dense-Hessian method (H, eigenvectors, workspace)
DENSE_MATRICES = 4
#: environment variable overriding the memory available (bytes; suffixes K, M, G, T accepted)
ENV_LIMIT = "OPTBENCH_MEMORY_LIMIT"

_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def parse_bytes(text: str) -> int:
    """``'512M'`` → 536870912; a one-line error on anything else."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    num = t[:-1] if unit else t
    try:
        value = float(num) * _UNITS[unit]
    except ValueError:
        raise OptbenchError(f"{ENV_LIMIT}={text!r} is not a size (e.g. 8G, 512M, 1000000)") from None
    if not (np.isfinite(value) and value > 0):
        raise OptbenchError(f"{ENV_LIMIT}={text!r} must be a positive size")
    return int(value)


def matrix_kind(optimizer) -> str:
    """``'hessian'``, ``'jacobian'`` or ``'none'``: which dense matrices ``optimizer`` forms."""
    if getattr(optimizer, "dense_hessian", False) or optimizer.name in DENSE_HESSIAN:
        return "hessian"
    if optimizer.name in DENSE_JACOBIAN:
        return "jacobian"
    return "none"


#: m per problem object, with what it was traced from (dimension, residual function, data
#: shapes): tracing the residuals costs milliseconds, paid once, not on every solve
_RESIDUAL_COUNTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _residual_count(problem) -> int:
    if not problem.has_residuals:
        return 0
    import jax
    import jax.numpy as jnp
    sig = (problem.dim, problem.residuals, jax.tree_util.tree_structure(problem.data),
           tuple(np.shape(a) for a in jax.tree_util.tree_leaves(problem.data)))
    try:
        hit = _RESIDUAL_COUNTS.get(problem)
    except TypeError:  # not weakly referenceable: no cache
        hit = None
    if hit is not None and hit[0] == sig:
        return hit[1]
    try:
        out = jax.eval_shape(lambda x, d: problem.residual_vector(x, d),
                             jax.ShapeDtypeStruct((problem.dim,), jnp.float64), problem.data)
        m = int(out.shape[0])
    except Exception:  # problem.check() reports a broken f; an estimate must not fail first
        return problem.dim
    try:
        _RESIDUAL_COUNTS[problem] = (sig, m)
    except TypeError:
        pass
    return m


def _data_bytes(problem, itemsize: int) -> int:
    import jax
    total = 0
    for leaf in jax.tree_util.tree_leaves(problem.data):
        a = np.asarray(leaf)
        total += a.size * (itemsize if np.issubdtype(a.dtype, np.floating) else a.itemsize)
    return total


def estimate(problem, optimizer, starts: int, max_iter: int, dtype: str = "float64",
             history: bool = True) -> Dict[str, Any]:
    """Bytes a :func:`bench.solve` of ``starts`` starts would hold at its peak, by part
    (``history=False``: a solve that records no history, whose part is then 0).

    Returns ``{"history", "state", "matrices", "data", "total"}`` (bytes) and ``"matrix"``, a
    phrase naming the dense matrix per start, if any.
    """
    b, n, t = int(starts), int(problem.dim), int(max_iter) + 1
    w = np.dtype(dtype).itemsize
    per_record = 4 * w + 4 * 4 + (n * w if n <= 3 else 0)
    history = 3 * b * t * per_record if history else 0
    memory = int(optimizer.params.get("memory", 0) or 0)
    vectors = STATE_VECTORS + 2 * memory
    state = 2 * b * vectors * n * w
    if memory:
        from optimizers.quasi_newton import LBFGS_SMALL_MAX
        if memory * n > LBFGS_SMALL_MAX:   # L-BFGS's large form also keeps SᵀY and YᵀY (m×m each)
            state += 2 * b * 2 * memory * memory * w
    kind = matrix_kind(optimizer)
    matrices, phrase = 0, ""
    if kind == "hessian":
        matrices = DENSE_MATRICES * b * n * n * w
        phrase = f"a dense {n}×{n} matrix per start"
    elif kind == "jacobian":
        m = _residual_count(problem)
        matrices = b * (2 * m * n + 2 * n * n) * w
        phrase = f"a dense {m}×{n} Jacobian and {n}×{n} JᵀJ per start"
    data = 2 * _data_bytes(problem, w)
    return {"history": history, "state": state, "matrices": matrices, "data": data,
            "total": history + state + matrices + data, "matrix": phrase}


def available_bytes(device=None) -> Optional[int]:
    """Memory a solve may use on ``device``: ``$OPTBENCH_MEMORY_LIMIT`` if set; for an accelerator
    its free memory as JAX reports it; on CPU the kernel's MemAvailable. None if unknown."""
    env = os.environ.get(ENV_LIMIT)
    if env:
        return parse_bytes(env)
    if device is not None and getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:
            stats = {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check(problem, optimizer, starts: int, max_iter: int, dtype: str = "float64", device=None,
          history: bool = True) -> Dict[str, Any]:
    """Refuse, with a one-line :class:`OptbenchError` stating the estimate, a solve that would
    not fit in the memory available; return the estimate otherwise."""
    est = estimate(problem, optimizer, starts, max_iter, dtype, history)
    avail = available_bytes(device)
    if avail is None or est["total"] <= avail:
        return est
    where = getattr(device, "platform", "cpu") if device is not None else "cpu"
    parts = ", ".join(f"{k} {format_bytes(est[k])}" for k in ("matrices", "history", "state", "data") if est[k])
    hints = []
    if est["matrices"] > est["total"] / 2:
        hints.append(f"a matrix-free method ({', '.join(MATRIX_FREE)}) never forms it")
    if est["history"] > est["total"] / 2:
        hints.append("fewer starts or a smaller --max-iter shrink the per-iteration history "
                     "(the Python API's solve(history=False) records none)")
    if est["state"] > est["total"] / 2:
        hints.append("fewer starts, a smaller dimension or a smaller memory" if "memory" in optimizer.params
                     else "fewer starts or a smaller dimension")
    what = f" ({est['matrix']})" if est["matrix"] else ""
    raise OptbenchError(
        f"{problem.spec} × {optimizer.spec} with {starts} start(s), max_iter {max_iter}, {dtype}: needs about "
        f"{format_bytes(est['total'])}{what} [{parts}] but {format_bytes(avail)} is available on {where}"
        + (f"; {'; '.join(hints)}" if hints else "") + f" (set {ENV_LIMIT} to override)")


def batch_size(cell) -> int:
    """Starts in a suite cell's batch: x0 plus ``starts − 1`` random starts per seed."""
    seeds = len(getattr(cell, "seeds", (0,)) or (0,))
    return int(cell.starts) + (seeds - 1) * (int(cell.starts) - 1)


def check_cells(cells, device=None) -> None:
    """:func:`check` every cell of a plan (``bench.suite.Cell``) before a run writes anything;
    cells run by scipy (a Python loop, one start at a time) are not estimated."""
    for cell in cells:
        if getattr(cell, "is_scipy", False):
            continue
        check(cell.problem, cell.optimizer, batch_size(cell), cell.max_iter, cell.dtype, device)
