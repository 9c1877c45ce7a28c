"""The one driver: every optimizer runs through :func:`solve`.

Shape of the compiled program, for B starts of dimension n and history length T = max_iter + 1::

    jit( while_loop( any lane running:  vmap(step) over lanes; freeze finished lanes;
                                        write row k of the (T, B) history buffers ) )

The loop index k is shared by all lanes (unbatched), so each iteration writes one row of the
history with a cheap in-place dynamic update — O(B) per iteration. (A ``vmap`` of a per-start
``while_loop`` would instead ``select`` over every carried buffer each iteration, O(B·T).)
Finished lanes are frozen with a select over the small optimizer state, so per-start counts
(iterations, evaluations) are exact while the batch runs to its slowest start, as any vmapped
loop must. Nothing in the loop raises: a non-finite value ends its start with status
``diverged`` and leaves the other starts alone.

Compilation is ahead of time (``lower(...).compile()``), timed apart from the run, and cached
per (problem, optimizer, shapes, dtype, max_iter, device): a second call with the same ones
compiles nothing. The run is timed over ``repeats`` calls with ``block_until_ready``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

import optimizers as _optimizers
import problems as _problems
from optbench_core import OptbenchError
from optimizers.base import (STATUS_CONVERGED, STATUS_DIVERGED, STATUS_MAX_ITER, STATUS_NAMES, STATUS_RUNNING,
                             Oracle, where_state)

from . import limits as _limits

jax.config.update("jax_enable_x64", True)

#: a start succeeds when it converged and f − f* ≤ SUCCESS_RTOL · max(1, |f*|)
SUCCESS_RTOL = 1e-6
#: the iterates themselves are recorded in the history when dim ≤ this
TRACE_X_MAX_DIM = 3

_COMPILED: Dict[Any, Any] = {}
_STATS = {"compiles": 0}


@dataclasses.dataclass
class Trace:
    """Per-iteration history, arrays of shape (B, max_iter + 1); column k is after k steps.

    Columns after a start stopped repeat its final values (so a finished start's curve stays
    flat); ``Result.nit`` says where it stopped. ``x`` is (B, max_iter + 1, n) when n ≤ 3.
    """

    f: np.ndarray
    grad_norm: np.ndarray
    nfev: np.ndarray
    njev: np.ndarray
    nhev: np.ndarray
    nhvp: np.ndarray
    step: np.ndarray
    rho: np.ndarray
    x: Optional[np.ndarray] = None

    def arrays(self) -> Dict[str, np.ndarray]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Result:
    """What :func:`solve` returns, in scipy's vocabulary, one entry per start (leading axis B).

    Given a single start x0 of shape (n,), every array loses its leading batch axis.
    """

    x: np.ndarray
    fun: np.ndarray
    grad_norm: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    njev: np.ndarray
    nhev: np.ndarray
    nhvp: np.ndarray
    status: np.ndarray        # status names, e.g. "converged", "diverged"
    status_code: np.ndarray
    success: np.ndarray
    trace: Trace
    x0: np.ndarray
    problem: str
    optimizer: str
    dtype: str
    max_iter: int
    gtol: float
    compile_s: float          # 0.0 when the executable came from the cache
    run_s: float              # median wall time of one batched run
    run_s_all: list
    iterations_run: int       # loop iterations the batch ran (= max nit)
    f_star: Optional[float] = None
    device: str = ""

    @property
    def subopt(self) -> np.ndarray:
        """f − f* per start (NaN where f* is unknown)."""
        fs = np.nan if self.f_star is None else self.f_star
        return self.fun - fs


def _history_fields(s, n):
    gn = jnp.linalg.norm(s.g, axis=-1)
    out = {"f": s.f, "grad_norm": gn, "nfev": s.nfev, "njev": s.njev, "nhev": s.nhev, "nhvp": s.nhvp,
           "step": s.step, "rho": s.rho}
    if n <= TRACE_X_MAX_DIM:
        out["x"] = s.x
    return out


def _build(problem, opt, max_iter: int, n: int):
    """The batched run function (x0s, data, gtol) -> (state, status, nit, k, history)."""

    def oracle_for(data):
        f = lambda x: problem.objective(x, data)  # noqa: E731
        r = (lambda x: problem.residual_vector(x, data)) if problem.has_residuals else None
        return Oracle(f, r)

    def run(x0s, data, gtol):
        oracle = oracle_for(data)
        init = jax.vmap(lambda x0: opt.init(oracle, x0))
        step = jax.vmap(lambda s: opt.step(oracle, s))

        def classify(s, k, prev):
            """Status after k steps: converged > diverged > optimizer's own > max_iter > running."""
            gn = jnp.linalg.norm(s.g, axis=-1)
            finite = jnp.isfinite(s.f) & jnp.all(jnp.isfinite(s.g), axis=-1) & jnp.all(jnp.isfinite(s.x), axis=-1)
            code = jnp.where(k >= max_iter, STATUS_MAX_ITER, STATUS_RUNNING)
            code = jnp.where(s.status != STATUS_RUNNING, s.status, code)
            code = jnp.where(~finite, STATUS_DIVERGED, code)
            code = jnp.where(finite & (gn <= gtol), STATUS_CONVERGED, code)
            return jnp.where(prev == STATUS_RUNNING, code, prev).astype(jnp.int32)

        s0 = init(x0s)
        b = x0s.shape[0]
        code0 = classify(s0, 0, jnp.zeros(b, jnp.int32))
        rec0 = _history_fields(s0, n)
        hist = {k: jnp.zeros((max_iter + 1,) + v.shape, v.dtype).at[0].set(v) for k, v in rec0.items()}
        nit0 = jnp.zeros(b, jnp.int32)

        def cond(c):
            k, _, code, _, _ = c
            return (k < max_iter) & jnp.any(code == STATUS_RUNNING)

        def body(c):
            k, s, code, nit, hist = c
            active = code == STATUS_RUNNING
            s_new = step(s)
            s = where_state(active, s_new, s)
            k = k + 1
            nit = nit + active.astype(jnp.int32)
            code = classify(s, nit, code)
            rec = _history_fields(s, n)
            hist = {key: jax.lax.dynamic_update_index_in_dim(hist[key], rec[key], k, 0) for key in hist}
            return k, s, code, nit, hist

        k, s, code, nit, hist = jax.lax.while_loop(cond, body, (jnp.int32(0), s0, code0, nit0, hist))
        # forward-fill the rows after the last iteration run with the final values
        rows = jnp.arange(max_iter + 1)
        hist = {key: jnp.where((rows > k).reshape((-1,) + (1,) * (v.ndim - 1)), v[k][None], v) for key, v in hist.items()}
        return s, code, nit, k, hist

    return run


def _cast_data(data, dtype):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a), data)


def _key(obj):
    """Cache key: the spec string for registry-built objects (deterministic factories), else identity."""
    return ("spec", obj.spec, obj.name) if getattr(obj, "_from_registry", False) else ("id", id(obj))


def compile_count() -> int:
    """How many executables :func:`solve` has compiled in this process (for cache tests)."""
    return _STATS["compiles"]


def resolve_device(device: Optional[str]):
    """A JAX device for ``cpu``/``gpu`` (None: JAX's default), or a one-line error."""
    if device in (None, "", "default"):
        return jax.devices()[0]
    kind = str(device).lower()
    if kind not in ("cpu", "gpu"):
        raise OptbenchError(f"unknown device {device!r}: use cpu or gpu")
    try:
        devs = jax.devices(kind)
    except RuntimeError:
        devs = []
    if not devs:
        raise OptbenchError(f"no {kind} device is visible to JAX on this machine; run with --device cpu")
    return devs[0]


def solve(problem, optimizer, x0s=None, *, max_iter: int = 500, gtol: float = 1e-8, dtype: str = "float64",
          repeats: int = 1, device: Optional[str] = None, progress: Optional[Any] = None) -> Result:
    """Run ``optimizer`` on ``problem`` from each start in ``x0s`` ((n,) or (B, n); default the
    problem's x0), compiled, batched over starts, with full history.

    Terminates each start when ‖∇f‖ ≤ ``gtol`` (``converged``), after ``max_iter`` steps
    (``max_iter``), on a non-finite f, gradient or x (``diverged``), or when the optimizer
    reports failure (``linesearch_failed``, ``singular``, ``stalled``). ``success`` additionally
    requires f − f* ≤ 1e-6·max(1, |f*|) where f* is known. ``progress(phase)``, if given, is
    called with ``"compile"`` and ``"run"`` as those phases begin (for a progress bar).
    """
    problem = _problems.get(problem)
    optimizer = _optimizers.get(optimizer)
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise OptbenchError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(gtol, (int, float)) and gtol >= 0 and np.isfinite(gtol)):
        raise OptbenchError(f"gtol must be a finite number >= 0, got {gtol!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise OptbenchError(f"repeats must be a positive integer, got {repeats!r}")
    if dtype not in ("float64", "float32"):
        raise OptbenchError(f"dtype must be float64 or float32, got {dtype!r}")
    if optimizer.needs_residuals and not problem.has_residuals:
        raise OptbenchError(f"optimizer {optimizer.spec!r} needs a least-squares problem; {problem.spec!r} has no residuals")
    x0s = problem.x0 if x0s is None else x0s
    x0s = np.asarray(x0s, dtype=np.float64)
    single = x0s.ndim == 1
    if single:
        x0s = x0s[None, :]
    if x0s.ndim != 2 or x0s.shape[0] < 1:
        raise OptbenchError(f"starts must have shape (n,) or (B, n), got {x0s.shape}")
    if x0s.shape[1] != problem.dim:
        raise OptbenchError(f"starts have dimension {x0s.shape[1]} but problem {problem.spec!r} has dim {problem.dim}")
    if not np.all(np.isfinite(x0s)):
        raise OptbenchError("starts contain non-finite values")
    problem.check()

    dev = resolve_device(device)
    _limits.check(problem, optimizer, x0s.shape[0], int(max_iter), dtype, dev)  # refuse what cannot fit, up front
    jdtype = jnp.dtype(dtype)
    b, n = x0s.shape
    with jax.default_device(dev):
        xs = jax.device_put(jnp.asarray(x0s, jdtype), dev)
        data = jax.device_put(_cast_data(problem.data, jdtype), dev)
        g = jax.device_put(jnp.asarray(gtol, jdtype), dev)
        key = (_key(problem), _key(optimizer), b, n, dtype, int(max_iter), str(dev),
               jax.tree_util.tree_structure(data), tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(data)))
        compile_s = 0.0
        entry = _COMPILED.get(key)
        if entry is None:
            if progress is not None:
                progress("compile")
            t0 = time.perf_counter()
            fn = jax.jit(_build(problem, optimizer, int(max_iter), n))
            exe = fn.lower(xs, data, g).compile()
            compile_s = time.perf_counter() - t0
            _STATS["compiles"] += 1
            entry = (exe, problem, optimizer)  # keep the objects alive so their ids stay valid
            _COMPILED[key] = entry
        exe = entry[0]
        if progress is not None:
            progress("run")
        times = []
        out = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = jax.block_until_ready(exe(xs, data, g))
            times.append(time.perf_counter() - t0)
    s, code, nit, k, hist = jax.device_get(out)
    hist = {key: np.moveaxis(np.asarray(v), 0, 1) for key, v in hist.items()}  # (T, B, ...) -> (B, T, ...)
    trace = Trace(**hist)
    fun = np.asarray(s.f, dtype=np.float64)
    code = np.asarray(code)
    names = np.array(STATUS_NAMES, dtype=object)[code].astype(str)
    success = code == STATUS_CONVERGED
    if problem.f_star is not None:
        success &= np.isfinite(fun) & (fun - problem.f_star <= SUCCESS_RTOL * max(1.0, abs(problem.f_star)))
    res = Result(x=np.asarray(s.x), fun=fun, grad_norm=np.linalg.norm(np.asarray(s.g), axis=-1), nit=np.asarray(nit),
                 nfev=np.asarray(s.nfev), njev=np.asarray(s.njev), nhev=np.asarray(s.nhev), nhvp=np.asarray(s.nhvp),
                 status=names, status_code=code, success=success, trace=trace, x0=x0s, problem=problem.spec,
                 optimizer=optimizer.spec, dtype=dtype, max_iter=int(max_iter), gtol=float(gtol), compile_s=compile_s,
                 run_s=float(np.median(times)), run_s_all=times, iterations_run=int(k), f_star=problem.f_star,
                 device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}")
    return _squeeze(res) if single else res


def _squeeze(res: Result) -> Result:
    per_start = ("x", "fun", "grad_norm", "nit", "nfev", "njev", "nhev", "nhvp", "status", "status_code", "success", "x0")
    res = dataclasses.replace(res, **{k: getattr(res, k)[0] for k in per_start})
    res.trace = Trace(**{k: v[0] for k, v in res.trace.arrays().items()})
    return res
