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
* the arrays evaluating f and ∇f makes for each start beyond its n-vectors — for a regression
  the residual vector or the margins of all samples, for an MLP its hidden activations: a number
  L per start, the largest array in the traced evaluation that depends on x, held a few times
  over (forward values and their cotangents); a Hessian formed by forward-over-reverse pushes n
  tangents through that evaluation (n·L per start), and so does a residual Jacobian by ``jacfwd``;
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

#: optimizers among DENSE_HESSIAN that evaluate the exact Hessian (forward-over-reverse: n tangents
#: through the gradient's evaluation); BFGS's matrix is its own update, from gradients only
HESSIAN_EVAL = frozenset({"newton", "newton-raphson", "trust-region"})
#: optimizers that keep a linearised gradient (``jax.linearize``) for Hessian-vector products
HVP_METHODS = frozenset({"newton-cg", "trust-ncg"})

#: n-vectors of optimizer state and temporaries per start (x, g, direction, trial x, trial g, …)
STATE_VECTORS = 10
#: copies, per start, of the largest array (beyond n) that evaluating f and ∇f makes, alive at
#: once (forward values kept for the backward pass, cotangents, line-search trials); measured
#: about 2 on logreg and mlp with gd
EVAL_COPIES = 3
#: twice the copies, per start, of the largest array beyond n² that forming the Hessian by
#: forward-over-reverse makes (n tangents through an evaluation whose largest array is L: n·L);
#: measured 1.8–2.2 on logreg and mlp with newton
HESSIAN_EVAL_COPIES = 5
#: the Hessian's evaluation is traced for problems of at most this many variables
HESSIAN_TRACE_MAX = 4096
#: twice the copies of n·L (L: the largest array of the residuals' evaluation, at least m) a
#: residual Jacobian by jacfwd holds besides J and JᵀJ; measured 2–4 mn in all (GN, LM on linreg)
JACOBIAN_EVAL_COPIES = 5
#: n×n matrices alive at once per start for a dense-Hessian method (H, eigenvectors, workspace)
DENSE_MATRICES = 4
#: the same for BFGS (its matrix, carried twice by the loop, and the update; measured 2)
BFGS_MATRICES = 3
#: n×n matrices held once per solve, not per start, by a method that forms the exact Hessian
#: (the factorisation's workspace, the tangents' output before it is batched): measured on one
#: start of rosenbrock:dim=2000, newton holds 6.9 n² in all and trust-region 7.9 n², on 200
#: starts of dim=200 3.1 n² per start
DENSE_WORKSPACE = 6
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


#: L per problem object (see :func:`_largest_array`), with what it was traced from
_LARGEST: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: L per registry-built problem, by spec and registration (a solve given a spec string builds a new
#: problem object each call, whose f is a new function: :data:`_LARGEST` never matched it)
_LARGEST_BY_SPEC: Dict[tuple, int] = {}
_LARGEST_BY_SPEC_MAX = 1024


def _sub_jaxprs(params):
    """The jaxprs among an equation's parameters (a call's body, a loop's body, cond's branches)."""
    for v in params.values():
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns") and hasattr(inner, "invars"):
                yield inner


def _is_var(v) -> bool:
    return type(v).__name__ != "Literal"


def _size(v) -> int:
    return int(np.prod(getattr(v.aval, "shape", ()) or (1,), dtype=np.float64))


#: a device's platform (``device.platform``) → the names ``lax.platform_dependent`` branches
#: carry for it (an NVIDIA GPU's platform is "gpu", its branch "cuda")
_LOWERING_NAMES = {"gpu": ("cuda", "rocm", "gpu")}


def _largest_in(jaxpr, hits, platform: str = "cpu"):
    """(elements of the largest value in ``jaxpr`` that depends on an input flagged in ``hits``,
    which outputs do): what vmapping the evaluation over starts multiplies. A loop's carry is
    followed to a fixed point, so a regression's data sliced block by block inside a loop (a
    loop constant) is not counted, but the residuals of each block are. Of a
    ``lax.platform_dependent`` choice, only the branch ``platform`` runs is followed."""
    tainted = {v for v, h in zip(jaxpr.invars, hits) if h}
    best = 0
    for eqn in jaxpr.eqns:
        hit = [_is_var(v) and v in tainted for v in eqn.invars]
        if not any(hit):
            continue
        prim, p = eqn.primitive.name, eqn.params
        outs = None   # which outputs depend on x: all of them unless a sub-jaxpr says which
        if prim in ("while", "scan"):
            if prim == "while":
                cn, bn = int(p["cond_nconsts"]), int(p["body_nconsts"])
                consts, carry, rest = hit[cn:cn + bn], hit[cn + bn:], []
                body, cond = p["body_jaxpr"].jaxpr, (p["cond_jaxpr"].jaxpr, hit[:cn])
            else:
                nc, nk = int(p["num_consts"]), int(p["num_carry"])
                consts, carry, rest = hit[:nc], hit[nc:nc + nk], hit[nc + nk:]
                body, cond = p["jaxpr"].jaxpr, None
            while True:
                b, out = _largest_in(body, consts + carry + rest, platform)
                best = max(best, b)
                new = [c or o for c, o in zip(carry, out[:len(carry)])]
                if new == carry:
                    break
                carry = new
            if cond is not None:
                best = max(best, _largest_in(cond[0], cond[1] + carry, platform)[0])
            outs = carry + out[len(carry):]
        else:
            known, subs = True, list(_sub_jaxprs(p))
            plats = p.get("branches_platforms") if prim == "cond" else None
            if plats and len(plats) == len(subs):   # lax.platform_dependent: the branch that runs
                names = _LOWERING_NAMES.get(platform, (platform,))
                pick = [i for i, ps in enumerate(plats) if ps and any(q in ps for q in names)] or \
                       [i for i, ps in enumerate(plats) if ps is None]
                subs = [subs[pick[0]]] if pick else subs
            for sub in subs:
                if len(sub.invars) == len(eqn.invars):   # a call: its operands, in order
                    inner = hit
                elif prim == "cond" and len(sub.invars) == len(eqn.invars) - 1:
                    inner = hit[1:]   # a branch: the operands after the index
                else:
                    inner, known = [True] * len(sub.invars), False
                b, out = _largest_in(sub, inner, platform)
                best = max(best, b)
                if len(out) != len(eqn.outvars):
                    known = False
                elif known:   # cond: an output depends on x if it does in any branch
                    outs = out if outs is None else [a or c for a, c in zip(outs, out)]
            outs = outs if known else None
        if outs is None or len(outs) != len(eqn.outvars):
            outs = [True] * len(eqn.outvars)
        for v, h in zip(eqn.outvars, outs):
            if h:
                tainted.add(v)
                best = max(best, _size(v))
    return best, [_is_var(v) and v in tainted for v in jaxpr.outvars]


def _largest_array(problem, dtype: str = "float64", platform: str = "cpu", hessian: bool = False) -> int:
    """L: elements of the largest array that evaluating f and ∇f (``hessian``: f's Hessian, by
    forward-over-reverse as the optimizers form it) at one start makes and that depends on x (at
    least n; n² for the Hessian). Traced (no compile), once per problem and data shapes; a
    problem that cannot be traced counts that least (its own check reports why)."""
    import jax
    n = int(problem.dim)
    data_sig = (jax.tree_util.tree_structure(problem.data),
                tuple(np.shape(a) for a in jax.tree_util.tree_leaves(problem.data)))
    sig = (n, dtype, platform, hessian, problem.f, problem.residuals) + data_sig
    try:
        known = _LARGEST.setdefault(problem, {})
    except TypeError:   # not weakly referenceable: no cache
        known = {}
    hit = known.get((hessian, dtype, platform))
    if hit is not None and hit[0] == sig:
        return hit[1]
    # a registry-built problem is the same function for the same spec and registration (what
    # bench.solve's compiled programs are keyed by, too); its data's shapes are in the key
    by_spec = None
    if getattr(problem, "_from_registry", False):
        by_spec = (problem.spec, problem.name, getattr(problem, "_registration", None), n, dtype, platform,
                   hessian) + data_sig
        if by_spec in _LARGEST_BY_SPEC:
            known[(hessian, dtype, platform)] = (sig, _LARGEST_BY_SPEC[by_spec])
            return _LARGEST_BY_SPEC[by_spec]

    def abstract(a):
        a = np.asarray(a)
        return jax.ShapeDtypeStruct(a.shape, np.dtype(dtype) if np.issubdtype(a.dtype, np.floating) else a.dtype)

    def fn(x, d):
        f = lambda y: problem.objective(y, d)   # noqa: E731
        return jax.hessian(f)(x) if hessian else jax.value_and_grad(f)(x)

    try:
        jaxpr = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((n,), np.dtype(dtype)),
                                   jax.tree_util.tree_map(abstract, problem.data)).jaxpr
        big = _largest_in(jaxpr, [True] + [False] * (len(jaxpr.invars) - 1), platform)[0]
    except Exception:  # problem.check() reports a broken f; an estimate must not fail first
        big = 0
    big = max(n * n if hessian else n, big)
    known[(hessian, dtype, platform)] = (sig, big)
    if by_spec is not None:
        if len(_LARGEST_BY_SPEC) >= _LARGEST_BY_SPEC_MAX:
            _LARGEST_BY_SPEC.pop(next(iter(_LARGEST_BY_SPEC)))
        _LARGEST_BY_SPEC[by_spec] = big
    return big


def _data_bytes(problem, itemsize: int) -> int:
    import jax
    total = 0
    for leaf in jax.tree_util.tree_leaves(problem.data):
        a = np.asarray(leaf)
        total += a.size * (itemsize if np.issubdtype(a.dtype, np.floating) else a.itemsize)
    return total


def history_row_bytes(n: int, itemsize: int) -> int:
    """Bytes of one start's history row: 4 floating and 4 int32 values, and x where n ≤ 3."""
    return 4 * itemsize + 4 * 4 + (n * itemsize if n <= 3 else 0)


def estimate(problem, optimizer, starts: int, max_iter: int, dtype: str = "float64",
             history: bool = True, platform: str = "cpu") -> Dict[str, Any]:
    """Bytes a :func:`bench.solve` of ``starts`` starts would hold at its peak, by part
    (``history=False``: a solve that records no history, whose part is then 0) on a device of
    ``platform`` (a problem's f may evaluate differently there: ``lax.platform_dependent``).

    Returns ``{"history", "state", "eval", "matrices", "data", "total"}`` (bytes; ``eval``: the
    arrays evaluating f and ∇f makes per start beyond its n-vectors) and ``"matrix"``, a phrase
    naming the dense matrix per start, if any.
    """
    b, n, t = int(starts), int(problem.dim), int(max_iter) + 1
    w = np.dtype(dtype).itemsize
    history = 3 * b * t * history_row_bytes(n, w) if history else 0
    memory = int(optimizer.params.get("memory", 0) or 0)
    vectors = STATE_VECTORS + 2 * memory
    state = 2 * b * vectors * n * w
    if memory:
        from optimizers.quasi_newton import LBFGS_SMALL_MAX
        if memory * n > LBFGS_SMALL_MAX:   # L-BFGS's large form also keeps SᵀY and YᵀY (m×m each)
            state += 2 * b * 2 * memory * memory * w
    big = _largest_array(problem, dtype, platform)
    extra = big - n   # beyond the n-vectors the state already counts
    evaluation = EVAL_COPIES * b * extra * w
    if optimizer.name in HVP_METHODS:   # a linearised gradient is kept while CG runs on it
        evaluation *= 2
    kind = matrix_kind(optimizer)
    matrices, phrase = 0, ""
    if kind == "hessian":
        matrices = (BFGS_MATRICES if optimizer.name == "bfgs" else DENSE_MATRICES) * b * n * n * w
        phrase = f"a dense {n}×{n} matrix per start"
        if optimizer.name in HESSIAN_EVAL or getattr(optimizer, "dense_hessian", False):
            # forward-over-reverse pushes n tangents through f's evaluation: arrays of n·L
            # numbers per start where f works on more than n (a regression's samples)
            # traced up to a few thousand variables; beyond, n tangents through the gradient's
            # largest array bound it (tracing n×n shapes gains nothing there)
            hbig = (_largest_array(problem, dtype, platform, hessian=True) if n <= HESSIAN_TRACE_MAX
                    else max(n * n, n * big))
            matrices += (HESSIAN_EVAL_COPIES * b * (hbig - n * n)) // 2 * w + DENSE_WORKSPACE * n * n * w
            if hbig > n * n:
                phrase += f", formed through {hbig}-element arrays"
    elif kind == "jacobian":
        m = _residual_count(problem)
        # jacfwd pushes n tangents through the residuals' evaluation (n·L), then J and JᵀJ
        matrices = b * ((JACOBIAN_EVAL_COPIES * n * max(big, m)) // 2 + 2 * m * n + 2 * n * n) * w
        phrase = f"a dense {m}×{n} Jacobian and {n}×{n} JᵀJ per start"
    data = 2 * _data_bytes(problem, w)
    return {"history": history, "state": state, "eval": evaluation, "matrices": matrices, "data": data,
            "total": history + state + evaluation + matrices + data, "matrix": phrase}


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
    where = getattr(device, "platform", "cpu") if device is not None else "cpu"
    est = estimate(problem, optimizer, starts, max_iter, dtype, history, where)
    avail = available_bytes(device)
    if avail is None or est["total"] <= avail:
        return est
    names = {"matrices": "matrices", "history": "history", "eval": "evaluation", "state": "state", "data": "data"}
    parts = ", ".join(f"{names[k]} {format_bytes(est[k])}" for k in names if est[k])
    advice = {
        "matrices": f"a matrix-free method ({', '.join(MATRIX_FREE)}) never forms it",
        "history": "fewer starts or a smaller --max-iter shrink the per-iteration history "
                   "(the Python API's solve(history=False) records none)",
        "eval": "fewer starts or a smaller problem (each start evaluates f over all of the problem's data)",
        "state": ("fewer starts, a smaller dimension or a smaller memory" if "memory" in optimizer.params
                  else "fewer starts or a smaller dimension"),
        "data": "a smaller problem (its data alone does not fit)",
    }
    top = max(names, key=lambda k: est[k])
    # what to change: for the largest part, and for any other that alone holds a third
    hints = [advice[k] for k in names if k == top or est[k] > est["total"] / 3]
    what = f" ({est['matrix']})" if est["matrix"] else ""
    raise OptbenchError(
        f"{problem.spec} × {optimizer.spec} with {starts} start(s), max_iter {max_iter}, {dtype}: needs about "
        f"{format_bytes(est['total'])}{what} [{parts}] but {format_bytes(avail)} is available on {where}"
        + (f"; {'; '.join(hints)}" if hints else "") + f" (set {ENV_LIMIT} to override)")


def batch_size(cell) -> int:
    """Starts in a suite cell's batch: x0 plus ``starts − 1`` random starts per seed."""
    seeds = len(getattr(cell, "seeds", (0,)) or (0,))
    return int(cell.starts) + (seeds - 1) * (int(cell.starts) - 1)


def check_scipy(problem, method, starts: int, max_iter: int) -> int:
    """Refuse, like :func:`check`, a scipy cell whose history would not fit in host memory: its
    solve keeps only the rows it ran, but the run writes each start's trace out to ``max_iter``
    (8 numbers per row, float64, and x where n ≤ 3; counted twice: the padded arrays and the
    file's copy). Returns the estimate in bytes."""
    need = 2 * int(starts) * (int(max_iter) + 1) * history_row_bytes(int(problem.dim), 8)
    avail = available_bytes(None)
    if avail is not None and need > avail:
        raise OptbenchError(
            f"{problem.spec} × {method.spec} with {starts} start(s), max_iter {max_iter}: its history needs about "
            f"{format_bytes(need)} but {format_bytes(avail)} is available on the host; a smaller --max-iter or "
            f"fewer starts shrink it (set {ENV_LIMIT} to override)")
    return need


def check_cells(cells, device=None) -> None:
    """:func:`check` every cell of a plan (``bench.suite.Cell``) before a run writes anything;
    cells run by scipy (a Python loop on the host, one start at a time) by :func:`check_scipy`."""
    for cell in cells:
        if getattr(cell, "is_scipy", False):
            check_scipy(cell.problem, cell.optimizer, batch_size(cell), cell.max_iter)
            continue
        check(cell.problem, cell.optimizer, batch_size(cell), cell.max_iter, cell.dtype, device)
