"""Root finding and Lagrange systems: square residual systems r(x) = 0, so f = Σ r² has f* = 0.

``root:*`` are the classic examples for Newton–Raphson: two 1-D equations (one that makes Newton
cycle from the textbook start, one that it solves in a few steps) and four n-D systems from
Moré, Garbow & Hillstrom (1981) in their equation-solving role (Powell singular, helical valley,
Broyden tridiagonal, discrete boundary value).

``lagrange:*`` are equality-constrained minimisations min g(x) s.t. c(x) = 0 written as the
stationarity system of the Lagrangian L = g + λc (Nocedal & Wright, Numerical Optimization,
2nd ed., §12.1): ∇ₓg + λ∇ₓc = 0, c = 0, a square system in (x, λ). Its roots are all the KKT
points; ``x_star`` is the constrained minimiser (with its multiplier), further roots that are
also minimisers go in ``minima`` and the others (maximisers) in ``info["other_roots"]``. The
constrained minimum itself is in ``info``.
"""
from __future__ import annotations

import math

import numpy as np
import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import Problem
from .mgh import _helical, _powell_block, _bv_start, broyden_tridiagonal_residuals, discrete_bv_residuals
from .registry import register


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptbenchError(msg)


def _root(name, residuals, x0, x_star, bounds, tags=(), description="", **kw) -> Problem:
    return Problem(name=name, residuals=residuals, x0=np.asarray(x0, float), f_star=0.0, x_star=x_star,
                   bounds=bounds, tags=("root", "least-squares") + tuple(tags), description=description, **kw)


def _cubic_root() -> float:
    """The real root of x³ − 2x + 2 by Cardano's formula (one real root: discriminant 19/27 > 0)."""
    s = math.sqrt(19.0 / 27.0)
    return float(np.cbrt(-1.0 + s) + np.cbrt(-1.0 - s))


@register("root:cubic", family="root", dims="1", tags=("root", "least-squares", "1d"))
def cubic() -> Problem:
    """x³ − 2x + 2 = 0; one real root −1.7692923542386…, x0 = 0, where Newton cycles 0 → 1 → 0.

    The standard example of Newton's method failing by cycling (the example in the failure
    analysis of Wikipedia's "Newton's method": N(0) = 1, N(1) = 0). f = r² also has a local minimum,
    not a root, at x = √(2/3) (r′ = 0, r > 0), recorded in ``local_minima``.
    """

    def r(x):
        return x ** 3 - 2.0 * x + 2.0

    xl = math.sqrt(2.0 / 3.0)
    rl = xl ** 3 - 2.0 * xl + 2.0
    return _root("root:cubic", r, [0.0], np.array([_cubic_root()]), (np.array([-3.0]), np.array([3.0])),
                 tags=("1d", "local-minimum"), description="x³ − 2x + 2", local_minima=[(np.array([xl]), rl * rl)])


# the Dottie number, the fixed point of cos (OEIS A003957: 0.73908513321516064165531208767…)
_DOTTIE = 0.7390851332151607


@register("root:cos", family="root", dims="1", tags=("root", "least-squares", "1d"))
def cos_x() -> Problem:
    """cos x − x = 0; root 0.7390851332151607 (the Dottie number, OEIS A003957), x0 = 1.

    r is strictly decreasing (r′ = −sin x − 1 ≤ 0), so the root is unique and f = r² has no
    other minimum.
    """

    def r(x):
        return jnp.cos(x) - x

    return _root("root:cos", r, [1.0], np.array([_DOTTIE]), (np.array([-2.0]), np.array([3.0])),
                 tags=("1d",), description="cos x − x")


@register("root:powell-singular", family="root", dims="4", tags=("root", "least-squares", "singular"))
def powell_singular() -> Problem:
    """Powell's singular system (MGH 13), root 0 with a singular Jacobian; x0 = (3, −1, 0, 1)."""
    return _root("root:powell-singular", _powell_block, [3.0, -1.0, 0.0, 1.0], np.zeros(4),
                 (np.full(4, -4.0), np.full(4, 4.0)), tags=("singular",),
                 description="x₁ + 10x₂, √5(x₃ − x₄), (x₂ − 2x₃)², √10(x₁ − x₄)²")


@register("root:helical-valley", family="root", dims="3", tags=("root", "least-squares"))
def helical_valley() -> Problem:
    """Fletcher & Powell's helical valley (MGH 7) as a system; root (1, 0, 0), x0 = (−1, 0, 0)."""
    return _root("root:helical-valley", _helical, [-1.0, 0.0, 0.0], np.array([1.0, 0.0, 0.0]),
                 (np.full(3, -2.0), np.full(3, 2.0)), description="10[x₃ − 10θ], 10[‖(x₁,x₂)‖ − 1], x₃")


@register("root:broyden-tridiagonal", family="root", dims="any n (n, default 10)", dim_param="n",
          tags=("root", "least-squares", "scalable"))
def broyden_tridiagonal(n: int = 10) -> Problem:
    """Broyden's tridiagonal system (MGH 30), x0 = (−1, …, −1); a root exists (f* = 0), x* not closed-form."""
    _need(n >= 1, f"root:broyden-tridiagonal needs n >= 1, got {n}")
    return _root("root:broyden-tridiagonal", broyden_tridiagonal_residuals, np.full(n, -1.0), None,
                 (np.full(n, -2.0), np.full(n, 1.0)), tags=("scalable",),
                 description="(3 − 2xᵢ)xᵢ − x_{i−1} − 2x_{i+1} + 1")


@register("root:discrete-boundary-value", family="root", dims="any n (n, default 10)", dim_param="n",
          tags=("root", "least-squares", "scalable"))
def discrete_boundary_value(n: int = 10) -> Problem:
    """The discrete two-point boundary value system (MGH 28), x0 = tⱼ(tⱼ − 1); f* = 0, x* not closed-form."""
    _need(n >= 1, f"root:discrete-boundary-value needs n >= 1, got {n}")
    return _root("root:discrete-boundary-value", discrete_bv_residuals, _bv_start(n), None,
                 (np.full(n, -1.0), np.full(n, 0.5)), tags=("scalable",),
                 description="2xᵢ − x_{i−1} − x_{i+1} + h²(xᵢ + tᵢ + 1)³/2")


# ---------------------------------------------------------------------------------------------
# Lagrange stationarity systems; the unknowns are (x, λ)

_R2 = math.sqrt(0.5)


@register("lagrange:circle", family="lagrange", dims="3 (x, y, λ)", tags=("lagrange", "root", "constrained"))
def lagrange_circle() -> Problem:
    """min x + y s.t. x² + y² = 1: ∇L = (1 + 2λx, 1 + 2λy, x² + y² − 1) = 0.

    Constrained minimum −√2 at (−1/√2, −1/√2), λ = 1/√2; the other root (1/√2, 1/√2, −1/√2)
    is the constrained maximum. x0 = (−1, 0, 1).
    """

    def r(v):
        x, y, lam = v[0], v[1], v[2]
        return jnp.stack([1.0 + 2.0 * lam * x, 1.0 + 2.0 * lam * y, x ** 2 + y ** 2 - 1.0])

    return _root("lagrange:circle", r, [-1.0, 0.0, 1.0], np.array([-_R2, -_R2, _R2]),
                 (np.full(3, -2.0), np.full(3, 2.0)), tags=("lagrange", "constrained"),
                 description="min x + y on the unit circle",
                 info={"objective": "x + y", "constraints": ["x² + y² − 1"], "constrained_min": -math.sqrt(2.0),
                       "constrained_x": np.array([-_R2, -_R2]), "multiplier": np.array([_R2]),
                       "other_roots": [np.array([_R2, _R2, -_R2])]})


@register("lagrange:plane", family="lagrange", dims="4 (x, y, z, λ)", tags=("lagrange", "root", "constrained"))
def lagrange_plane() -> Problem:
    """min x² + y² + z² s.t. x + 2y + 3z = 14: the point of the plane nearest 0, (1, 2, 3), λ = −2.

    ∇L = (2x + λ, 2y + 2λ, 2z + 3λ, x + 2y + 3z − 14); a linear system, so Newton–Raphson
    solves it in one step. Constrained minimum 14. x0 = 0.
    """

    def r(v):
        x, y, z, lam = v[0], v[1], v[2], v[3]
        return jnp.stack([2.0 * x + lam, 2.0 * y + 2.0 * lam, 2.0 * z + 3.0 * lam, x + 2.0 * y + 3.0 * z - 14.0])

    return _root("lagrange:plane", r, np.zeros(4), np.array([1.0, 2.0, 3.0, -2.0]),
                 (np.full(4, -5.0), np.full(4, 5.0)), tags=("lagrange", "constrained", "linear"),
                 description="min ‖x‖² on x + 2y + 3z = 14",
                 info={"objective": "x² + y² + z²", "constraints": ["x + 2y + 3z − 14"], "constrained_min": 14.0,
                       "constrained_x": np.array([1.0, 2.0, 3.0]), "multiplier": np.array([-2.0]), "other_roots": []})


@register("lagrange:hyperbola", family="lagrange", dims="3 (x, y, λ)", tags=("lagrange", "root", "constrained"))
def lagrange_hyperbola() -> Problem:
    """min x² + y² s.t. xy = 1: minima (1, 1) and (−1, −1), value 2, λ = −2.

    ∇L = (2x + λy, 2y + λx, xy − 1). Both roots are constrained minima (x_star and ``minima``).
    x0 = (2, 1, −1).
    """

    def r(v):
        x, y, lam = v[0], v[1], v[2]
        return jnp.stack([2.0 * x + lam * y, 2.0 * y + lam * x, x * y - 1.0])

    return _root("lagrange:hyperbola", r, [2.0, 1.0, -1.0], np.array([1.0, 1.0, -2.0]),
                 (np.full(3, -3.0), np.full(3, 3.0)), tags=("lagrange", "constrained"),
                 description="min x² + y² on xy = 1", minima=[np.array([-1.0, -1.0, -2.0])],
                 info={"objective": "x² + y²", "constraints": ["xy − 1"], "constrained_min": 2.0,
                       "constrained_x": np.array([1.0, 1.0]), "multiplier": np.array([-2.0]), "other_roots": []})
