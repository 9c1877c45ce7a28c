"""Trust-region Newton methods: the exact (Moré–Sorensen) subproblem for small n, and
Steihaug-CG on Hessian-vector products (trust-ncg) for large n.

Each iteration minimises the quadratic model m(p) = f + gᵀp + ½pᵀHp within ‖p‖ ≤ Δ, evaluates f
at x + p, and compares: ρ = (f(x) − f(x + p)) / (m(0) − m(p)), the ratio of actual to predicted
reduction, says how good the Taylor model was. The step is taken when ρ > η and Δ adapts to ρ
(Nocedal & Wright Alg. 4.1). Both methods log ρ in ``State.rho`` and the radius in
``State.step``. Unlike a line search on the Newton direction, the model's minimiser in the
region follows negative curvature, so these methods leave saddle points.

Counting: a rejected trial costs one f-evaluation. The gradient (and Hessian) at the trial
point is counted only when the step is accepted, which is when the method uses it, as scipy
counts; under ``vmap`` the compiled program computes it for every lane anyway, because both
branches of a conditional run there.
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from . import krylov
from .base import STATUS_STALLED, Optimizer, State, initial_state, take_if
from .dense import trust_region_subproblem


def update_radius(radius, rho, step_norm, hits_boundary, max_radius):
    """The radius update of Nocedal & Wright's Alg. 4.1: when ρ < ¼ shrink to a quarter of the
    step's length, ¼·min(‖p‖, Δ) (scipy's trust-region methods shrink Δ itself, ¼Δ, which is the
    same for a step on the boundary and larger for an interior one); double (up to
    ``max_radius``) when ρ > ¾ and the step reached the boundary; else keep Δ. A non-finite ρ
    (overflow at the trial point) counts as ρ < ¼."""
    bad = ~(rho >= 0.25)
    grow = (rho > 0.75) & hits_boundary
    return jnp.where(bad, 0.25 * jnp.minimum(step_norm, radius),
                     jnp.where(grow, jnp.minimum(2.0 * radius, max_radius), radius))


def _check(method, initial_radius, max_radius, eta):
    if not (0 < initial_radius <= max_radius and 0 <= eta < 0.25):
        raise OptbenchError(f"{method}: need 0 < initial_radius <= max_radius and 0 <= eta < 0.25")


def _ratio(f_old, f_new, pred):
    """ρ, with the predicted reduction guarded (a zero model decrease gives ρ = NaN)."""
    return jnp.where(pred > 0, (f_old - f_new) / jnp.where(pred > 0, pred, 1.0), jnp.nan)


def _failed_if(bad_point, rho):
    """ρ for the radius update: a trial point whose f or gradient is not finite cannot be moved
    to, so it counts as a failed trial (ρ < ¼) whatever ρ says. Otherwise a good ρ there kept (or
    doubled) Δ, the next subproblem returned the same step, and the start repeated that rejected
    trial until max_iter (f(x) = x² + 0·√|x| from x = 1: the Newton step lands on x = 0, where
    f is finite and its gradient NaN)."""
    return jnp.where(bad_point, -jnp.inf, rho)


def _stalled(radius, x):
    """The region has shrunk below round-off around x: no further step can be resolved."""
    return radius <= 10.0 * jnp.finfo(x.dtype).eps * (1.0 + jnp.linalg.norm(x))


def trust_region(initial_radius: float = 1.0, max_radius: float = 1000.0, eta: float = 0.15) -> Optimizer:
    """Trust-region Newton with the exact subproblem solution (Moré & Sorensen 1983, SIAM J. Sci.
    Stat. Comput. 4:553; N&W §4.3): each step is the global minimiser of the model in the region,
    found from one eigen-decomposition of the Hessian (closed form for n ≤ 2), including the hard
    case. For small n (one dense n×n Hessian per iteration).

    ``initial_radius``/``max_radius``: Δ₀ and its cap; ``eta``: smallest ρ for which a step is
    accepted (scipy's defaults: 1, 1000, 0.15). Per iteration one f; per accepted step one
    gradient and one Hessian.
    """
    _check("trust-region", initial_radius, max_radius, eta)

    def init(oracle, x0):
        f, g, h = oracle.value_grad_hess(x0)
        s = initial_state(oracle, x0, aux=(h,), f=f, g=g)
        return s._replace(nhev=jnp.int32(1), step=jnp.asarray(initial_radius, x0.dtype))

    def step(oracle, s: State) -> State:
        (h,) = s.aux
        radius = s.step
        p, pred, _, bnd = trust_region_subproblem(h, s.g, radius)
        x_t = s.x + p
        f_t, g_t, h_t = oracle.value_grad_hess(x_t)
        rho = _ratio(s.f, f_t, pred)
        fin = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
        accept = (rho > eta) & fin
        radius = update_radius(radius, _failed_if(~fin, rho), jnp.linalg.norm(p), bnd, max_radius).astype(radius.dtype)
        acc = accept.astype(jnp.int32)
        status = jnp.where(~accept & _stalled(radius, s.x), STATUS_STALLED, s.status).astype(s.status.dtype)
        return s._replace(x=jnp.where(accept, x_t, s.x), f=jnp.where(accept, f_t, s.f), g=jnp.where(accept, g_t, s.g),
                          nfev=s.nfev + 1, njev=s.njev + acc, nhev=s.nhev + acc, status=status, step=radius,
                          rho=rho.astype(s.x.dtype), aux=(jnp.where(accept, h_t, h),))

    return Optimizer("trust-region", init, step, {"initial_radius": initial_radius, "max_radius": max_radius,
                                                  "eta": eta},
                     description="trust-region Newton, exact (More-Sorensen) subproblem")


def trust_ncg(initial_radius: float = 1.0, max_radius: float = 1000.0, eta: float = 0.15, max_cg: int = 0) -> Optimizer:
    """Trust-region Newton-CG: the subproblem solved by Steihaug-CG on Hessian-vector products
    (Steihaug 1983; N&W Alg. 7.2), to the forcing tolerance min(0.5, √‖g‖)‖g‖. Never forms the
    Hessian: memory and work are O(n) per product, so it runs at n = 10⁶.

    ``initial_radius``/``max_radius``/``eta`` as for ``trust-region``; ``max_cg``: CG iterations
    per step (0 = automatic, min(2n, 500)). Per iteration one f and the CG's products; per
    accepted step one gradient.
    """
    _check("trust-ncg", initial_radius, max_radius, eta)
    if max_cg < 0:
        raise OptbenchError("trust-ncg: max_cg must be >= 0")

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        return s._replace(step=jnp.asarray(initial_radius, x0.dtype))

    def step(oracle, s: State) -> State:
        n = s.x.shape[0]
        cap = max_cg if max_cg > 0 else min(2 * n, 500)
        radius = s.step
        p, pred, nprod, bnd = krylov.steihaug_cg(oracle.hvp_at(s.x), s.g, radius, krylov.forcing_tolerance(s.g), cap)
        x_t = s.x + p
        f_t = oracle.f(x_t)
        rho = _ratio(s.f, f_t, pred)
        good = (rho > eta) & jnp.isfinite(f_t)

        def accepted():   # the gradient only where the step is taken (and it must be finite)
            x_n = s.x + p   # formed here, not x_t: the branch writes it instead of copying x_t
            g_n = oracle.grad(x_n)
            fin = jnp.all(jnp.isfinite(g_n))
            return jnp.where(fin, x_n, s.x), jnp.where(fin, f_t, s.f), jnp.where(fin, g_n, s.g), fin
        # for one start a branch: the new point's gradient is computed once and written in place
        # (as selects: n = 10⁵, 0.95× the time)
        x_n, f_n, g_n, accept = take_if(good, accepted, (s.x, s.f, s.g, jnp.asarray(False)))
        radius = update_radius(radius, _failed_if(good & ~accept, rho), jnp.linalg.norm(p), bnd,
                               max_radius).astype(radius.dtype)
        # x_n is s.x wherever the step was rejected (reading s.x here kept it alive past the new x,
        # which XLA then copied every iteration)
        status = jnp.where(~accept & _stalled(radius, x_n), STATUS_STALLED, s.status).astype(s.status.dtype)
        return s._replace(x=x_n, f=f_n, g=g_n,
                          nfev=s.nfev + 1, njev=s.njev + good.astype(jnp.int32), nhvp=s.nhvp + nprod,
                          status=status, step=radius, rho=rho.astype(s.x.dtype))

    return Optimizer("trust-ncg", init, step, {"initial_radius": initial_radius, "max_radius": max_radius, "eta": eta,
                                               "max_cg": max_cg},
                     description="trust-region Newton-CG (Steihaug), Hessian-vector products")
