"""Step-size rules shared by every line-search method.

Armijo backtracking (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.1): accept the
first α = α₀ρᵏ with f(x + αd) ≤ f(x) + c₁ α ∇f·d. Written as a ``lax.while_loop`` so it runs
compiled and vmapped; every trial costs one f-evaluation, counted.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class LineSearchResult(NamedTuple):
    alpha: jnp.ndarray   # accepted step (0 if failed)
    f_new: jnp.ndarray   # f(x + alpha d)
    nfev: jnp.ndarray    # f-evaluations spent
    ok: jnp.ndarray      # a sufficient decrease was found


def armijo_backtracking(f, x, fx, slope, d, alpha0, c1=1e-4, shrink=0.5, max_steps=60) -> LineSearchResult:
    """Backtrack from ``alpha0`` along ``d`` until the Armijo condition holds.

    ``slope`` = ∇f(x)·d must be negative (a descent direction); otherwise the search fails at
    once. Non-finite trial values count as failures of the condition, so the search backs off
    from overflow instead of accepting it.
    """
    dtype = x.dtype

    def accepted(alpha, ft):
        return jnp.isfinite(ft) & (ft <= fx + c1 * alpha * slope)

    def cond(c):
        alpha, ft, n = c
        return (~accepted(alpha, ft)) & (n < max_steps)

    def body(c):
        alpha, _, n = c
        alpha = alpha * shrink
        return alpha, f(x + alpha * d), n + 1

    alpha0 = jnp.asarray(alpha0, dtype)
    f0 = f(x + alpha0 * d)
    alpha, ft, n = jax.lax.while_loop(cond, body, (alpha0, f0, jnp.int32(1)))
    ok = accepted(alpha, ft) & (slope < 0)
    return LineSearchResult(jnp.where(ok, alpha, 0.0).astype(dtype), jnp.where(ok, ft, fx), n, ok)
