"""Small dense linear algebra with fast paths for n = 1 and n = 2.

Batched tiny systems through ``jnp.linalg.solve``/``eigh`` cost several times a closed form on
CPU (LAPACK call overhead per 2×2), and 2-D problems are the bread and butter of a benchmark, so
n ≤ 2 gets closed forms; n ≥ 3 uses LAPACK via ``jnp.linalg``. n is static under jit.
"""
from __future__ import annotations

import jax.numpy as jnp


def solve(a, b):
    """Solve a x = b for square a (no symmetry assumed). Singular a gives non-finite x."""
    n = b.shape[0]
    if n == 1:
        return b / a[0, 0]
    if n == 2:
        det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
        return jnp.stack([a[1, 1] * b[0] - a[0, 1] * b[1], a[0, 0] * b[1] - a[1, 0] * b[0]]) / det
    return jnp.linalg.solve(a, b)


def sym_eig(h):
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix."""
    n = h.shape[0]
    if n == 1:
        return h[0], jnp.ones((1, 1), h.dtype)
    if n == 2:
        a, b, c = h[0, 0], 0.5 * (h[0, 1] + h[1, 0]), h[1, 1]
        mean, half = 0.5 * (a + c), 0.5 * (a - c)
        rad = jnp.hypot(half, b)
        theta = 0.5 * jnp.arctan2(b, half)  # eigenvector of the larger eigenvalue: (cos θ, sin θ)
        co, si = jnp.cos(theta), jnp.sin(theta)
        vecs = jnp.stack([jnp.stack([-si, co]), jnp.stack([co, si])], axis=1)
        return jnp.stack([mean - rad, mean + rad]), vecs
    return jnp.linalg.eigh(0.5 * (h + h.T))


def modified_newton_direction(h, g, rel_floor=1e-8, abs_floor=1e-12):
    """d = −Ĥ⁻¹g with Ĥ = V max(|Λ|, δ) Vᵀ: the Hessian's eigenvalues replaced by their absolute
    values, floored at δ = max(rel_floor·max|λ|, abs_floor) (Nocedal & Wright §3.4, eq. 3.41 and
    the absolute-value variant). Ĥ = H wherever H is safely positive definite, so the pure Newton
    step, and its quadratic convergence, are kept near a minimum; elsewhere d is a descent
    direction that also moves along negative curvature, away from saddles.

    Returns (d, modified) where ``modified`` says whether Ĥ differs from H.
    """
    lam, v = sym_eig(h)
    big = jnp.max(jnp.abs(lam))
    delta = jnp.maximum(rel_floor * big, abs_floor)
    lam_mod = jnp.maximum(jnp.abs(lam), delta)
    d = -(v @ ((v.T @ g) / lam_mod))
    if g.shape[0] == 2:  # PD fast path: Cramer's rule equals the eigen form there, more accurately
        pd = lam[0] >= delta
        d = jnp.where(pd, -solve(h, g), d)
    return d, jnp.any(lam < delta)
