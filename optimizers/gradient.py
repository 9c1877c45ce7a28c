"""First-order methods: steepest descent (fixed step, Armijo, strong Wolfe), heavy-ball momentum,
Nesterov's accelerated gradient, and nonlinear conjugate gradient (Polak–Ribière+).

Steepest descent x_{k+1} = x_k − α ∇f(x_k) (Cauchy 1847; Nocedal & Wright §3.1–3.3). With a fixed
step α on a quadratic with Hessian eigenvalues λ_i, the error along eigenvector i contracts by
exactly |1 − αλ_i| per step; α = 2/(L + μ) gives the best worst-case rate (κ − 1)/(κ + 1).
Momentum methods reach (√κ − 1)/(√κ + 1) (heavy ball, on quadratics) and 1 − 1/√κ (Nesterov)
with the parameters their theorems prescribe; see each factory.
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from . import linesearch as ls
from .base import STATUS_LINESEARCH_FAILED, Optimizer, State, fixed_point, initial_state, stall_where


def gd(lr: float = 1e-3) -> Optimizer:
    """Gradient descent with fixed learning rate ``lr``: one f+gradient evaluation per step. A
    step that leaves x exactly as it was (lr·∇f rounds away at x) would repeat forever: the start
    ends ``stalled``."""
    if not lr > 0:
        raise OptbenchError(f"gd: lr must be positive, got {lr}")

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        x = s.x - lr * s.g
        f, g = oracle.value_and_grad(x)
        return stall_where(fixed_point(x, s.x), s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1,
                                                            step=jnp.asarray(lr, s.x.dtype)))

    return Optimizer("gd", init, step, {"lr": lr}, description="gradient descent, fixed step")


def gd_linesearch(c1: float = 1e-4, shrink: float = 0.5, grow: float = 2.0, max_backtracks: int = 60) -> Optimizer:
    """Steepest descent with Armijo backtracking (N&W Alg. 3.1).

    ``c1``: sufficient-decrease constant; ``shrink``: largest backtracking factor (trials are
    quadratic-interpolated within [0.1, shrink]); ``grow``: the first trial step is ``grow`` ×
    the previous accepted step (1 at the start), so the search adapts to the function's scale
    instead of re-shrinking from 1 every iteration; ``max_backtracks``: trials per iteration.
    """
    if not (0 < c1 < 1 and 0 < shrink < 1 and grow >= 1 and max_backtracks >= 1):
        raise OptbenchError("gd-linesearch: need 0 < c1 < 1, 0 < shrink < 1, grow >= 1, max_backtracks >= 1")

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        res = ls.search("armijo", oracle, s.x, s.f, s.g, -s.g, s.step * grow, c1=c1, shrink=shrink,
                        max_evals=max_backtracks)
        return ls.apply(s, res)

    return Optimizer("gd-linesearch", init, step, {"c1": c1, "shrink": shrink, "grow": grow,
                                                   "max_backtracks": max_backtracks},
                     description="steepest descent, Armijo backtracking")


def gd_wolfe(c1: float = 1e-4, c2: float = 0.9, max_evals: int = 30) -> Optimizer:
    """Steepest descent with a strong-Wolfe zoom line search (N&W Alg. 3.5/3.6).

    The first trial step follows N&W eq. 3.60: α₀ = α_{k−1} ∇f_{k−1}ᵀd_{k−1} / ∇f_kᵀd_k (the
    step that repeats last iteration's first-order decrease); ``c1``/``c2`` are the Wolfe
    constants, ``max_evals`` the f+gradient evaluations allowed per search.
    """
    if not (0 < c1 < c2 < 1 and max_evals >= 1):
        raise OptbenchError("gd-wolfe: need 0 < c1 < c2 < 1 and max_evals >= 1")

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        return s._replace(step=ls.first_step(s.g), aux=(jnp.vdot(s.g, s.g),))

    def step(oracle, s: State) -> State:
        (gg_prev,) = s.aux
        gg = jnp.vdot(s.g, s.g)
        alpha0 = s.step * gg_prev / jnp.where(gg > 0, gg, 1.0)
        res = ls.search("wolfe", oracle, s.x, s.f, s.g, -s.g, alpha0, c1=c1, c2=c2, max_evals=max_evals)
        return ls.apply(s, res, aux=(gg,))

    return Optimizer("gd-wolfe", init, step, {"c1": c1, "c2": c2, "max_evals": max_evals},
                     description="steepest descent, strong-Wolfe line search")


def momentum(lr: float = 1e-3, beta: float = 0.9) -> Optimizer:
    """Polyak's heavy ball: v ← βv − α∇f(x), x ← x + v (Polyak 1964, USSR Comput. Math. 4:1).

    On a quadratic with spectrum in [μ, L], α = 4/(√L + √μ)² and β = ((√κ − 1)/(√κ + 1))²
    give the asymptotic rate (√κ − 1)/(√κ + 1). One f+gradient evaluation per step. A step that
    leaves x and v exactly as they were would repeat forever: the start ends ``stalled``.
    """
    if not (lr > 0 and 0 <= beta < 1):
        raise OptbenchError(f"momentum: need lr > 0 and 0 <= beta < 1, got lr={lr}, beta={beta}")

    def init(oracle, x0):
        return initial_state(oracle, x0, aux=(jnp.zeros_like(x0),))

    def step(oracle, s: State) -> State:
        (v,) = s.aux
        v = beta * v - lr * s.g
        x = s.x + v
        f, g = oracle.value_and_grad(x)
        new = s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, step=jnp.asarray(lr, s.x.dtype), aux=(v,))
        return stall_where(fixed_point((x, v), (s.x, s.aux[0])), new)

    return Optimizer("momentum", init, step, {"lr": lr, "beta": beta}, description="heavy-ball momentum")


def nesterov(lr: float = 1e-3, beta: float = 0.9) -> Optimizer:
    """Nesterov's accelerated gradient with constant momentum (Nesterov 1983; *Introductory
    Lectures on Convex Optimization* 2004, scheme 2.2.19): y_k = x_k + β(x_k − x_{k−1}),
    x_{k+1} = y_k − α∇f(y_k). For μ-strongly convex f with L-Lipschitz gradient, α = 1/L and
    β = (√κ − 1)/(√κ + 1) give f(x_k) − f* ≤ (1 − 1/√κ)^k (f(x₀) − f* + μ/2‖x₀ − x*‖²).

    Implemented in the look-ahead variables (Sutskever et al. 2013; Bengio et al. 2013) so that
    the iterate reported is the point where the gradient is evaluated — one f+gradient per step:
    v ← βv − α∇f(y), y ← y + βv − α∇f(y). A step that leaves x and v exactly as they were would
    repeat forever: the start ends ``stalled``.
    """
    if not (lr > 0 and 0 <= beta < 1):
        raise OptbenchError(f"nesterov: need lr > 0 and 0 <= beta < 1, got lr={lr}, beta={beta}")

    def init(oracle, x0):
        return initial_state(oracle, x0, aux=(jnp.zeros_like(x0),))

    def step(oracle, s: State) -> State:
        (v,) = s.aux
        v = beta * v - lr * s.g
        x = s.x + beta * v - lr * s.g
        f, g = oracle.value_and_grad(x)
        new = s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, step=jnp.asarray(lr, s.x.dtype), aux=(v,))
        return stall_where(fixed_point((x, v), (s.x, s.aux[0])), new)

    return Optimizer("nesterov", init, step, {"lr": lr, "beta": beta}, description="Nesterov accelerated gradient")


def ncg(c1: float = 1e-4, c2: float = 0.1, max_evals: int = 30, restart: int = -1) -> Optimizer:
    """Nonlinear conjugate gradient, Polak–Ribière+ (Polak & Ribière 1969; Gilbert & Nocedal 1992,
    SIAM J. Optim. 2:21; N&W §5.2): d = −g + β d_prev with β = max(0, gᵀ(g − g_prev)/‖g_prev‖²),
    and a strong-Wolfe line search (``c1``, ``c2`` = 0.1 as N&W advise for CG, ``max_evals``).

    β⁺ = max(β, 0) restarts along −g whenever PR would go astray; a direction that is not a
    descent direction (possible with an inexact search) is also replaced by −g, and so is every
    ``restart``-th direction: −1 (default) every max(n, 10) iterations — the n-step restart that
    restores CG's finite termination on quadratics (N&W §5.2), not more often than every 10 so a
    2-D problem does not degrade to steepest descent — 0 never, k > 0 every k. A failed search
    along a CG direction retries along −g before the start is declared failed. First trial step:
    α₀ = min(1, 1.01·2(f_k − f_{k−1})/∇f_kᵀd_k) (N&W eq. 3.60, as scipy's CG).
    """
    if not (0 < c1 < c2 < 1 and max_evals >= 1 and restart >= -1):
        raise OptbenchError("ncg: need 0 < c1 < c2 < 1, max_evals >= 1, restart >= -1")

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        # aux: previous direction, previous gradient, iterations since restart, previous f
        return s._replace(step=ls.first_step(s.g), aux=(jnp.zeros_like(x0), s.g, jnp.int32(0), s.f))

    def step(oracle, s: State) -> State:
        d_prev, g_prev, k, f_prev = s.aux
        n = s.x.shape[0]
        every = max(n, 10) if restart == -1 else restart
        gg_prev = jnp.vdot(g_prev, g_prev)
        beta = jnp.maximum(0.0, jnp.vdot(s.g, s.g - g_prev) / jnp.where(gg_prev > 0, gg_prev, 1.0))
        fresh = (k == 0) | ((k % every == 0) if every > 0 else False)
        d = jnp.where(fresh, -s.g, -s.g + beta * d_prev)
        slope = jnp.vdot(s.g, d)
        bad = ~(slope < -1e-12 * jnp.linalg.norm(s.g) * jnp.linalg.norm(d)) | ~jnp.isfinite(slope)
        d = jnp.where(bad, -s.g, d)
        sd = fresh | bad
        slope = jnp.where(bad, -jnp.vdot(s.g, s.g), slope)
        alpha0 = jnp.where(k == 0, s.step, jnp.minimum(1.0, 1.01 * 2.0 * (s.f - f_prev) / slope))
        alpha0 = jnp.where(alpha0 > 0, alpha0, s.step)
        res = ls.search("wolfe", oracle, s.x, s.f, s.g, d, alpha0, c1=c1, c2=c2, max_evals=max_evals)
        # a failed search along a CG direction: restart along −g next time instead of giving up
        give_up = ~res.moved & sd
        new = ls.apply(s, res, fail_status=False)
        status = jnp.where(give_up, STATUS_LINESEARCH_FAILED, s.status).astype(s.status.dtype)
        k_next = jnp.where(res.moved, k + 1, 0)
        return new._replace(status=status, aux=(d, s.g, k_next, s.f))

    return Optimizer("ncg", init, step, {"c1": c1, "c2": c2, "max_evals": max_evals, "restart": restart},
                     description="nonlinear conjugate gradient, Polak-Ribiere+, strong Wolfe")
