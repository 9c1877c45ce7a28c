"""First-order methods: gradient descent with a fixed step and with Armijo backtracking.

Steepest descent x_{k+1} = x_k − α ∇f(x_k) (Cauchy 1847; Nocedal & Wright §3.1–3.3). With a fixed
step α on a quadratic with Hessian eigenvalues λ_i, the error along eigenvector i contracts by
exactly |1 − αλ_i| per step; α = 2/(L + μ) gives the best worst-case rate (κ − 1)/(κ + 1).
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import STATUS_LINESEARCH_FAILED, Optimizer, State, initial_state
from .linesearch import armijo_backtracking


def gd(lr: float = 1e-3) -> Optimizer:
    """Gradient descent with fixed learning rate ``lr``: one f+gradient evaluation per step."""
    if not lr > 0:
        raise OptbenchError(f"gd: lr must be positive, got {lr}")

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        x = s.x - lr * s.g
        f, g = oracle.value_and_grad(x)
        return s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1,
                          step=jnp.asarray(lr, s.x.dtype))

    return Optimizer("gd", init, step, {"lr": lr}, description="gradient descent, fixed step")


def gd_linesearch(c1: float = 1e-4, shrink: float = 0.5, grow: float = 2.0, max_backtracks: int = 60) -> Optimizer:
    """Steepest descent with Armijo backtracking (N&W Alg. 3.1).

    The first trial step is ``grow`` × the previous accepted step (1 at the start), so the search
    adapts to the function's scale instead of re-shrinking from 1 every iteration.
    """
    if not (0 < c1 < 1 and 0 < shrink < 1 and grow >= 1 and max_backtracks >= 1):
        raise OptbenchError("gd-linesearch: need 0 < c1 < 1, 0 < shrink < 1, grow >= 1, max_backtracks >= 1")

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        d = -s.g
        ls = armijo_backtracking(oracle.f, s.x, s.f, jnp.vdot(s.g, d), d, s.step * grow, c1, shrink, max_backtracks)
        x = s.x + ls.alpha * d
        g = oracle.grad(x)  # f(x) is known from the line search
        return s._replace(x=x, f=ls.f_new, g=g, nfev=s.nfev + ls.nfev, njev=s.njev + 1,
                          step=jnp.where(ls.ok, ls.alpha, s.step),
                          status=jnp.where(ls.ok, s.status, STATUS_LINESEARCH_FAILED).astype(s.status.dtype))

    return Optimizer("gd-linesearch", init, step, {"c1": c1, "shrink": shrink, "grow": grow,
                                                   "max_backtracks": max_backtracks},
                     description="steepest descent, Armijo backtracking")
