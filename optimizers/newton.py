"""Newton's method for minimisation: the plain Newton-Raphson step and the globalised variant.

Newton-Raphson on ∇f = 0: x_{k+1} = x_k − ∇²f(x_k)⁻¹ ∇f(x_k), the minimiser of the local
second-order Taylor model. Converges quadratically near a minimiser with positive definite
Hessian, but is attracted to saddles and maxima and may diverge from far away; it is kept
unsafeguarded as the textbook method. ``newton`` adds the two standard safeguards (Nocedal &
Wright §3.4–3.5): a Hessian modification so the direction always descends, and Armijo
backtracking from the unit step.
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import STATUS_LINESEARCH_FAILED, STATUS_SINGULAR, Optimizer, State, initial_state
from .dense import modified_newton_direction, solve
from .linesearch import armijo_backtracking


def newton_raphson() -> Optimizer:
    """Plain Newton-Raphson: full step −H⁻¹g, no line search, no Hessian fix.

    A singular Hessian (non-finite step) ends the start with status ``singular``.
    """

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        h = oracle.hess(s.x)
        d = -solve(h, s.g)
        ok = jnp.all(jnp.isfinite(d))
        x = jnp.where(ok, s.x + d, s.x)
        f, g = oracle.value_and_grad(x)
        return s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, nhev=s.nhev + 1,
                          status=jnp.where(ok, s.status, STATUS_SINGULAR).astype(s.status.dtype))

    return Optimizer("newton-raphson", init, step, {}, description="plain Newton step, no safeguards")


def newton(c1: float = 1e-4, shrink: float = 0.5, max_backtracks: int = 60, eig_floor: float = 1e-8) -> Optimizer:
    """Newton with a Hessian fix (eigenvalues → max(|λ|, δ)) and Armijo backtracking from α = 1.

    Per iteration: one Hessian, one gradient, and one f-evaluation per line-search trial.
    """
    if not (0 < c1 < 0.5 and 0 < shrink < 1 and max_backtracks >= 1 and eig_floor > 0):
        raise OptbenchError("newton: need 0 < c1 < 0.5, 0 < shrink < 1, max_backtracks >= 1, eig_floor > 0")

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        h = oracle.hess(s.x)
        d, _ = modified_newton_direction(h, s.g, rel_floor=eig_floor)
        ls = armijo_backtracking(oracle.f, s.x, s.f, jnp.vdot(s.g, d), d, 1.0, c1, shrink, max_backtracks)
        x = s.x + ls.alpha * d
        g = oracle.grad(x)
        return s._replace(x=x, f=ls.f_new, g=g, nfev=s.nfev + ls.nfev, njev=s.njev + 1, nhev=s.nhev + 1,
                          step=ls.alpha,
                          status=jnp.where(ls.ok, s.status, STATUS_LINESEARCH_FAILED).astype(s.status.dtype))

    return Optimizer("newton", init, step, {"c1": c1, "shrink": shrink, "max_backtracks": max_backtracks,
                                            "eig_floor": eig_floor},
                     description="Newton, eigenvalue-modified Hessian + Armijo backtracking")
