"""The optimizer protocol: an oracle to evaluate the problem, a State, and init/step functions.

Every optimizer is a pair of pure functions ``init(oracle, x0) -> State`` and
``step(oracle, state) -> State`` on one start (a flat vector x). The driver (``bench.solve``)
vmaps them over starts, loops, tests termination and records history; an optimizer only takes
steps and counts what it evaluates. It never raises inside the loop: it reports trouble through
``State.status`` (see the ``STATUS_*`` codes).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp

from optbench_core import OptbenchError

jax.config.update("jax_enable_x64", True)

# Status codes. 0 = still running. The driver sets converged/max_iter/diverged; an optimizer may
# end a start early with linesearch_failed, singular or stalled.
STATUS_RUNNING = 0
STATUS_CONVERGED = 1
STATUS_MAX_ITER = 2
STATUS_DIVERGED = 3
STATUS_LINESEARCH_FAILED = 4
STATUS_SINGULAR = 5
STATUS_STALLED = 6
STATUS_NAMES = ("running", "converged", "max_iter", "diverged", "linesearch_failed", "singular", "stalled")


#: up to this dimension, Hessians are built from JVPs written out one per unit vector instead
#: of a vmap over the basis
UNROLL_DIM_MAX = 4


class Oracle:
    """Evaluates a problem for an optimizer: f, gradient, Hessian, Hessian-vector products,
    residuals and Jacobian, all by JAX autodiff of the problem's f (or residuals).

    Counting is the optimizer's job (it knows what it evaluated); the conventional cost of each
    call is: ``f`` and ``residuals`` one f-evaluation, ``value_and_grad`` one f and one gradient,
    ``hess`` one Hessian, ``value_grad_hess`` one of each, ``hvp`` one Hessian-vector product,
    ``residuals_and_jac`` one f and one Jacobian (which yields the gradient 2Jᵀr for free).

    The user's Python functions are traced once per compile: the first call at a given shape
    converts the function to a closed jaxpr (``jax.closure_convert``, hoisting closed-over
    tracers such as problem data), and every later call — in ``init``, in ``step``, inside line
    searches and under autodiff — evaluates that jaxpr instead of re-running Python. An Oracle
    therefore belongs to one trace (the driver builds one per compiled run).

    ``f=None`` with residuals means f = Σr² (optbench's convention): f is then built from the
    converted residuals, so a least-squares problem's Python function is traced once even by a
    method that uses both f and r (a driver should pass None when the problem defines only r).
    """

    def __init__(self, f: Optional[Callable], residuals: Optional[Callable] = None, root_problem: bool = False):
        if f is None and residuals is None:
            raise ValueError("an Oracle needs f or residuals")
        self._f_py = f
        self._r_py = residuals
        self.has_residuals = residuals is not None
        # the problem is posed as F(x) = 0 (a square system tagged "root"): Newton's ``mode=auto``
        # then takes the Jacobian step; any other residual problem is minimised as Σ r².
        self.root_problem = bool(root_problem) and residuals is not None
        self._pure: Dict[Any, Any] = {}

    def _converted(self, which: str, x):
        key = (which, tuple(x.shape), jnp.dtype(x.dtype))
        hit = self._pure.get(key)
        if hit is None:
            fn = self._f_py if which == "f" else self._r_py
            hit = jax.closure_convert(fn, x)
            self._pure[key] = hit
        conv, consts = hit
        return conv, consts

    def _fn(self, which: str, x):
        if which == "f" and self._f_py is None:
            r = self._fn("r", x)
            return lambda y: jnp.sum(jnp.square(r(y)))
        conv, consts = self._converted(which, x)
        return lambda y: conv(y, *consts)

    def f(self, x):
        return self._fn("f", x)(x)

    def value_and_grad(self, x):
        return jax.value_and_grad(self._fn("f", x))(x)

    def grad(self, x):
        return jax.grad(self._fn("f", x))(x)

    def hess(self, x):
        return jax.hessian(self._fn("f", x))(x)

    def value_grad_hess(self, x):
        """(f, ∇f, ∇²f) in one pass: the gradient is linearised once and pushed through the n
        unit vectors (forward-over-reverse), so f and ∇f come with the Hessian for free."""
        vg = jax.value_and_grad(self._fn("f", x))
        n = x.shape[0]
        eye = jnp.eye(n, dtype=x.dtype)
        if n <= UNROLL_DIM_MAX:
            # one JVP per unit vector, written out: for small n this compiles to fewer, larger
            # kernels than a vmap over the basis (2-D Newton on 10,000 starts: 11.3 -> 9.8 ms);
            # the primal f, ∇f is shared between the JVPs by XLA
            cols = [jax.jvp(vg, (x,), (eye[i],)) for i in range(n)]
            (f, g), _ = cols[0]
            h = jnp.stack([c[1][1] for c in cols], axis=1)
            return f, g, 0.5 * (h + h.T)
        (f, g), lin = jax.linearize(vg, x)
        h = jax.vmap(lambda v: lin(v)[1])(eye)
        return f, g, 0.5 * (h + h.T)

    def hvp(self, x, v):
        """∇²f(x)·v by forward-over-reverse differentiation; never forms the Hessian."""
        return jax.jvp(jax.grad(self._fn("f", x)), (x,), (v,))[1]

    def hvp_at(self, x):
        """v ↦ ∇²f(x)·v for many products at one x: the gradient is linearised once
        (``jax.linearize``), after which each product is one tangent evaluation that reuses the
        stored primal values instead of recomputing the gradient."""
        _, lin = jax.linearize(jax.grad(self._fn("f", x)), x)
        return lin

    def residuals(self, x):
        return self._fn("r", x)(x)

    def num_residuals(self, x) -> int:
        """m, the length of r(x) (static; no evaluation is compiled)."""
        return int(jax.eval_shape(self._fn("r", x), x).shape[0])

    def residuals_and_jac(self, x):
        """(r(x), J(x)). J by ``jacfwd`` (n JVPs) when m ≥ n, else ``jacrev`` (m VJPs)."""
        fn = self._fn("r", x)
        if self.num_residuals(x) >= x.shape[0]:
            r, lin = jax.linearize(fn, x)
            jac = jax.vmap(lin, out_axes=1)(jnp.eye(x.shape[0], dtype=x.dtype))
            return r, jac
        r, vjp = jax.vjp(fn, x)
        jac = jax.vmap(lambda u: vjp(u)[0])(jnp.eye(r.shape[0], dtype=r.dtype))
        return r, jac

    def sum_of_squares(self, x):
        """Σ r(x)², from the residuals alone (least-squares methods use this, not ``f``, so a
        residual problem's Python function is traced once, not once more inside f)."""
        r = self.residuals(x)
        return jnp.sum(r * r)


class State(NamedTuple):
    """Per-start optimizer state. ``aux`` holds method-specific arrays.

    ``nfev``/``njev``/``nhev``/``nhvp`` count the evaluations the method uses (f or residuals;
    gradient or Jacobian; Hessian; Hessian-vector product), as scipy counts them: a trust-region
    step that is rejected costs one f, the gradient at an accepted point one more. Under ``vmap``
    the compiled program may compute a rejected point's gradient as well (both sides of a
    conditional run there); that speculative work is not counted.
    """

    x: Any
    f: Any
    g: Any
    nfev: Any
    njev: Any
    nhev: Any
    nhvp: Any
    status: Any
    step: Any   # accepted step length (line search) or trust-region radius
    rho: Any    # trust-region ratio actual/predicted reduction (NaN for other methods)
    aux: Any = ()


def initial_state(oracle: Oracle, x0, aux=(), nfev=1, njev=1, f=None, g=None) -> State:
    """A State at x0 with f and gradient evaluated (counted as one f and one gradient)."""
    if f is None or g is None:
        f, g = oracle.value_and_grad(x0)
    i = jnp.int32
    return State(x=x0, f=f, g=g, nfev=i(nfev), njev=i(njev), nhev=i(0), nhvp=i(0),
                 status=i(STATUS_RUNNING), step=jnp.ones((), x0.dtype), rho=jnp.full((), jnp.nan, x0.dtype),
                 aux=aux)


def round_off_step(x_new, x_old):
    """True where the step x_old → x_new is at round-off level, ‖Δx‖ ≤ 10ε‖x_old‖ (ε of x's
    dtype; the floor of Levenberg-Marquardt's stall test). For a method whose step estimates the
    distance to the solution (Newton-Raphson, Gauss-Newton), x is then as exact as the precision
    allows and the next steps only repeat it or jitter it by an ulp. False where Δx is not
    finite (that start diverges)."""
    eps = jnp.finfo(x_old.dtype).eps
    return jnp.linalg.norm(x_new - x_old) <= 10.0 * eps * jnp.linalg.norm(x_old)


def fixed_point(new, old):
    """True where every leaf of ``new`` equals ``old`` exactly: a deterministic step that
    maps its state to itself repeats forever (gradient descent or momentum whose update rounds
    away at x). NaN never equals itself, so a diverging state is not a fixed point."""
    leaves = [jnp.all(a == b) for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old))]
    return jnp.stack(leaves).all() if len(leaves) > 1 else leaves[0]


def stall_where(pred, s: "State") -> "State":
    """``s`` with status ``stalled`` where ``pred`` holds and the step set no other status."""
    return s._replace(status=jnp.where(pred & (s.status == STATUS_RUNNING), STATUS_STALLED, s.status)
                      .astype(s.status.dtype))


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
    """A named optimizer: pure ``init``/``step`` plus its hyperparameters.

    ``needs_residuals``: the method works on r and J (Gauss-Newton, Levenberg-Marquardt) and
    refuses problems without residuals. ``spec`` is the canonical spec string.
    """

    name: str
    init: Callable
    step: Callable
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    needs_residuals: bool = False
    spec: str = ""
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise OptbenchError(f"an optimizer needs a non-empty name, got {self.name!r}")
        if not (callable(self.init) and callable(self.step)):
            raise OptbenchError(f"optimizer {self.name!r}: init and step must be callable")
        if not self.spec:   # one built by hand is named by its name (results, trace files)
            object.__setattr__(self, "spec", self.name)


def where_state(pred, a, b):
    """Select pytree a where pred holds, else b, leaf by leaf. ``pred`` may carry leading batch
    axes (shape (B,)); it is broadcast against each leaf's trailing axes."""
    def sel(u, v):
        return jnp.where(jnp.reshape(pred, jnp.shape(pred) + (1,) * (jnp.ndim(u) - jnp.ndim(pred))), u, v)
    return jax.tree_util.tree_map(sel, a, b)


# -- loops over many starts at once -------------------------------------------------------------
_LANE_AXIS: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar("optbench_lane_axis", default=None)
_LANE_COMPACT: "contextvars.ContextVar[bool]" = contextvars.ContextVar("optbench_lane_compact", default=False)

#: where allowed (``lane_axis(..., compact=True)``), :func:`lanes_while` over at least
#: ``COMPACT_MIN`` lanes compacts: once at most 1/``COMPACT_SHRINK`` of them still run, it gathers
#: those into a batch that size, finishes there and scatters back. ``COMPACT_LEVELS`` nested
#: compactions at most (each a further ``COMPACT_SHRINK``, while the batch keeps
#: ``COMPACT_MIN // COMPACT_SHRINK`` lanes). Measured (2-D Rosenbrock, 10⁴ starts, pack=True,
#: in one process): one level took bfgs to 0.75×, lbfgs 0.93×, newton-cg 0.78× the time for
#: +0.4-0.7 s of compile; two and three levels gained at most 0.03 more for +0.5 s each.
COMPACT_MIN = 2048
COMPACT_SHRINK = 4
COMPACT_LEVELS = 1


@contextlib.contextmanager
def lane_axis(name: str, compact: bool = False):
    """While tracing under ``jax.vmap(..., axis_name=name)`` over starts (the driver does this),
    let :func:`lanes_while` loops see the batch; ``compact``: they may gather their running
    lanes into a smaller batch (the driver allows it for a batch on one device)."""
    token = _LANE_AXIS.set(name)
    token_c = _LANE_COMPACT.set(bool(compact))
    try:
        yield
    finally:
        _LANE_COMPACT.reset(token_c)
        _LANE_AXIS.reset(token)


def take_if(pred, new, old):
    """``new()`` where ``pred`` holds, else ``old`` (pytrees of the same structure): a step's
    accept-or-keep choice. For one start (outside the driver's ``vmap``) a ``lax.cond``, so that
    what ``new`` computes — typically the gradient at the accepted point — is computed once, in
    the branch taken, and writes the carried buffers directly: as a select, XLA's CPU backend
    fused that computation into each of its consumers and copied the loop's x and g to keep the
    old values readable (Newton-CG with Armijo steps on extended Rosenbrock, n = 10⁵: 0.76× the
    time; gradient descent with Armijo steps 0.53×). Under the driver's ``vmap`` a select
    (``jnp.where``), as a batched ``cond`` runs both branches anyway and cost more (1.24× on
    10³ 2-D starts). Off the CPU a select as well: a GPU conditional reads its predicate on the
    host, one more synchronisation per iteration, and the fusion behaviour above was measured on
    the CPU only (``lax.platform_dependent`` picks the form when the program is lowered)."""
    if _LANE_AXIS.get() is not None:
        return where_state(pred, new(), old)
    return jax.lax.platform_dependent(pred, cpu=lambda p: jax.lax.cond(p, new, lambda: old),
                                      default=lambda p: where_state(p, new(), old))


def lanes_while(cond, body, init, keep):
    """``lax.while_loop(cond, body, init)`` for one start, cheaper when the driver maps it over
    many starts.

    Under ``vmap`` a ``while_loop`` whose condition differs between starts runs until every start
    is done and, after each trip, selects every carried value per start (old where the start had
    finished, new where it had not). Most of those selects are wasted: once a start is done only
    the values it returns must stay put. Here the trip condition is the maximum of ``cond`` over
    the batch (``pmax`` over the driver's axis, so the loop's predicate is one value) and only
    the carried values named in ``keep`` are frozen once a start's ``cond`` fails: field names of
    a NamedTuple carry, or positions in a tuple. ``keep`` must hold whatever decides ``cond`` and
    whatever the caller reads after the loop. Outside the driver's ``vmap`` (one start, or no
    driver) this is exactly ``lax.while_loop``. Where the driver allows it (``pack=True``) a
    large batch also narrows the loop to its running lanes (:func:`_compacting_while`).
    """
    axis = _LANE_AXIS.get()
    if axis is None:
        return jax.lax.while_loop(cond, body, init)
    if _LANE_COMPACT.get():
        return _compacting_while(cond, body, init, keep)

    def any_active(c):
        return jax.lax.pmax(cond(c), axis)

    def step(c):
        active = cond(c)
        new = body(c)
        if hasattr(new, "_fields"):
            return new._replace(**{k: jnp.where(active, getattr(new, k), getattr(c, k)) for k in keep})
        return tuple(jnp.where(active, a, b) if i in keep else a for i, (a, b) in enumerate(zip(new, c)))

    return jax.lax.while_loop(any_active, step, init)


def _keep_leaves(init, keep):
    """Flat-leaf positions of the carried values named in ``keep`` (see :func:`lanes_while`)."""
    if hasattr(init, "_fields"):
        parts = [(k, getattr(init, k)) for k in init._fields]
    else:
        parts = list(enumerate(init))
    out, i = set(), 0
    for k, v in parts:
        n = len(jax.tree_util.tree_leaves(v))
        if k in keep:
            out.update(range(i, i + n))
        i += n
    return out


def running_first(active):
    """A stable partition of a batch's lanes, the ``active`` ones first (each part in lane order):
    ``order[i]`` is the lane to put in slot i. A prefix sum and one scatter (an argsort of 10⁴
    keys cost 1.2 ms here). Used by compacting loops and by the driver's packed loop."""
    b = active.shape[0]
    lane = jnp.arange(b, dtype=jnp.int32)
    before = jnp.cumsum(active, dtype=jnp.int32)     # active lanes up to and including each lane
    dest = jnp.where(active, before - 1, before[-1] + lane - before)
    return jnp.zeros_like(lane).at[dest].set(lane, unique_indices=True)


def _running_first(active, k: int):
    """The first ``k`` slots of :func:`running_first`: the running lanes, then finished ones."""
    return running_first(active)[:k]


def _compacting_while(cond, body, init, keep):
    """:func:`lanes_while` that, over a large batch, narrows the loop to its running lanes.

    Under ``vmap`` a loop runs until its slowest lane is done, every trip costing the whole
    batch: a strong-Wolfe search on 10⁴ 2-D Rosenbrock starts ran 4.3 trips per iteration for
    1.3 trials per start. Here the loop is a ``custom_vmap`` whose batched rule sees the batch:
    it steps the whole batch while more than 1/:data:`COMPACT_SHRINK` of it runs, then gathers
    the running lanes (and what the loop reads per lane) into a batch of that size, finishes
    there (compacting again inside it, up to :data:`COMPACT_LEVELS` times, while it is large) and
    scatters the ``keep`` values back (the other carried values of those lanes stay as they were at
    the gather: the caller reads only ``keep``).
    Each lane takes the same trips as in the plain loop; only the batch it shares them with is
    smaller. What the loop body and condition close over (the start's x, d, the problem's data)
    becomes explicit arguments, so the rule sees which of it is per lane."""
    from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

    leaves, tree = jax.tree_util.tree_flatten(init)
    avals = []
    for leaf in leaves:
        t = jax.typeof(leaf)
        avals.append(jax.ShapeDtypeStruct(t.shape, t.dtype, weak_type=getattr(t, "weak_type", False)))
    body_j = jax.make_jaxpr(lambda *c: jax.tree_util.tree_leaves(body(jax.tree_util.tree_unflatten(tree, c))))(*avals)
    cond_j = jax.make_jaxpr(lambda *c: cond(jax.tree_util.tree_unflatten(tree, c)))(*avals)
    kept = _keep_leaves(init, keep)

    def body_fn(bk, c):
        return jaxpr_as_fun(ClosedJaxpr(body_j.jaxpr, bk))(*c)

    def cond_fn(ck, c):
        return jaxpr_as_fun(ClosedJaxpr(cond_j.jaxpr, ck))(*c)[0]

    @jax.custom_batching.custom_vmap
    def loop(bk, ck, c):
        return jax.lax.while_loop(lambda c: cond_fn(ck, c), lambda c: body_fn(bk, c), c)

    @loop.def_vmap
    def _batched(size, in_batched, bk, ck, c):
        bb, cb, ib = in_batched
        c = [a if b else jnp.broadcast_to(a, (size,) + jnp.shape(a)) for a, b in zip(c, ib)]
        axes_b = [0 if b else None for b in bb]
        axes_c = [0 if b else None for b in cb]
        cond_v = jax.vmap(cond_fn, in_axes=(axes_c, 0))
        body_v = jax.vmap(body_fn, in_axes=(axes_b, 0))

        def run(bk, ck, c, cap):
            """Trips over the whole (sub)batch while more than ``cap`` of its lanes run."""
            def trip(c):
                active = cond_v(ck, c)
                new = body_v(bk, c)
                return [where_state(active, a, o) if i in kept else a for i, (a, o) in enumerate(zip(new, c))]
            return jax.lax.while_loop(lambda c: jnp.sum(cond_v(ck, c), dtype=jnp.int32) > cap, trip, c)

        def level(bk, ck, c, b, depth=0):
            k = b // COMPACT_SHRINK
            if depth >= COMPACT_LEVELS or b < COMPACT_MIN // (1 if b == size else COMPACT_SHRINK) or k < 1:
                return run(bk, ck, c, 0)
            c = run(bk, ck, c, k)

            def narrow(c):
                idx = _running_first(cond_v(ck, c), k)
                sub = level([a[idx] if f else a for a, f in zip(bk, bb)], [a[idx] if f else a for a, f in zip(ck, cb)],
                            [a[idx] for a in c], k, depth + 1)
                return [a.at[idx].set(s, unique_indices=True) if i in kept else a
                        for i, (a, s) in enumerate(zip(c, sub))]
            return jax.lax.cond(jnp.any(cond_v(ck, c)), narrow, lambda c: list(c), c)

        out = level(list(bk), list(ck), c, size)
        return out, [True] * len(out)

    out = loop(list(body_j.consts), list(cond_j.consts), list(leaves))
    return jax.tree_util.tree_unflatten(tree, out)
