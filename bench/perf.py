"""Speed, side by side: optbench against the hand-written floor and the peers that are installed.

Each *case* (a problem, its starts, a tolerance) is run through several *contenders*:

* ``floor`` — a hand-written single-purpose JAX kernel (:mod:`bench.kernels`) or a hardware limit
  (a streaming read of the data): how far optbench is from what this machine can do;
* ``optbench`` — the registered optimizer through the one driver, :func:`bench.solve`;
* ``peer`` — scipy.optimize, optimistix, optax, jaxopt on the same starts and tolerance.

Measurement (what benchopt and asv teach: time only the solve, repeat, interleave, take medians):
every contender is compiled first, with the compile timed on its own; one untimed warm-up run
yields its outcome (iterations, how many starts reached ‖∇f‖ ≤ gtol); then the timed repeats are
*interleaved* — round r runs every contender once, in an order rotated by r — so slow drift of a
shared machine falls on all contenders alike. The table holds medians and ratios: ``x_floor`` =
median / the floor's median (a ``fuse_loops=True`` row: the floor compiled so; a method with a
floor of its own, such as Levenberg-Marquardt on 2-D Rosenbrock, and its peers: that floor),
``speedup`` (peer rows) = the peer's median / the matched optbench
method's median (per iteration where the floor is a per-iteration limit, as in the memory-bound
regression); on an optbench variant row (the same method again with ``pack=True`` or other
settings) ``speedup`` = the method's first peer's median / this row's; ``growth`` = median / the
same contender's median at the family's previous size.

Peers whose run is a Python loop over starts (scipy) are timed on a subset of the starts and
scaled to the whole batch (their cost is linear in the starts); such rows say so.

Peers are optional (``pip install optbench[peers]``): a missing one is skipped, not an error.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import optimizers as _optimizers
import problems as _problems
from optbench_core import OptbenchError

from . import kernels
from .solve import resolve_device, solve

_solve_mod = importlib.import_module("bench.solve")   # (``bench.solve`` the name is the function)

jax.config.update("jax_enable_x64", True)

#: how runs are timed: "wall" (time.perf_counter) or "cpu" (this process's CPU time, all threads:
#: robust when other processes share the cores; equals wall on an idle machine for
#: single-threaded work). Compile times are always wall time.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_RUN_CLOCK = {"fn": time.perf_counter}

TABLE_COLUMNS = ["case", "method", "contender", "kind", "compile_s", "median_ms", "ms_per_iter", "nit_median",
                 "nit_max", "solved", "x_floor", "speedup", "growth", "note", "flagged"]


@dataclasses.dataclass
class Outcome:
    """What a contender's run reached: iterations per start and final gradient norms."""

    nit: np.ndarray
    grad_norm: np.ndarray
    gtol: float

    @property
    def solved(self) -> float:
        """Fraction of starts with ‖∇f‖ ≤ gtol (a relative slack of 1e-6 for the last bit)."""
        g = np.asarray(self.grad_norm, dtype=np.float64)
        return float(np.mean(np.isfinite(g) & (g <= self.gtol * (1 + 1e-6))))


# A prepared contender: run() -> (seconds or None to use the wall time, Outcome)
Runner = Callable[[], Tuple[Optional[float], Outcome]]


@dataclasses.dataclass
class Contender:
    label: str
    method: str          # rows with the same method compare: the optbench row and its peers
    kind: str            # "floor", "optbench" or "peer"
    prepare: Callable[[], Runner]
    scale: float = 1.0   # multiplies the measured time (a subset run scaled to the whole batch)
    note: str = ""
    # a floor that runs one method's own algorithm: the rows of these methods compare with it
    # (``x_floor``) instead of the case's first floor
    floor_for: Tuple[str, ...] = ()


@dataclasses.dataclass
class Case:
    name: str
    family: str          # cases of one family differ only in size: growth compares them
    size: int
    gtol: float
    contenders: List[Contender]
    description: str = ""
    ratio_on: str = "median_ms"   # "ms_per_iter" where the floor is a per-iteration limit


# --------------------------------------------------------------------------------------------
# problems used by the cases (same functions for every contender)
# --------------------------------------------------------------------------------------------
def _rosen_residuals(x):
    return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosenbrock_ls_problem():
    """2-D Rosenbrock in residual form, r = (10(y − x²), 1 − x), f = Σ r² — the same function as
    ``rosenbrock``, for the least-squares methods (Gauss-Newton, Levenberg-Marquardt)."""
    return _problems.Problem(name="rosenbrock-ls", residuals=_rosen_residuals, x0=np.array([-1.2, 1.0]),
                             f_star=0.0, x_star=np.ones(2), bounds=(-2.0 * np.ones(2), 2.0 * np.ones(2)))


def ext_rosenbrock_problem(n: int):
    """Extended Rosenbrock (Moré, Garbow & Hillstrom 1981, #21), separable pairs, start (−1.2, 1, …)."""
    if n < 2 or n % 2:
        raise OptbenchError(f"extended Rosenbrock needs an even n >= 2, got {n}")
    return _problems.Problem(name=f"ext-rosenbrock-{n}", f=kernels.ext_rosenbrock, x0=np.tile([-1.2, 1.0], n // 2),
                             f_star=0.0, x_star=np.ones(n))


def _rosen_grad_np(x):
    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    t = x[:, 1] - x[:, 0] ** 2
    return np.hypot(-400.0 * x[:, 0] * t - 2.0 * (1.0 - x[:, 0]), 200.0 * t)


def _ext_rosen_gnorm_np(x):
    x = np.asarray(x, dtype=np.float64)
    u, v = x[0::2], x[1::2]
    t = v - u * u
    return float(np.sqrt(np.sum((-400.0 * u * t - 2.0 * (1.0 - u)) ** 2) + np.sum((200.0 * t) ** 2)))


# --------------------------------------------------------------------------------------------
# contender builders
# --------------------------------------------------------------------------------------------
def _jaxopt():
    """The jaxopt module, imported without its notice that it is no longer maintained (a
    DeprecationWarning on every import): it is a peer here, timed as its users still run it."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="JAXopt is no longer maintained", category=DeprecationWarning)
        import jaxopt
    return jaxopt


def peer_versions() -> Dict[str, Optional[str]]:
    """Installed versions of the peers (None where absent), for the provenance record."""
    from importlib import metadata
    out = {}
    for name in ("scipy", "optimistix", "optax", "jaxopt"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


#: the module each peer's rows need (a peer whose module does not import is skipped)
PEER_MODULES = {"scipy": "scipy.optimize", "optimistix": "optimistix", "optax": "optax", "jaxopt": "jaxopt"}


def missing_peers() -> List[str]:
    """The peers whose rows are skipped because their module is not installed (or fails to
    import): the table says so under itself instead of leaving them out silently."""
    return [name for name, module in PEER_MODULES.items() if not _have(module)]


def rows_csv(rows) -> str:
    """The rows as CSV (``TABLE_COLUMNS`` plus family and size)."""
    import csv
    import io
    cols = ["family", "size"] + TABLE_COLUMNS
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else ";".join(r[k]) if isinstance(r.get(k), list) else r.get(k))
                    for k in cols})
    return buf.getvalue()


def _have(module: str) -> bool:
    try:
        _jaxopt() if module == "jaxopt" else importlib.import_module(module)
        return True
    except Exception:  # an installed peer that fails to import is as good as absent
        return False


def _loop_array_bytes(fn, *args) -> int:
    """Bytes of the largest array the first ``while_loop`` ``fn`` runs on ``args`` carries (a
    floor kernel's iteration loop: its state over all starts), 0 if it runs none; traced
    abstractly."""
    from .limits import _sub_jaxprs
    from .solve import _largest_array_bytes

    def first_while(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "while":
                return eqn
            for sub in _sub_jaxprs(eqn.params):
                found = first_while(sub)
                if found is not None:
                    return found
        return None

    eqn = first_while(jax.make_jaxpr(fn)(*args).jaxpr)
    if eqn is None:
        return 0
    return _largest_array_bytes(eqn.params["body_jaxpr"].in_avals[eqn.params["body_nconsts"]:])


def _aot(fn, *args, xla_for=None, device=None):
    """Compile ``fn`` ahead of time for ``args``; return (executable, compile seconds). With
    ``xla_for = (dimension, data size[, fuse_loops[, starts]])`` it is compiled with the XLA options
    optbench's own programs get for such a problem, batch and loop state (its largest array,
    found as for optbench's programs among what the iteration loop carries,
    :func:`_loop_array_bytes`; ``bench.solve.compile_lowered``), else with XLA's defaults."""
    array_bytes = 0 if xla_for is None else _loop_array_bytes(fn, *args)   # not timed: optbench's comes with its lowering
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    if xla_for is None:
        exe = lowered.compile()
    else:
        from .solve import compile_lowered
        exe = compile_lowered(lowered, device, *xla_for, array_bytes=array_bytes)
    return exe, time.perf_counter() - t0


class _Timed:
    """A prepare() that records compile seconds for the table."""

    def __init__(self, build):
        self.build = build
        self.compile_s = 0.0

    def __call__(self):
        out = self.build()
        self.compile_s, runner = out
        return runner


def optbench_contender(problem, spec: str, x0s, gtol, max_iter, device, dtype="float64", method=None,
                       label=None, note="", pack=False, history=True, gnorm=None, fuse_loops=False) -> Contender:
    """An optbench optimizer through :func:`bench.solve`; the time is ``Result.run_s`` (the
    compiled run, history recording included unless ``history=False``). With ``pack`` the
    compile column includes the packed loop's compile (on the first run, which reaches the
    tail). ``gnorm(x)``: the case's closed-form ‖∇f‖ at the returned x, which judges ``solved``
    for every contender alike (default: the solver's own final ‖∇f‖)."""
    if not isinstance(device, str):
        device = device.platform

    def build():
        res = solve(problem, spec, x0s, max_iter=max_iter, gtol=gtol, dtype=dtype, device=device, pack=pack,
                    history=history, fuse_loops=fuse_loops)

        def run():
            r = solve(problem, spec, x0s, max_iter=max_iter, gtol=gtol, dtype=dtype, device=device, pack=pack,
                      history=history, fuse_loops=fuse_loops)
            norms = r.grad_norm if gnorm is None else gnorm(r.x)
            return r.run_s, Outcome(np.atleast_1d(r.nit), np.atleast_1d(norms), gtol)
        return res.compile_s, run
    return Contender(label or f"optbench {spec}", method or spec.split(":")[0], "optbench", _Timed(build), note=note)


def _kept(c: Contender, methods) -> bool:
    """Whether ``--methods`` keeps this contender: the named methods' rows, the floors that serve
    no method in particular, and the floors of the named methods."""
    if methods is None:
        return True
    if c.kind == "floor":
        return not c.floor_for or any(m in methods for m in c.floor_for)
    return c.method in methods


def jax_contender(label, method, kind, fn, args, outcome: Callable[[Any], Outcome], device, note="",
                  xla_for=None, floor_for: Tuple[str, ...] = ()) -> Contender:
    """A jitted JAX program (a kernel or a peer), compiled ahead of time and timed with
    ``block_until_ready``. The floor kernels pass ``xla_for`` (see :func:`_aot`): the limit is
    measured with the same compiler options as optbench, peers run as their users run them;
    ``floor_for``: see :class:`Contender`."""
    def build():
        with jax.default_device(device):
            dargs = jax.device_put(args, device)
            exe, cs = _aot(fn, *dargs, xla_for=xla_for, device=device)

        def run():
            clock = _RUN_CLOCK["fn"]
            t0 = clock()
            out = jax.block_until_ready(exe(*dargs))
            dt = clock() - t0
            return dt, outcome(jax.device_get(out))
        return cs, run
    return Contender(label, method, kind, _Timed(build), note=note, floor_for=tuple(floor_for))


def host_contender(label, method, kind, prepare_fn, note="", scale=1.0) -> Contender:
    """A host program (scipy, numpy): ``prepare_fn() -> (compile seconds, runner)``."""
    return Contender(label, method, kind, _Timed(prepare_fn), note=note, scale=scale)


# -- 2-D Rosenbrock, many starts --------------------------------------------------------------
def _rosen_f(x):
    return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2


def _optimistix_iterations(sol, line_search: bool):
    """Iterations of an optimistix solve in the sense every other row counts them.

    optimistix takes one *step* per evaluation of f: its first step only evaluates f at y0
    (accepted by construction), and with a line search (BFGS's backtracking Armijo) each rejected
    trial is a step of its own, so ``num_steps`` counted line-search trials plus one (2-D
    Rosenbrock, 8 starts: 23–57 steps for 12–36 iterations). An iteration is a completed line
    search, i.e. an accepted step after the first; for the trust-region and Gauss-Newton solvers
    (Levenberg-Marquardt, GaussNewton) each step after the first is one damped solve tried and
    accepted or rejected — one iteration, as jaxopt and optbench count them."""
    if line_search:
        acc = getattr(sol.state, "num_accepted_steps", None)
        if acc is not None:
            return jnp.maximum(acc - 1, 0)
    return jnp.maximum(sol.stats["num_steps"] - 1, 0)


def _optimistix_min(solver_name, rtol, atol, max_iter):
    import optimistix as optx
    solver = getattr(optx, solver_name)(rtol=rtol, atol=atol)

    def one(y0):
        sol = optx.minimise(lambda y, _: _rosen_f(y), solver, y0, max_steps=max_iter, throw=False)
        return sol.value, _optimistix_iterations(sol, line_search=True)
    return jax.vmap(one)


def _optimistix_lsq(solver_name, rtol, atol, max_iter):
    import optimistix as optx
    solver = getattr(optx, solver_name)(rtol=rtol, atol=atol)

    def one(y0):
        sol = optx.least_squares(lambda y, _: _rosen_residuals(y), solver, y0, max_steps=max_iter, throw=False)
        return sol.value, _optimistix_iterations(sol, line_search=False)
    return jax.vmap(one)


def _jaxopt_run(make):
    def one(y0):
        sol = make().run(y0)
        return sol.params, sol.state.iter_num
    return jax.vmap(one)


def _optax_lbfgs(f, gtol, max_iter):
    """optax.lbfgs (zoom line search, its defaults) in a jitted ``while_loop`` until ‖∇f‖ ≤ gtol —
    the loop optax's documentation shows."""
    import optax
    import optax.tree_utils as otu
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def one(x0):
        def cond(c):
            _, st, k = c
            g = otu.tree_get(st, "grad")
            return (k == 0) | ((k < max_iter) & (otu.tree_norm(g) > gtol))

        def body(c):
            x, st, k = c
            v, g = value_and_grad(x, state=st)
            upd, st = opt.update(g, st, x, value=v, grad=g, value_fn=f)
            return optax.apply_updates(x, upd), st, k + 1

        x, _, k = jax.lax.while_loop(cond, body, (x0, opt.init(x0), jnp.int32(0)))
        return x, k
    return one


def _blas_threads(n):
    """A context limiting BLAS to ``n`` threads (threadpoolctl, from optbench[peers]); a no-op
    without it. For scipy on 2-D problems multi-threaded BLAS only adds synchronisation: measured
    here, L-BFGS-B took 20× longer per start with OpenBLAS's default threads than with one."""
    import contextlib
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _gradient_stop(fun, jac, gtol):
    """(fun, jac, callback) for ``scipy.optimize.minimize``: the callback raises StopIteration
    (scipy ≥ 1.11 then ends the run, ``nit`` and ``x`` those of that iterate) once ‖∇f‖₂ ≤ gtol
    at the iterate. The gradient is the one the method's last evaluation computed when that was
    at the iterate (a line search ends on its accepted point), else it is evaluated once more.
    ``jac`` is True (``fun`` returns (f, g)) or a callable."""
    last = {"x": None, "g": None}

    def remember(x, g):
        # no copy (n numbers per evaluation): the callback below never trusts the one array scipy
        # updates in place, its iterate, and the trial points it evaluates are new arrays
        last["x"], last["g"] = x, g
        return g

    if jac is True:
        def fun_(x):
            f, g = fun(x)
            return f, remember(x, g)
        jac_ = True
    else:
        fun_ = fun

        def jac_(x):
            return remember(x, jac(x))

    def callback(intermediate_result):
        x = intermediate_result.x
        if last["x"] is not None and last["x"] is not x and np.array_equal(last["x"], x):
            g = last["g"]
        else:
            g = fun(x)[1] if jac is True else jac(x)
        if np.linalg.norm(np.asarray(g, dtype=np.float64)) <= gtol:
            raise StopIteration
    return fun_, jac_, callback


def _scipy_loop(method, x0s, gtol, max_iter, fun, jac, hess=None, hessp=None, blas_threads=None):
    """scipy.optimize.minimize, one start after another (scipy has no batch).

    Newton-CG tests only its step (Σ|Δx| ≤ n·xtol), so it ran on past ‖g‖ ≤ gtol until the step
    vanished (extended Rosenbrock, n = 10⁴: 86 iterations where the 85th met the test; n = 32:
    86 for 84). Its first run (the untimed warm-up) ends each start at the first iterate with
    ‖g‖₂ ≤ gtol by a callback (:func:`_gradient_stop`) and records that iteration; later runs,
    the timed ones, stop there by ``maxiter`` (scipy is deterministic: the same iterates), so
    the callback's cost (a comparison and a norm over n per iteration, ~25 µs at n = 10⁴, more
    than the iteration it saves) is not in scipy's time."""
    import contextlib
    import scipy.optimize as so

    stop_at: Dict[int, int] = {}   # Newton-CG: per start, the iteration that first met the test

    def run():
        # the timer runs inside the BLAS-threads context: entering it (threadpoolctl scans the
        # loaded libraries, ~1.5 ms) is set-up, not scipy's solve, and the subset's time is
        # scaled to the whole batch, which would multiply that set-up too
        with (_blas_threads(blas_threads) if blas_threads else contextlib.nullcontext()):
            clock = _RUN_CLOCK["fn"]
            t0 = clock()
            _, xs, nit = _loop()
            return clock() - t0, xs, nit

    def _loop():
        nit, xs = [], []
        for i, x0 in enumerate(x0s):
            opts, stop = {"maxiter": max_iter}, None
            if method == "BFGS":
                opts.update(gtol=gtol, norm=2)   # scipy's default is the inf-norm
            elif method in ("trust-exact", "trust-ncg", "trust-krylov"):
                opts["gtol"] = gtol              # these test the 2-norm
            elif method == "L-BFGS-B":
                # its only gradient test is ‖g‖∞ ≤ pgtol: gtol/√n guarantees ‖g‖₂ ≤ gtol; ftol off
                opts.update(gtol=gtol / np.sqrt(len(x0)), ftol=0.0, maxcor=10)
            elif method == "Newton-CG":
                # its step test off; the gradient test as the docstring says
                opts["xtol"] = 1e-30
                if i in stop_at:
                    opts["maxiter"] = stop_at[i]
                else:
                    fun_, jac_, stop = _gradient_stop(fun, jac, gtol)
            if stop is None:
                r = so.minimize(fun, x0, jac=jac, hess=hess, hessp=hessp, method=method, options=opts)
            else:
                r = so.minimize(fun_, x0, jac=jac_, hess=hess, hessp=hessp, method=method, options=opts,
                                callback=stop)
                stop_at[i] = int(r.nit)
            nit.append(r.nit)
            xs.append(r.x)
        return None, xs, np.asarray(nit)
    return run


def rosenbrock_case(n_starts: int, gtol: float, device, seed=0, scipy_starts=100, max_iter=200,
                    include_slow_peers=True, methods=None, slim=False) -> Case:
    """2-D Rosenbrock from ``n_starts`` random starts in [−2, 2]² to ‖∇f‖ ≤ gtol (``methods``: only
    those methods' rows and the floor; ``slim``: no ``pack=True`` and ``fuse_loops=True`` rows)."""
    p = _problems.get("rosenbrock")
    pls = p if p.has_residuals else rosenbrock_ls_problem()
    # every contender's ``solved`` by the same closed-form gradient at its returned x
    oc = functools.partial(optbench_contender, gnorm=_rosen_grad_np)
    x0s = p.random_starts(n_starts, seed)
    names = set(_optimizers.names())
    xj = jnp.asarray(x0s)
    g = jnp.asarray(gtol)

    def batch_outcome(xcol=0, ncol=1):
        return lambda out: Outcome(np.asarray(out[ncol]), _rosen_grad_np(out[xcol]), gtol)

    def floor(suffix="", note="same method as newton, derivatives by hand", fuse_loops=False):
        return jax_contender("floor: closed-form Newton (2×2)" + suffix, "newton", "floor",
                             lambda x, g: kernels.rosenbrock2_newton(x, g, max_iter=max_iter), (xj, g),
                             lambda out: Outcome(np.asarray(out[3]), _rosen_grad_np(out[0]), gtol), device,
                             note=note, xla_for=(2, 0, fuse_loops, len(x0s)))

    def lm_floor(suffix="", note="same method as levenberg-marquardt (MINPACK), by hand", fuse_loops=False):
        # Levenberg-Marquardt's own floor: its rows (optbench's, jaxopt's, optimistix's) compare with it
        return jax_contender("floor: closed-form MINPACK LM (2×2)" + suffix, "levenberg-marquardt", "floor",
                             lambda x, g: kernels.rosenbrock2_lm(x, g, max_iter=max_iter), (xj, g),
                             lambda out: Outcome(np.asarray(out[3]), _rosen_grad_np(out[0]), gtol), device,
                             note=note, xla_for=(2, 0, fuse_loops, len(x0s)), floor_for=("levenberg-marquardt",))

    cs: List[Contender] = [
        floor(),
        # minimisation Newton: on a residual problem ``newton`` would otherwise solve r(x) = 0
        oc(p, "newton:mode=minimize", x0s, gtol, max_iter, device, method="newton")]
    sub = x0s[:min(scipy_starts, n_starts)]
    scale = n_starts / len(sub)
    snote = f"{len(sub)} of {n_starts} starts, time ×{scale:g}" if scale != 1 else ""

    def scipy_peer(label, method, smethod, hess=False):
        def prep():
            import scipy.optimize as so
            run = _scipy_loop(smethod, sub, gtol, max_iter, so.rosen, so.rosen_der, so.rosen_hess if hess else None,
                              blas_threads=1)

            def runner():
                sec, xs, nit = run()
                return sec, Outcome(nit, _rosen_grad_np(np.asarray(xs)), gtol)
            return 0.0, runner
        return host_contender(label, method, "peer", prep, note=snote, scale=scale)

    packs = n_starts >= 2 * _solve_mod.PACK_TILE_MIN and not slim

    def packed(problem, spec, method, note=""):
        # the same method with solve(pack=True): the batch's tail stepped over its running tiles
        if packs:
            cs.append(oc(problem, spec, x0s, gtol, max_iter, device, method=method, pack=True,
                                         label=f"optbench {spec} (pack=True)", note=note))

    def unrecorded(problem, spec, method, note=""):
        # the same method with solve(history=False): like the floor and the peers, it records no
        # per-iteration history (the row above is optbench as it runs by default)
        cs.append(oc(problem, spec, x0s, gtol, max_iter, device, method=method, history=False,
                                     label=f"optbench {spec} (history=False)",
                                     note=(note + "; " if note else "") + "no per-iteration history"))

    fuses = not slim and (device if isinstance(device, str) else device.platform).split(":")[0] == "cpu"
    if fuses:   # the floor compiled as the fuse_loops=True rows are: their x_floor is against it
        cs.insert(1, floor(FUSED_SUFFIX, "the floor, loops compiled as one function", fuse_loops=True))

    def fused(problem, spec, method, note=""):
        # the same method with solve(fuse_loops=True): each loop compiled as one function (CPU)
        if fuses:
            cs.append(oc(problem, spec, x0s, gtol, max_iter, device, method=method, fuse_loops=True,
                         label=f"optbench {spec}{FUSED_SUFFIX}",
                         note=(note + "; " if note else "") + "loops compiled as one function"))

    unrecorded(p, "newton:mode=minimize", "newton")
    packed(p, "newton:mode=minimize", "newton")
    fused(p, "newton:mode=minimize", "newton")
    if _have("scipy.optimize"):
        cs.append(scipy_peer("scipy trust-exact", "newton", "trust-exact", hess=True))
    if "bfgs" in names:
        cs.append(oc(p, "bfgs", x0s, gtol, max_iter, device))
        unrecorded(p, "bfgs", "bfgs")
        packed(p, "bfgs", "bfgs")
        fused(p, "bfgs", "bfgs")
    if _have("optimistix"):
        cs.append(jax_contender("optimistix BFGS", "bfgs", "peer", _optimistix_min("BFGS", 1e-12, 1e-12, max_iter),
                                (xj,), batch_outcome(), device,
                                note="rtol=atol=1e-12 (Cauchy test); iterations: its accepted steps"))
    if _have("jaxopt") and include_slow_peers:
        jaxopt = _jaxopt()
        cs.append(jax_contender("jaxopt BFGS", "bfgs", "peer",
                                _jaxopt_run(lambda: jaxopt.BFGS(fun=_rosen_f, maxiter=max_iter, tol=gtol)),
                                (xj,), batch_outcome(), device))
    if _have("scipy.optimize"):
        cs.append(scipy_peer("scipy BFGS", "bfgs", "BFGS"))
    if "lbfgs" in names:
        cs.append(oc(p, "lbfgs", x0s, gtol, max_iter, device))
        unrecorded(p, "lbfgs", "lbfgs")
        packed(p, "lbfgs", "lbfgs")
        fused(p, "lbfgs", "lbfgs")
    if _have("optax"):
        cs.append(jax_contender("optax.lbfgs (jitted while_loop)", "lbfgs", "peer",
                                jax.vmap(_optax_lbfgs(_rosen_f, gtol, max_iter)), (xj,), batch_outcome(), device))
    if _have("scipy.optimize"):
        cs.append(scipy_peer("scipy L-BFGS-B", "lbfgs", "L-BFGS-B"))
    if "levenberg-marquardt" in names:
        cs.append(lm_floor())
        if fuses:
            cs.append(lm_floor(FUSED_SUFFIX, "the LM floor, loops compiled as one function", fuse_loops=True))
        cs.append(oc(pls, "levenberg-marquardt", x0s, gtol, max_iter, device,
                                     note="residual form"))
        unrecorded(pls, "levenberg-marquardt", "levenberg-marquardt", note="residual form")
        packed(pls, "levenberg-marquardt", "levenberg-marquardt", note="residual form")
        fused(pls, "levenberg-marquardt", "levenberg-marquardt", note="residual form")
        # jaxopt's method, like for like: Madsen & Nielsen's gain-ratio damping update, no Jacobian
        # scaling, μ₀ = 1e-6·max diag JᵀJ (jaxopt's damping_parameter); the default is MINPACK's
        cs.append(oc(pls, "levenberg-marquardt:damping=nielsen:scale=false:tau=1e-06", x0s, gtol,
                                     max_iter, device, method="levenberg-marquardt",
                                     note="jaxopt's damping rule and settings"))
        unrecorded(pls, "levenberg-marquardt:damping=nielsen:scale=false:tau=1e-06", "levenberg-marquardt",
                   note="jaxopt's damping rule and settings")
    if _have("jaxopt"):
        jaxopt = _jaxopt()
        # jaxopt minimises ½Σr², whose gradient is half of ∇Σr²: tol = gtol/2 is the same test
        cs.append(jax_contender("jaxopt LevenbergMarquardt", "levenberg-marquardt", "peer",
                                _jaxopt_run(lambda: jaxopt.LevenbergMarquardt(
                                    _rosen_residuals, maxiter=max_iter, tol=gtol / 2, stop_criterion="grad-l2-norm")),
                                (xj,), batch_outcome(), device, note="grad-l2-norm stop at gtol/2 (½Σr²)"))
    if _have("optimistix"):
        cs.append(jax_contender("optimistix LevenbergMarquardt", "levenberg-marquardt", "peer",
                                _optimistix_lsq("LevenbergMarquardt", 1e-12, 1e-12, max_iter), (xj,),
                                batch_outcome(), device, note="rtol=atol=1e-12; iterations: its steps after x₀"))
    if "gauss-newton" in names:
        cs.append(oc(pls, "gauss-newton", x0s, gtol, max_iter, device, note="residual form"))
        unrecorded(pls, "gauss-newton", "gauss-newton", note="residual form")
        fused(pls, "gauss-newton", "gauss-newton", note="residual form")
    if _have("optimistix"):
        cs.append(jax_contender("optimistix GaussNewton", "gauss-newton", "peer",
                                _optimistix_lsq("GaussNewton", 1e-12, 1e-12, max_iter), (xj,),
                                batch_outcome(), device, note="rtol=atol=1e-12; iterations: its steps after x₀"))
    cs = [c for c in cs if _kept(c, methods)]
    return Case(f"rosenbrock-2d B={n_starts}", "rosenbrock-2d", n_starts, gtol, cs,
                f"2-D Rosenbrock, {n_starts} starts in [−2,2]², to ‖∇f‖ ≤ {gtol:g}, float64")


# -- extended Rosenbrock, large n, one start --------------------------------------------------
def ext_rosenbrock_case(n: int, gtol: float, device, max_iter=1000, methods=None, slim=False) -> Case:
    """Extended Rosenbrock at dimension n from (−1.2, 1, …) to ‖∇f‖ ≤ gtol: matrix-free methods
    (``methods``, ``slim``: as :func:`rosenbrock_case`; slim drops the Armijo newton-cg row)."""
    p = ext_rosenbrock_problem(n)
    x0 = p.x0
    names = set(_optimizers.names())
    xj = jnp.asarray(x0)
    # every contender's ``solved`` by the same closed-form gradient at its returned x
    oc = functools.partial(optbench_contender, gnorm=_ext_rosen_gnorm_np)

    def single(xcol=0, ncol=1):
        return lambda out: Outcome(np.atleast_1d(np.asarray(out[ncol])), np.array([_ext_rosen_gnorm_np(out[xcol])]),
                                   gtol)

    cs = [jax_contender("floor: Newton-CG, closed-form Hv", "newton-cg", "floor",
                        lambda x, g: kernels.ext_rosenbrock_newton_cg(x, g, max_iter=max_iter),
                        (xj, jnp.asarray(gtol)),
                        lambda out: Outcome(np.atleast_1d(out[3]), np.array([_ext_rosen_gnorm_np(out[0])]), gtol),
                        device, note="N&W Alg. 7.1 + Armijo", xla_for=(n, 0, False, 1))]
    for spec in ("newton-cg", "trust-ncg", "lbfgs"):
        if spec in names:
            cs.append(oc(p, spec, x0, gtol, max_iter, device))
            if not slim:   # like the floor and the peers: no per-iteration history
                cs.append(oc(p, spec, x0, gtol, max_iter, device, history=False,
                                             label=f"optbench {spec} (history=False)",
                                             note="no per-iteration history"))
            if spec == "newton-cg" and not slim:
                # the floor's own line search: the same iterations and CG steps as the floor, so
                # its ms/iter against the floor's is the driver's overhead alone (the default,
                # strong Wolfe, takes fewer and dearer iterations)
                cs.append(oc(p, "newton-cg:linesearch=armijo", x0, gtol, max_iter, device,
                                             note="Armijo, the floor's line search: same iterations"))

    def scipy_peer(label, method, smethod):
        def prep():
            # each scipy peer jits its own f, ∇f (and Hv where its method uses one), as a user of
            # that method would: its compile column is its own compile, not 0 for the peers after
            # the first because they shared the first one's jitted functions
            vg = jax.jit(jax.value_and_grad(kernels.ext_rosenbrock))
            hvp = (jax.jit(lambda x, v: jax.jvp(jax.grad(kernels.ext_rosenbrock), (x,), (v,))[1])
                   if smethod != "L-BFGS-B" else None)
            t0 = time.perf_counter()
            jax.block_until_ready(vg(xj))
            if hvp is not None:
                jax.block_until_ready(hvp(xj, xj))
            cs_ = time.perf_counter() - t0
            fun = lambda x: tuple(np.asarray(a, dtype=np.float64) for a in vg(x))  # noqa: E731
            hp = (lambda x, v: np.asarray(hvp(x, v), dtype=np.float64)) if hvp is not None else None  # noqa: E731
            run = _scipy_loop(smethod, [x0], gtol, max_iter, fun, True, hessp=hp)

            def runner():
                sec, xs, nit = run()
                return sec, Outcome(nit, np.array([_ext_rosen_gnorm_np(xs[0])]), gtol)
            return cs_, runner
        return host_contender(label, method, "peer", prep, note="f, ∇f, Hv jitted with JAX, its own compile")

    if _have("scipy.optimize"):
        cs.append(scipy_peer("scipy Newton-CG", "newton-cg", "Newton-CG"))
        cs.append(scipy_peer("scipy trust-ncg", "trust-ncg", "trust-ncg"))
        cs.append(scipy_peer("scipy L-BFGS-B", "lbfgs", "L-BFGS-B"))
    if _have("optax"):
        cs.append(jax_contender("optax.lbfgs (jitted while_loop)", "lbfgs", "peer",
                                _optax_lbfgs(kernels.ext_rosenbrock, gtol, max_iter), (xj,), single(), device))
    if _have("jaxopt"):
        jaxopt = _jaxopt()
        cs.append(jax_contender("jaxopt LBFGS", "lbfgs", "peer",
                                lambda x: (lambda s: (s.params, s.state.iter_num))(
                                    jaxopt.LBFGS(fun=kernels.ext_rosenbrock, maxiter=max_iter, tol=gtol).run(x)),
                                (xj,), single(), device))
    cs = [c for c in cs if _kept(c, methods)]
    return Case(f"ext-rosenbrock n={n}", "ext-rosenbrock", n, gtol, cs,
                f"extended Rosenbrock, n = {n}, start (−1.2, 1, …), to ‖∇f‖ ≤ {gtol:g}, float64")


# -- memory-bound least squares -----------------------------------------------------------------
def linreg_case(rows: int, d: int, device, iters: int = 20, seed: int = 0, block_rows: Optional[int] = None,
                methods=None, slim=False) -> Case:
    """Gradient descent on ‖Xw − y‖², X of shape (rows, d) in float32: time per iteration against
    one streaming read of X (the bandwidth floor). Fixed iterations, no tolerance (gtol = 0).
    ``slim``: the floors and optbench's blocked form only.
    optbench also evaluates f and ∇f at the start (history row 0, the convergence test), one
    gradient more than the ``iters`` the others compute; 20 iterations keep that within 5 %."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, d), dtype=np.float32)
    xt = np.ascontiguousarray(x.T)   # the single-pass forms keep X as Xᵀ (problems/lsq.py)
    block_rows = kernels.block_rows_for(xt, block_rows)   # default: ≈ 4 MiB blocks
    y = (x @ rng.standard_normal(d).astype(np.float32) + 0.1 * rng.standard_normal(rows)).astype(np.float32)
    w0 = np.zeros(d, np.float32)
    lr = np.float32(0.25 / rows)  # < 2/L with L = 2λmax(XᵀX) ≈ 2·rows for standard normal X
    flat = x.reshape(-1)
    nothing = Outcome(np.array([iters]), np.array([np.nan]), 0.0)

    def read_prep():
        def runner():
            np.dot(flat, flat)   # every byte of X read once, nothing written
            return None, Outcome(np.array([1]), np.array([np.nan]), 0.0)
        return 0.0, runner

    def numpy_prep():
        def runner():
            w = w0.copy()
            for _ in range(iters):
                w = w - lr * (2.0 * (x.T @ (x @ w - y)))
            return None, nothing
        return 0.0, runner

    data = {"X": x, "y": y}

    def plain_f(w, data):
        r = data["X"] @ w - data["y"]
        return jnp.sum(r * r)

    def blocked_f(w, data):
        return kernels.sse(w, data["XT"], data["y"], block_rows)

    p_plain = _problems.Problem(name=f"linreg-{rows}x{d}", f=plain_f, x0=w0, data=data)
    p_block = _problems.Problem(name=f"linreg-blocked-{rows}x{d}", f=blocked_f, x0=w0, data={"XT": xt, "y": y})
    per_iter = lambda out: nothing  # noqa: E731
    cs = [host_contender("floor: read X once (numpy dot)", "read", "floor", read_prep,
                         note="streaming-read limit of one gradient"),
          jax_contender("floor: blocked single-pass GD", "gd", "floor",
                        lambda xt, y, w, lr: kernels.linreg_gd_blocked(xt, y, w, lr, iters, block_rows),
                        (xt, y, w0, lr), per_iter, device, note=f"Xᵀ stored, {block_rows}-row blocks",
                        xla_for=(d, rows * (d + 1), False, 1)),
          optbench_contender(p_block, f"gd:lr={float(lr)!r}", w0[None], 0.0, iters, device, dtype="float32",
                             method="gd", label="optbench gd (blocked f)", note="custom_jvp single-pass f"),
          optbench_contender(p_plain, f"gd:lr={float(lr)!r}", w0[None], 0.0, iters, device, dtype="float32",
                             method="gd", label="optbench gd (plain f)", note="autodiff of ‖Xw−y‖²"),
          host_contender("numpy Xᵀ(Xw − y)", "gd", "peer", numpy_prep, note="two passes"),
          jax_contender("jax.jit plain GD", "gd", "peer",
                        lambda x, y, w, lr: jax.lax.fori_loop(
                            0, iters, lambda _, w: w - lr * jax.grad(lambda w: jnp.sum((x @ w - y) ** 2))(w), w),
                        (x, y, w0, lr), per_iter, device)]
    if "linreg" in _problems.names():
        try:
            pl = _problems.get(f"linreg:n={rows}:d={d}")
            cs.append(optbench_contender(pl, f"gd:lr={float(lr)!r}", pl.x0[None], 0.0, iters, device,
                                         dtype="float32", method="gd", label="optbench gd on problems' linreg"))
        except OptbenchError:
            pass
    if slim:   # quick: the floors and optbench's blocked form only
        cs = [c for c in cs if c.kind == "floor" or c.label == "optbench gd (blocked f)"]
    cs = [c for c in cs if _kept(c, methods)]
    return Case(f"linreg {rows}×{d} f32", "linreg", rows, 0.0, cs,
                f"gradient descent on ‖Xw − y‖², X {rows}×{d} float32 ({x.nbytes / 1e6:.0f} MB), {iters} iterations",
                ratio_on="ms_per_iter")


# --------------------------------------------------------------------------------------------
# measurement and the table
# --------------------------------------------------------------------------------------------
def measure_case(case: Case, repeats: int, progress: Optional[Callable[[str], None]] = None,
                 min_time_s: float = 0.0, max_repeats: int = 0) -> List[Dict[str, Any]]:
    """Compile every contender, warm up, then time ``repeats`` interleaved rounds, and more (up
    to ``max_repeats``) while the rounds so far have taken less than ``min_time_s`` of wall
    time: a case of millisecond runs gets enough rounds for a steady median on a shared
    machine, one of seconds-long runs no more than it asked for. One row each."""
    prepared = []
    for c in case.contenders:
        if progress:
            progress(f"{case.name}: compiling {c.label}")
        runner = c.prepare()
        _, outcome = runner()   # warm-up (untimed): the outcome
        prepared.append((c, runner, outcome))
    times: Dict[int, List[float]] = {i: [] for i in range(len(prepared))}
    t_start = time.perf_counter()
    r = 0
    while r < repeats or (r < max_repeats and time.perf_counter() - t_start < min_time_s):
        if progress:
            progress(f"{case.name}: round {r + 1}/{repeats if r < repeats else max_repeats}")
        order = list(range(len(prepared)))
        k = r % len(order)
        order = order[k:] + order[:k]
        for i in order:
            c, runner, _ = prepared[i]
            t0 = _RUN_CLOCK["fn"]()
            sec, _ = runner()
            wall = _RUN_CLOCK["fn"]() - t0
            times[i].append((wall if sec is None else sec) * c.scale)
        r += 1
    rows = []
    for i, (c, _, outcome) in enumerate(prepared):
        med = float(np.median(times[i]))
        nit = np.asarray(outcome.nit)
        nit_max = int(np.max(nit)) if nit.size else 0
        rows.append({"case": case.name, "family": case.family, "size": case.size, "method": c.method,
                     "contender": c.label, "kind": c.kind, "compile_s": float(c.prepare.compile_s),
                     "median_ms": 1e3 * med, "repeats": len(times[i]), "times_ms": [1e3 * t for t in times[i]],
                     "ms_per_iter": 1e3 * med / nit_max if nit_max > 0 else None,
                     "nit_median": float(np.median(nit)) if nit.size else None, "nit_max": nit_max,
                     "solved": outcome.solved if case.gtol > 0 else None, "note": c.note})
        if c.floor_for:
            rows[-1]["floor_for"] = list(c.floor_for)
    _add_ratios(rows, case.ratio_on)
    return rows


def _all_solved(r) -> bool:
    """Whether the row reached gtol on every start (rows without a tolerance count as solved)."""
    s = r.get("solved") if r is not None else None
    return s is None or s >= 1.0


#: the label suffix of rows compiled with ``fuse_loops=True`` (and of the floor compiled so)
FUSED_SUFFIX = " (fuse_loops=True)"


def _add_ratios(rows, on="median_ms"):
    """``x_floor``, ``speedup`` (see the module's docstring) and ``flagged``: the ratio columns
    that compare a run which did not reach gtol on every start (this row's or the row it is
    compared with) — a time that is not like for like, marked in the table, not hidden."""
    floors = [r for r in rows if r["kind"] == "floor"]

    def floor_of(r):
        # a fuse_loops=True row compares with a floor compiled the same way, where there is one;
        # a row whose method has a floor of its own (``floor_for``) with that one, else with the
        # case's first floor that serves no method in particular
        fused = r.get("contender", "").endswith(FUSED_SUFFIX)
        alike = [f for f in floors if f.get("contender", "").endswith(FUSED_SUFFIX) == fused]
        own = [f for f in alike if r.get("method") in f.get("floor_for", ())]
        general = [f for f in alike if not f.get("floor_for")]
        return (own or general or floors or [None])[0]
    ob = {}
    for r in rows:   # a peer compares with the first optbench row of its method
        if r["kind"] == "optbench":
            ob.setdefault(r["method"], r)
    peer = {}
    for r in rows:   # an optbench variant (pack=True, other settings) compares with its method's first peer
        if r["kind"] == "peer":
            peer.setdefault(r["method"], r)
    for r in rows:
        floor = floor_of(r)
        r["x_floor"] = r[on] / floor[on] if floor and floor[on] else None
        m = ob.get(r["method"])
        r["speedup"], partner = None, None
        if r["kind"] == "peer" and m and m[on]:
            r["speedup"], partner = r[on] / m[on], m
        q = peer.get(r["method"])
        if r["kind"] == "optbench" and r is not m and q and r[on]:
            r["speedup"], partner = q[on] / r[on], q
        own = _all_solved(r)
        r["flagged"] = ([] if r["x_floor"] is None or (own and _all_solved(floor)) else ["x_floor"]) + \
                       ([] if r["speedup"] is None or (own and _all_solved(partner)) else ["speedup"])
        r.setdefault("growth", None)


def add_growth(rows: List[Dict[str, Any]]) -> None:
    """growth = median / the same contender's median at the next smaller size of its family."""
    by = {}
    for r in rows:
        by.setdefault((r["family"], r["contender"]), []).append(r)
    for group in by.values():
        group.sort(key=lambda r: r["size"])
        for prev, cur in zip(group, group[1:]):
            if prev["median_ms"] > 0:
                cur["growth"] = cur["median_ms"] / prev["median_ms"]
                # marked as the other ratios are: a size at which not every start was solved
                if not (_all_solved(prev) and _all_solved(cur)):
                    cur["flagged"] = list(cur.get("flagged") or []) + ["growth"]


def _fmt(v, kind):
    if v is None:
        return "-"
    if kind == "pct":   # never rounded up to 100% (999 of 1000 starts is not all of them)
        if v >= 1 or v <= 0:
            return f"{100 * v:.0f}%"
        if v < 1e-3:
            return "<0.1%"
        return f"{math.floor(1000 * v) / 10:g}%"
    if kind == "x":
        return f"{v:.2f}×" if v < 100 else f"{v:.0f}×"
    if kind == "ms":
        return f"{v:.3g}" if v < 1000 else f"{v:.0f}"
    if kind == "s":
        return f"{v:.2f}"
    if kind == "i":
        return f"{v:g}"
    return str(v)


#: marks a ratio cell that compares a run which did not solve every start (see ``_add_ratios``)
FLAG_MARK = "*"
FLAG_NOTE = (f"{FLAG_MARK} compares a contender that did not reach gtol on every start (its `solved`, or that of "
             "the row it is compared with, is below 100%): not a like-for-like time.")


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """A Markdown table of the rows (readable as plain text too)."""
    cols = [("case", "case", ""), ("method", "method", ""), ("contender", "contender", ""),
            ("compile s", "compile_s", "s"), ("median ms", "median_ms", "ms"), ("ms/iter", "ms_per_iter", "ms"),
            ("iters med/max", None, ""), ("solved", "solved", "pct"), ("× floor", "x_floor", "x"),
            ("peer/optbench", "speedup", "x"), ("growth", "growth", "x"), ("note", "note", "")]
    out = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    any_flag = False
    for r in rows:
        cells = []
        for _, key, kind in cols:
            if key is None:
                cells.append(f"{_fmt(r['nit_median'], 'i')}/{r['nit_max']}")
            else:
                cell = (_fmt(r.get(key), kind) if key not in ("case", "method", "contender", "note")
                        else (r.get(key) or ""))
                if key in (r.get("flagged") or ()):
                    cell, any_flag = cell + FLAG_MARK, True
                cells.append(cell)
        out.append("| " + " | ".join(cells) + " |")
    if any_flag:
        out += ["", FLAG_NOTE]
    return "\n".join(out)


#: the test suite's preset: one small size per family, only the first method of each (each compile
#: costs seconds on a shared 2-core machine)
QUICK = {"rosen_starts": [8], "scipy_starts": 2, "ext_n": [32], "linreg": [(2000, 5)], "repeats": 2,
         "methods": ["newton", "newton-cg", "gd", "read"], "slim": True}
#: ``repeats`` rounds at least; then more, up to ``max_repeats``, while a case's rounds have taken
#: less than ``min_case_s`` seconds (on this 2-core VM five rounds of the n = 10⁴ extended
#: Rosenbrock case, ~0.2 s, gave ratios from 0.86× to 1.24× for the same code)
DEFAULT = {"rosen_starts": [1000, 10000], "scipy_starts": 20, "ext_n": [10_000], "linreg": [(200_000, 50)],
           "repeats": 5, "min_case_s": 3.0, "max_repeats": 41}
LARGE = {"rosen_starts": [], "scipy_starts": 0, "ext_n": [100_000, 1_000_000], "linreg": [(2_000_000, 50)],
         "repeats": 3, "min_case_s": 10.0, "max_repeats": 15}
CASE_FAMILIES = ("rosenbrock", "ext-rosenbrock", "linreg")


#: the methods each case family times (``--methods`` picks among them; "read" is the regression's
#: bandwidth floor)
FAMILY_METHODS = {"rosenbrock": ("newton", "bfgs", "lbfgs", "levenberg-marquardt", "gauss-newton"),
                  "ext-rosenbrock": ("newton-cg", "trust-ncg", "lbfgs"),
                  "linreg": ("gd",)}


def all_methods() -> List[str]:
    """Every method some case family times, in order."""
    return list(dict.fromkeys(m for f in CASE_FAMILIES for m in FAMILY_METHODS[f]))


def case_builders(sizes: dict, device, families=CASE_FAMILIES, methods=None) -> List[Callable[[], Case]]:
    """Builders (built one at a time, so a large case's data lives only while it is measured)
    for a size preset (``QUICK``, ``DEFAULT``, ``LARGE``), a family selection and, optionally,
    the methods to time (their rows and the floors; families timing none of them are skipped)."""
    if methods is not None:
        families = [f for f in families if set(methods) & set(FAMILY_METHODS[f])]
    else:
        methods = sizes.get("methods")
    slim = bool(sizes.get("slim"))
    out = []
    if "rosenbrock" in families:
        for b in sizes["rosen_starts"]:
            out.append(lambda b=b: rosenbrock_case(b, 1e-8, device, scipy_starts=sizes["scipy_starts"],
                                                   include_slow_peers=b <= 1000, methods=methods, slim=slim))
    if "ext-rosenbrock" in families:
        for n in sizes["ext_n"]:
            out.append(lambda n=n: ext_rosenbrock_case(n, 1e-6, device, methods=methods, slim=slim))
    if "linreg" in families:
        for rows, d in sizes["linreg"]:
            out.append(lambda rows=rows, d=d: linreg_case(rows, d, device, methods=methods, slim=slim))
    return out


def run_perf(sizes: dict, device_name: str = "cpu", families=CASE_FAMILIES, repeats: Optional[int] = None,
             progress=None, clock: str = "wall", methods=None) -> List[Dict[str, Any]]:
    """Build and measure every case; rows carry medians, ratios and growth. ``clock`` times the
    runs (see :data:`CLOCKS`); optbench's own ``Result.run_s`` is read with the same clock.
    ``methods``: only these methods' rows (and the floors), see :func:`case_builders`."""
    import importlib
    if clock not in CLOCKS:
        raise OptbenchError(f"unknown clock {clock!r}: use {' or '.join(CLOCKS)}")
    driver = importlib.import_module("bench.solve")
    device = resolve_device(device_name)
    rows = []
    saved = driver._clock
    _RUN_CLOCK["fn"] = driver._clock = CLOCKS[clock]
    try:
        for build in case_builders(sizes, device, families, methods):
            if repeats:   # asked for: exactly that many rounds
                rows.extend(measure_case(build(), repeats, progress))
            else:
                rows.extend(measure_case(build(), sizes["repeats"], progress, sizes.get("min_case_s", 0.0),
                                         sizes.get("max_repeats", 0)))
    finally:
        _RUN_CLOCK["fn"], driver._clock = time.perf_counter, saved
    for r in rows:
        r["clock"] = clock
    add_growth(rows)
    return rows
