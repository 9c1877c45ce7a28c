"""``scipy:<method>``: scipy.optimize on optbench's problems and starts, recorded like any optimizer.

``scipy:BFGS``, ``scipy:L-BFGS-B``, ``scipy:trust-exact``, ... run ``scipy.optimize.minimize``
(Nocedal & Wright's methods as scipy implements them); ``scipy:least_squares`` (options
``method=trf|dogbox|lm``, ``x_scale``, ``tr_solver``, ...) runs ``scipy.optimize.least_squares``
on a problem's residuals. Other ``key=value`` parameters become the method's scipy options
(``scipy:L-BFGS-B:maxcor=20``); names scipy does not know are refused up front.

How it runs: on the CPU, a Python loop over the starts, as a scipy user would. f, its gradient,
Hessian and Hessian-vector product (or the residuals and their Jacobian) are compiled once per
cell with ``jax.jit`` from the problem's own functions, ahead of time so compilation is timed
apart (``compile_s``). Evaluations are counted as scipy requests them (nfev, njev, nhev, nhvp;
for least squares a residual vector is one f-evaluation and a Jacobian one njev), the same
convention as optbench's optimizers.

Termination uses optbench's test, not scipy's: a callback stops a start once ‖∇f‖₂ ≤ gtol or
after ``max_iter`` iterations, and scipy's own tolerances default to near machine precision so
that they do not stop it first (what a user after a tight answer would set; any of them can be
overridden in the spec). A start where the test already holds at x0 (or f, ∇f are not finite
there) stops at iteration 0 without calling scipy, as the driver does. TNC, whose callback cannot
stop it, and least squares (tested at each Jacobian, i.e. each accepted iterate) are stopped by
an exception of optbench's; ``least_squares:method=lm`` (MINPACK, no callback) is stopped by
``max_iter`` and divergence but runs on past gtol to its own tolerances. The status is then
classified as the driver does: ``converged``, ``max_iter`` (also where scipy's own evaluation or
iteration budget stopped it), ``diverged``; where scipy stopped on its own criterion first,
``linesearch_failed`` for a failed line search (BFGS, CG, Newton-CG "precision loss", L-BFGS-B
"ABNORMAL", TNC "Linear search failed") and ``stalled`` otherwise — scipy's message is kept in the
cell's trace file (``scipy_message``).

The history has the driver's shape: row 0 is x0 and row k the iterate after k iterations (the
callback's); f and ‖∇f‖ there, cumulative counts, x when n ≤ 3; ``step`` and ``rho`` are NaN (scipy
does not report them). Row 0's counts are those of the initial evaluation (f, and ∇f for methods
that use it), as in the driver. The recording adds a dictionary lookup per iteration (plus a
gradient evaluation, not counted, for the derivative-free methods), and that is inside the timed
loop: scipy's times here are an upper bound, by a few percent.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from typing import Any, Dict

import numpy as np

from optbench_core import OptbenchError, close_matches, first_line, format_spec, parse_spec
from optimizers.base import (STATUS_CONVERGED, STATUS_DIVERGED, STATUS_LINESEARCH_FAILED, STATUS_MAX_ITER,
                             STATUS_NAMES, STATUS_STALLED)

PREFIX = "scipy:"
INSTALL_HINT = "pip install 'optbench[scipy]'"
#: scipy.optimize.minimize's unconstrained-capable methods, as scipy spells them
MINIMIZE_METHODS = ("Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "COBYLA", "COBYQA",
                    "SLSQP", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov")
LEAST_SQUARES = "least_squares"
#: keyword arguments of least_squares a spec may set (loss≠linear would change the objective)
LEAST_SQUARES_PARAMS = ("method", "x_scale", "tr_solver", "ftol", "xtol", "gtol", "max_nfev")
#: methods that use the gradient / the Hessian matrix / Hessian-vector products
_USES_GRAD = {"CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "SLSQP", "trust-constr", "dogleg", "trust-ncg",
              "trust-exact", "trust-krylov"}
_USES_HESS = {"dogleg", "trust-exact", "trust-constr"}
_USES_HESSP = {"Newton-CG", "trust-ncg", "trust-krylov"}
#: methods whose callback cannot take ``intermediate_result`` and ignores StopIteration (stopped by
#: an exception of optbench's own instead)
_LEGACY_CALLBACK = {"TNC"}
_EPS = float(np.finfo(np.float64).eps)


def _scipy():
    """scipy.optimize, or the one-line install hint."""
    try:
        import scipy.optimize as so
    except ImportError:
        raise OptbenchError(f"scipy:<method> needs scipy, which is not installed: {INSTALL_HINT}") from None
    return so


def method_names():
    """Every method name ``scipy:<method>`` accepts."""
    return list(MINIMIZE_METHODS) + [LEAST_SQUARES]


@dataclasses.dataclass(frozen=True, eq=False)
class ScipyMethod:
    """A scipy method with its options: what a ``scipy:`` spec resolves to (not a driver Optimizer)."""

    name: str                 # "scipy:BFGS"
    method: str               # "BFGS" or "least_squares"
    params: Dict[str, Any]
    spec: str
    needs_residuals: bool = False
    description: str = ""


#: the function scipy.optimize.minimize dispatches each method to (private names: looked up with
#: a fallback to the documentation when a scipy version spells them otherwise)
_IMPLEMENTATION = {"Nelder-Mead": "_minimize_neldermead", "Powell": "_minimize_powell", "CG": "_minimize_cg",
                   "BFGS": "_minimize_bfgs", "Newton-CG": "_minimize_newtoncg", "L-BFGS-B": "_minimize_lbfgsb",
                   "TNC": "_minimize_tnc", "COBYLA": "_minimize_cobyla", "COBYQA": "_minimize_cobyqa",
                   "SLSQP": "_minimize_slsqp", "trust-constr": "_minimize_trustregion_constr",
                   "dogleg": "_minimize_dogleg", "trust-ncg": "_minimize_trust_ncg",
                   "trust-krylov": "_minimize_trust_krylov", "trust-exact": "_minimize_trustregion_exact"}
#: parameters of those functions that minimize itself fills (the problem, its derivatives, a box
#: or constraints optbench never has, the callback): not options a spec may set
_NOT_OPTIONS = {"fun", "func", "x0", "args", "jac", "grad", "hess", "hessp", "bounds", "constraints", "callback",
                "subproblem"}


def _keyword_names(fn):
    import inspect
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    passes_on = any(p.kind == p.VAR_KEYWORD and p.name != "unknown_options" for p in params)
    return names - _NOT_OPTIONS, passes_on


def _option_names(so, method: str):
    """The options ``minimize(method=...)`` takes (empty set: unknown, skip checks): the keyword
    parameters of the function scipy runs for the method (the trust-region methods pass theirs on
    to a common driver: its parameters too); failing that, the names scipy's documentation lists
    under "Options" (``maxiter, maxfev : int`` names two)."""
    try:
        from scipy.optimize import _minimize
        names, passes_on = _keyword_names(getattr(_minimize, _IMPLEMENTATION[method]))
        if passes_on:
            from scipy.optimize._trustregion import _minimize_trust_region
            names |= _keyword_names(_minimize_trust_region)[0]
        if names:
            return names
    except Exception:  # noqa: BLE001 — another scipy's private layout: read the documentation
        pass
    try:
        doc = so.show_options(solver="minimize", method=method, disp=False) or ""
    except Exception:  # noqa: BLE001 — an older/newer scipy without this method's docs
        return set()
    if "Options\n-------" not in doc:
        return set()
    body = doc.split("Options\n-------", 1)[1]
    body = re.split(r"\n\s*\w[\w ]*\n\s*-{3,}", body, maxsplit=1)[0]   # up to the next section
    names = set()
    for head in re.findall(r"^([\w, ]+) :", body, flags=re.M):
        names.update(h.strip() for h in head.split(",") if h.strip())
    if not set(_default_options(method, 1.0, 1, 1)) <= names:
        return set()   # documentation that omits options the method takes: no check rather than a wrong one
    return names - _NOT_OPTIONS


def get(spec: str) -> ScipyMethod:
    """Resolve ``scipy:<method>[:key=value]...``; one-line errors for unknown methods/options."""
    name, params = parse_spec(spec)
    if not name.startswith(PREFIX):
        raise OptbenchError(f"not a scipy method spec: {spec!r}")
    so = _scipy()
    member = name[len(PREFIX):]
    lookup = {m.lower(): m for m in method_names()}
    method = lookup.get(member.lower().replace("_", "-")) or lookup.get(member.lower())
    if method is None:
        raise OptbenchError(f"unknown scipy method {member!r}{close_matches(member, method_names())}; "
                            f"known: {', '.join(method_names())}")
    if method == LEAST_SQUARES:
        for k, v in params.items():
            if k not in LEAST_SQUARES_PARAMS:
                raise OptbenchError(f"unknown parameter {k!r} for scipy:least_squares"
                                    f"{close_matches(k, LEAST_SQUARES_PARAMS)}; allowed: {', '.join(LEAST_SQUARES_PARAMS)}")
        if params.get("method", "trf") not in ("trf", "dogbox", "lm"):
            raise OptbenchError(f"scipy:least_squares method must be trf, dogbox or lm, got {params['method']!r}")
        doc = "scipy.optimize.least_squares (method " + str(params.get("method", "trf")) + ") on the residuals"
    else:
        allowed = _option_names(so, method)
        for k in params:
            if allowed and k not in allowed:
                raise OptbenchError(f"unknown option {k!r} for scipy:{method}{close_matches(k, allowed)}; "
                                    f"allowed: {', '.join(sorted(allowed))}")
        doc = f"scipy.optimize.minimize(method={method!r})"
    for k, v in params.items():
        _check_option(method, k, v)
    full = PREFIX + method
    return ScipyMethod(name=full, method=method, params=dict(params), spec=format_spec(full, params) if params else full,
                       needs_residuals=method == LEAST_SQUARES, description=doc)


def _check_option(method: str, key: str, value: Any) -> None:
    """The values scipy would take and fail on later, quietly (every start 'stalled' with
    ``gtol=nan``; "ERROR: M <= 0" for ``maxcor=0``; a ``UFuncTypeError`` mid-run for
    ``xatol=abc``): NaN anywhere, budgets (``max…``) that are not positive integers, tolerances
    (``…tol``) that are not numbers ≥ 0. One line naming the option."""
    where = f"scipy:{method} option {key!r}"
    if isinstance(value, float) and value != value:
        raise OptbenchError(f"{where} must be a number, got nan")
    if key.startswith("max") and "radius" not in key and key != "max_step":   # counts, not sizes
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OptbenchError(f"{where} must be a positive integer, got {value!r}")
    if key.endswith("tol"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise OptbenchError(f"{where} must be a number >= 0, got {value!r}")


def _default_options(method: str, gtol: float, max_iter: int, n: int) -> Dict[str, Any]:
    """scipy options that leave optbench's gtol/max_iter test in charge (scipy's own criteria at
    about machine precision); a spec's own parameters override these."""
    big = 100 * max_iter + 1000
    tiny = 10 * _EPS
    return {
        "BFGS": {"gtol": gtol, "norm": 2, "maxiter": max_iter},
        "CG": {"gtol": gtol, "norm": 2, "maxiter": max_iter},
        "L-BFGS-B": {"gtol": gtol / math.sqrt(n), "ftol": tiny, "maxiter": max_iter, "maxfun": 10 * max_iter + 100},
        "Newton-CG": {"xtol": tiny, "maxiter": max_iter},
        "TNC": {"gtol": gtol / math.sqrt(n), "ftol": 0.0, "xtol": 0.0, "maxfun": big},
        # scipy counts the initial simplex as Nelder-Mead's first iteration: max_iter + 1 lets it
        # take max_iter steps (and call back max_iter times), as the other methods do
        "Nelder-Mead": {"xatol": tiny, "fatol": tiny, "maxiter": max_iter + 1, "maxfev": big},
        "Powell": {"xtol": tiny, "ftol": tiny, "maxiter": max_iter, "maxfev": big},
        "COBYLA": {"tol": tiny, "maxiter": big},
        "COBYQA": {"maxiter": max_iter, "maxfev": big},
        "SLSQP": {"ftol": tiny, "maxiter": max_iter},
        "trust-constr": {"gtol": gtol, "xtol": tiny, "maxiter": max_iter},
        "dogleg": {"gtol": gtol, "maxiter": max_iter},
        "trust-ncg": {"gtol": gtol, "maxiter": max_iter},
        "trust-exact": {"gtol": gtol, "maxiter": max_iter},
        "trust-krylov": {"gtol": gtol, "maxiter": max_iter},
    }[method]


class _Functions:
    """The problem's f, ∇f, ∇²f, ∇²f·v (or r, J), jitted and compiled once, data as an argument."""

    def __init__(self, problem, method: ScipyMethod, dtype: str, n: int):
        import jax
        import jax.numpy as jnp
        jdt = jnp.dtype(dtype)
        self.np_dtype = np.dtype(dtype)
        cpu = jax.devices("cpu")[0]
        self.data = jax.device_put(jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jdt) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a),
            problem.data), cpu)
        x = jax.ShapeDtypeStruct((n,), jdt)
        fobj = lambda x, d: problem.objective(x, d)  # noqa: E731
        fns = {"f": fobj, "grad": jax.grad(fobj), "hess": jax.hessian(fobj),
               "hvp": lambda x, v, d: jax.jvp(lambda y: jax.grad(fobj)(y, d), (x,), (v,))[1]}
        if problem.has_residuals:
            res = lambda x, d: problem.residual_vector(x, d)  # noqa: E731
            fns["res"] = res
            fns["jac"] = jax.jacfwd(res)
        need = {"f", "grad"}
        if method.method == LEAST_SQUARES:
            need = {"res", "jac"}
        elif method.method in _USES_HESS:
            need.add("hess")
        elif method.method in _USES_HESSP:
            need.add("hvp")
        t0 = time.perf_counter()
        self.exe = {}
        with jax.default_device(cpu):
            for k in sorted(need):
                args = (x, x, self.data) if k == "hvp" else (x, self.data)
                self.exe[k] = jax.jit(fns[k]).lower(*args).compile()
        self.compile_s = time.perf_counter() - t0

    def __call__(self, which: str, *xs):
        out = self.exe[which](*[np.asarray(v, self.np_dtype) for v in xs], self.data)
        return np.asarray(out, dtype=np.float64)


class _Start:
    """One start's counted evaluations, evaluation cache and history rows."""

    def __init__(self, fns: _Functions, n: int, max_iter: int, gtol: float, lsq: bool):
        self.fns, self.n, self.max_iter, self.gtol, self.lsq = fns, n, max_iter, gtol, lsq
        self.counts = {"nfev": 0, "njev": 0, "nhev": 0, "nhvp": 0}
        self._fc: Dict[bytes, float] = {}      # x → f
        self._gc: Dict[bytes, np.ndarray] = {}  # x → ∇f
        self._rc: Dict[bytes, np.ndarray] = {}  # x → r (least squares)
        self.rows = []                          # (f, ‖g‖, nfev, njev, nhev, nhvp, x)
        self.stop_reason = None
        self.stop_at_gtol = True                # False: least_squares' lm (see jac)

    @staticmethod
    def _key(x) -> bytes:
        return np.ascontiguousarray(x, dtype=np.float64).tobytes()

    @staticmethod
    def _remember(cache, key, value, size=8):
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = value

    # -- the functions scipy calls (counted) ------------------------------------------------
    def f(self, x):
        self.counts["nfev"] += 1
        v = float(self.fns("f", x))
        self._remember(self._fc, self._key(x), v)
        return v

    def grad(self, x):
        self.counts["njev"] += 1
        g = self.fns("grad", x)
        self._remember(self._gc, self._key(x), g)
        return g

    def hess(self, x):
        self.counts["nhev"] += 1
        return self.fns("hess", x)

    def hessp(self, x, v):
        self.counts["nhvp"] += 1
        return self.fns("hvp", x, v)

    def residuals(self, x):
        self.counts["nfev"] += 1
        r = self.fns("res", x)
        self._remember(self._rc, self._key(x), r)
        return r

    def jac(self, x):
        """J(x); for least squares each Jacobian is taken at an accepted iterate, so it is where a
        history row is recorded (f = Σr² and ∇f = 2Jᵀr at that point)."""
        self.counts["njev"] += 1
        jm = self.fns("jac", x)
        r = self._rc.get(self._key(x))
        if r is None:
            r = self.fns("res", x)  # not counted: scipy did not ask for it
        if self.rows and np.array_equal(self.rows[-1][6], x):
            self.rows.pop()   # the same point again (a wrapper's shape check): one row per iterate
        f, gn = float(r @ r), float(np.linalg.norm(2.0 * jm.T @ r))
        self._record(x, f, gn)
        # optbench's test at each iterate, x0 included; here rather than in a callback, which
        # method="lm" (MINPACK) does not take. lm is stopped by max_iter and divergence only,
        # not by gtol: it runs on to its own tolerances (near eps), as scipy's lm called with them
        # would (without this it ran past max_iter too: rows capped, nit = max_iter, the x and
        # counts of a longer run)
        try:
            self._maybe_stop(f, gn)
        except StopIteration:
            # lm below gtol runs on, but never past the iteration budget (the gtol test comes
            # first in _maybe_stop, so the budget is tested here too)
            if self.stop_reason == "converged" and not self.stop_at_gtol and len(self.rows) - 1 < self.max_iter:
                self.stop_reason = None
                return jm
            if self.stop_reason == "converged" and not self.stop_at_gtol:
                self.stop_reason = "max_iter"
            raise _Halt from None
        return jm

    # -- history ------------------------------------------------------------------------------
    def value_grad_norm(self, x):
        """f and ‖∇f‖ at x for the history: from the cache when scipy evaluated them there."""
        k = self._key(x)
        if self.lsq:
            r = self._rc.get(k)
            r = self.fns("res", x) if r is None else r
            g = 2.0 * self.fns("jac", x).T @ r
            return float(r @ r), float(np.linalg.norm(g))
        f = self._fc.get(k)
        g = self._gc.get(k)
        f = float(self.fns("f", x)) if f is None else f
        g = self.fns("grad", x) if g is None else g
        return f, float(np.linalg.norm(g))

    def _record(self, x, f, gn, counts=None):
        c = counts or self.counts
        row = (f, gn, c["nfev"], c["njev"], c["nhev"], c["nhvp"], np.array(x, dtype=np.float64))
        if len(self.rows) <= self.max_iter:
            self.rows.append(row)
        else:  # past the budget (a method that cannot be stopped): keep the latest as the last row
            self.rows[-1] = row

    def start_row(self, x0, uses_grad: bool):
        f, gn = self.value_grad_norm(x0)
        self._record(x0, f, gn, {"nfev": 1, "njev": int(uses_grad), "nhev": 0, "nhvp": 0})

    def callback_minimize(self, intermediate_result):
        """After each iteration: record the iterate; stop at ‖∇f‖ ≤ gtol or the iteration budget."""
        x = np.asarray(intermediate_result.x, dtype=np.float64)
        f, gn = self.value_grad_norm(x)
        self._record(x, f, gn)
        self._maybe_stop(f, gn)

    def _maybe_stop(self, f, gn):
        if not (math.isfinite(f) and math.isfinite(gn)):
            self.stop_reason = "diverged"
            raise StopIteration
        if gn <= self.gtol:
            self.stop_reason = "converged"
            raise StopIteration
        if len(self.rows) - 1 >= self.max_iter:
            self.stop_reason = "max_iter"
            raise StopIteration


def _run_start(so, method: ScipyMethod, fns: _Functions, x0: np.ndarray, max_iter: int, gtol: float):
    n = x0.size
    lsq = method.method == LEAST_SQUARES
    st = _Start(fns, n, max_iter, gtol, lsq)
    with warnings.catch_warnings():
        # scipy warns on non-finite values, on precision loss, on options a method ignores: the
        # status and scipy's message record all of that
        warnings.simplefilter("ignore")
        try:
            if lsq:
                # ftol off (None), xtol and scipy's gtol (on a scaled max-norm) near eps: optbench's
                # test decides (in st.jac). xtol is not off: once no step changes x in floating
                # point, trf and dogbox would otherwise go on shrinking a zero step until
                # max_nfev (gaussian-fit: 2,846 residuals for 12 iterations at max_iter=20)
                kw = {"method": "trf", "ftol": None, "xtol": 10 * _EPS, "gtol": 10 * _EPS,
                      "max_nfev": 100 * max_iter + 1000}
                kw.update(method.params)
                if kw["method"] == "lm":
                    st.stop_at_gtol = False
                    # MINPACK refuses disabled tolerances
                    for t in ("ftol", "xtol", "gtol"):
                        if kw[t] is None:
                            kw[t] = 10 * _EPS
                out = so.least_squares(st.residuals, x0, jac=st.jac, **kw)
                message, status = out.message, int(out.status)
            else:
                opts = _default_options(method.method, gtol, max_iter, n)
                opts.update(method.params)
                kw = {"method": method.method, "options": opts}
                if method.method in _USES_GRAD:
                    kw["jac"] = st.grad
                if method.method in _USES_HESS:
                    kw["hess"] = st.hess
                if method.method in _USES_HESSP:
                    kw["hessp"] = st.hessp
                uses_grad = method.method in _USES_GRAD
                st.start_row(x0, uses_grad)
                f0, gn0 = st.rows[0][0], st.rows[0][1]
                if not (math.isfinite(f0) and math.isfinite(gn0)) or gn0 <= gtol:
                    # optbench's test holds at x0 (the driver stops at iteration 0): scipy is not
                    # started, where most methods would take a step (or many evaluations) first;
                    # the counts are row 0's, the evaluation at x0
                    st.stop_reason = "converged" if gn0 <= gtol else "diverged"
                    st.counts.update(nfev=1, njev=int(uses_grad))
                    return st, x0, f"optbench: stopped at x0 ({st.stop_reason}); scipy was not called", 0
                if method.method in _LEGACY_CALLBACK:
                    kw["callback"] = _halting_callback(st)
                else:
                    kw["callback"] = st.callback_minimize
                out = so.minimize(st.f, x0, **kw)
                message, status = str(out.message), int(out.status)
            x = np.asarray(out.x, dtype=np.float64)
        except _Halt:
            # optbench's test stopped a method that takes no StopIteration (TNC; least squares
            # in st.jac) at the iterate just recorded
            x = st.rows[-1][6]
            message, status = f"optbench: stopped ({st.stop_reason})", -2
        except Exception as exc:  # noqa: BLE001 — e.g. scipy's linear algebra on non-finite numbers:
            # one start's failure is a result, as in the driver, not a crash of the run; but an
            # error before the first evaluation is a bad configuration (an option's value)
            # (a TypeError — an option of the wrong type, met mid-run — is one too)
            if not any(st.counts.values()) or isinstance(exc, TypeError):
                msg = first_line(exc)
                raise OptbenchError(f"{method.spec}: scipy refused the configuration: {msg}") from None
            x = st.rows[-1][6] if st.rows else x0
            message, status = f"{type(exc).__name__}: {exc}", -99
    # the final point as the last history row (scipy may return after its last callback)
    if not st.rows or not np.array_equal(st.rows[-1][6], x):
        f, gn = st.value_grad_norm(x) if np.all(np.isfinite(x)) else (float("nan"), float("nan"))
        st._record(x, f, gn)
    # the last row carries every evaluation spent, including any after the last iterate
    last = st.rows[-1]
    st.rows[-1] = last[:2] + tuple(st.counts[k] for k in ("nfev", "njev", "nhev", "nhvp")) + last[6:]
    return st, x, message, status


class _XOnly:
    def __init__(self, x):
        self.x = x


class _Halt(Exception):
    """optbench's test stopping a scipy method that does not honour StopIteration: raised through
    scipy (TNC's C loop and MINPACK pass a Python exception on) and caught in :func:`_run_start`."""


def _halting_callback(st: _Start):
    """TNC's callback(xk): record the iterate and stop TNC there when optbench's test says so
    (ignoring a StopIteration, TNC would run on to its own tolerances: max_iter=5 on Rosenbrock
    reported 'converged' at nit 5 after 21 iterations)."""
    def cb(xk):
        try:
            st.callback_minimize(_XOnly(xk))
        except StopIteration:
            raise _Halt from None
    return cb


#: scipy's words for "stopped by my iteration or evaluation budget" across its methods
#: (Nelder-Mead and Powell: "Maximum number of iterations has been exceeded"; L-BFGS-B: "STOP:
#: TOTAL NO. OF ITERATIONS REACHED LIMIT"; SLSQP: "Iteration limit reached"; least_squares:
#: "The maximum number of function evaluations is exceeded"; COBYQA: "... has been reached";
#: L-BFGS-B's maxfun: "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"; TNC's maxfun: "Max.
#: number of function evaluations reached"; COBYLA: "... evaluated MAXFUN times")
_BUDGET_MESSAGE = re.compile(r"maximum number of|max\. number of|iteration limit|reached limit|limit reached|"
                             r"exceeds limit|max(imum)?[ _-]?(iter|fun|eval)", re.IGNORECASE)


def _line_search_failed(method: str, status: int, message: str) -> bool:
    """scipy's report that its line search found no acceptable step: BFGS, CG and Newton-CG status 2
    ("Desired error not necessarily achieved due to precision loss", raised by the line search),
    L-BFGS-B's "ABNORMAL" (ABNORMAL_TERMINATION_IN_LNSRCH), TNC status 4 ("Linear search failed")."""
    if method in ("BFGS", "CG", "Newton-CG"):
        return status == 2
    if method == "L-BFGS-B":
        return message.strip().upper().startswith("ABNORMAL")
    if method == "TNC":
        return status == 4
    return False


def _classify(st: _Start, method: ScipyMethod, status: int, gtol: float, max_iter: int, message: str = "") -> int:
    f, gn, x = st.rows[-1][0], st.rows[-1][1], st.rows[-1][6]
    if not (math.isfinite(f) and math.isfinite(gn) and np.all(np.isfinite(x))):
        return STATUS_DIVERGED
    if gn <= gtol:
        return STATUS_CONVERGED
    # a start cut off by a budget (ours, or a method's own: maxfun, an evaluation limit) is
    # never "stopped by itself"
    if len(st.rows) - 1 >= max_iter or st.stop_reason == "max_iter" or _BUDGET_MESSAGE.search(message or ""):
        return STATUS_MAX_ITER
    if _line_search_failed(method.method, status, message or ""):
        return STATUS_LINESEARCH_FAILED
    return STATUS_STALLED


def solve(problem, method, x0s, *, max_iter: int = 500, gtol: float = 1e-8, dtype: str = "float64",
          repeats: int = 1, progress=None):
    """Run a ``scipy:`` method from each start in ``x0s`` ((B, n)) and return a ``bench.Result``.

    Same arguments, metrics, status names and history shapes as :func:`bench.solve`; see the
    module docstring for how scipy is driven and what is timed.
    """
    from .solve import TRACE_X_MAX_DIM, Result, Trace, result_success
    import problems as _problems
    so = _scipy()
    problem = _problems.get(problem)
    method = get(method) if isinstance(method, str) else method
    if method.needs_residuals and not problem.has_residuals:
        raise OptbenchError(f"optimizer {method.spec!r} needs a least-squares problem; {problem.spec!r} has no residuals")
    x0s = np.asarray(x0s, dtype=np.float64)
    single = x0s.ndim == 1
    x0s = x0s[None, :] if single else x0s
    if x0s.ndim != 2 or x0s.shape[1] != problem.dim:
        raise OptbenchError(f"starts must have shape (B, {problem.dim}), got {x0s.shape}")
    b, n = x0s.shape
    if progress is not None:
        progress("compile")
    fns = _Functions(problem, method, dtype, n)
    times = []
    for rep in range(repeats):
        t0 = time.perf_counter()
        runs = []
        for i in range(b):
            if progress is not None and rep == 0:
                progress(f"run {i + 1}/{b}")
            runs.append(_run_start(so, method, fns, x0s[i].copy(), int(max_iter), float(gtol)))
        times.append(time.perf_counter() - t0)
    # the columns up to the last row any start recorded; Trace writes the flat tail to max_iter
    # when a field is read (allocating (B, max_iter + 1) here filled memory before anything was
    # kept: max_iter = 10¹¹ was a MemoryError for 745 GiB after every start had run)
    t_len = max(len(st.rows) for st, *_ in runs)
    cols = {k: np.empty((b, t_len)) for k in ("f", "grad_norm", "step", "rho")}
    icol = {k: np.empty((b, t_len), dtype=np.int32) for k in ("nfev", "njev", "nhev", "nhvp")}
    xs_tr = np.empty((b, t_len, n)) if n <= TRACE_X_MAX_DIM else None
    xf, fun, gnorm, nit, code, msgs = np.empty((b, n)), np.empty(b), np.empty(b), np.empty(b, np.int32), [], []
    finals = {k: np.empty(b, np.int32) for k in icol}
    for i, (st, x, message, status) in enumerate(runs):
        rows = st.rows
        k = len(rows) - 1
        for j in range(t_len):
            r = rows[min(j, k)]   # after the last row the curve stays flat, as in the driver
            cols["f"][i, j], cols["grad_norm"][i, j] = r[0], r[1]
            for m, key in enumerate(("nfev", "njev", "nhev", "nhvp")):
                icol[key][i, j] = r[2 + m]
            if xs_tr is not None:
                xs_tr[i, j] = r[6]
        cols["step"][i], cols["rho"][i] = np.nan, np.nan
        xf[i], fun[i], gnorm[i], nit[i] = rows[-1][6], rows[-1][0], rows[-1][1], k
        for m, key in enumerate(("nfev", "njev", "nhev", "nhvp")):
            finals[key][i] = rows[-1][2 + m]
        code.append(_classify(st, method, status, gtol, max_iter, str(message)))
        msgs.append(str(message))
    code = np.asarray(code, dtype=np.int32)
    success = result_success(problem, code, fun, xf, dtype)
    trace = Trace(**cols, **icol, x=xs_tr, length=int(max_iter) + 1)
    res = Result(x=xf, fun=fun, grad_norm=gnorm, nit=nit, nfev=finals["nfev"], njev=finals["njev"],
                 nhev=finals["nhev"], nhvp=finals["nhvp"],
                 status=np.array(STATUS_NAMES, dtype=object)[code].astype(str), status_code=code, success=success,
                 trace=trace, x0=x0s, problem=problem.spec, optimizer=method.spec, dtype=dtype, max_iter=int(max_iter),
                 gtol=float(gtol), compile_s=fns.compile_s, run_s=float(np.median(times)), run_s_all=times,
                 iterations_run=int(nit.max()), f_star=problem.f_star, device="cpu:scipy")
    res.extra = {"scipy_message": np.array(msgs, dtype=str)}
    if single:
        from .solve import _squeeze
        res = _squeeze(res)
    return res
