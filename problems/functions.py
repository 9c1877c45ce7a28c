"""Classic smooth test functions with known minima.

Sources: Rosenbrock (1960), "An automatic method for finding the greatest or least value of a
function", Comput. J. 3:175–184 — the n-dim form Σ 100(x_{i+1} − x_i²)² + (1 − x_i)² with
minimum 0 at (1, …, 1) and the standard start (−1.2, 1, −1.2, 1, …); Himmelblau (1972),
"Applied Nonlinear Programming", four minima of value 0.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import Problem
from .registry import register


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptbenchError(msg)


@register("rosenbrock")
def rosenbrock(dim: int = 2) -> Problem:
    """Rosenbrock's banana valley, n-dim chained form; f* = 0 at (1, …, 1), x0 = (−1.2, 1, …)."""
    _need(dim >= 2, f"rosenbrock needs dim >= 2, got {dim}")

    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x0 = np.where(np.arange(dim) % 2 == 0, -1.2, 1.0)
    return Problem(name="rosenbrock", f=f, x0=x0, f_star=0.0, x_star=np.ones(dim),
                   bounds=(-2.0 * np.ones(dim), 2.0 * np.ones(dim)), tags=("classic", "nonconvex", "scalable"),
                   description="Σ 100(x_{i+1} − x_i²)² + (1 − x_i)²")


_HIMMELBLAU_MINIMA = (
    # (3, 2) is exact; the other three are roots of the gradient found to full double precision
    # by Newton's method on ∇f (the values quoted in Himmelblau 1972 to 6 digits agree).
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)


@register("himmelblau")
def himmelblau() -> Problem:
    """Himmelblau's function (x² + y − 11)² + (x + y² − 7)²; four global minima, f* = 0."""

    def residuals(x):
        return jnp.stack([x[0] ** 2 + x[1] - 11.0, x[0] + x[1] ** 2 - 7.0])

    return Problem(name="himmelblau", residuals=residuals, x0=np.array([0.0, 0.0]), f_star=0.0,
                   x_star=np.array(_HIMMELBLAU_MINIMA[0]), minima=[np.array(m) for m in _HIMMELBLAU_MINIMA[1:]],
                   bounds=(np.array([-5.0, -5.0]), np.array([5.0, 5.0])), tags=("classic", "nonconvex", "least-squares"),
                   description="(x² + y − 11)² + (x + y² − 7)²")


@register("quadratic")
def quadratic(dim: int = 2, cond: float = 100.0, rotate: bool = True, seed: int = 0) -> Problem:
    """Convex quadratic ½ (x − 1)ᵀ A (x − 1), A with eigenvalues log-spaced in [1, cond]; f* = 0 at x = 1.

    With ``rotate`` the eigenvectors are a random orthogonal basis (seeded), else the axes.
    """
    _need(dim >= 1, f"quadratic needs dim >= 1, got {dim}")
    _need(cond >= 1.0, f"quadratic needs cond >= 1, got {cond}")
    lam = np.logspace(0.0, np.log10(cond), dim) if dim > 1 else np.array([1.0])
    if rotate and dim > 1:
        q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        q = q * np.sign(np.diag(r))
    else:
        q = np.eye(dim)
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)

    def f(x, data):
        e = x - 1.0
        return 0.5 * e @ (data["A"] @ e)

    return Problem(name="quadratic", f=f, x0=np.zeros(dim), f_star=0.0, x_star=np.ones(dim),
                   data={"A": a, "eigenvalues": lam}, bounds=(-np.ones(dim), 3.0 * np.ones(dim)),
                   tags=("convex", "quadratic", "scalable"), description=f"½(x−1)ᵀA(x−1), κ(A) = {cond:g}")
