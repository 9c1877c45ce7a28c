"""Small dense linear algebra with fast paths for n = 1 and n = 2.

Batched tiny systems through ``jnp.linalg.solve``/``eigh`` cost several times a closed form on
CPU (LAPACK call overhead per 2×2), and 2-D problems are the bread and butter of a benchmark, so
n ≤ 2 gets closed forms; n ≥ 3 uses LAPACK via ``jnp.linalg``. n is static under jit.
"""
from __future__ import annotations

import jax
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


def spectral_solve(lam, v, g, rel_floor=None):
    """−A⁺g for symmetric positive semi-definite A = V diag(λ) Vᵀ: components whose eigenvalue is
    below ``rel_floor``·max λ (default n·eps) are dropped — the minimum-norm least-squares
    solution, as a pseudo-inverse does."""
    n = g.shape[0]
    floor = (n * jnp.finfo(g.dtype).eps if rel_floor is None else rel_floor) * jnp.max(jnp.abs(lam))
    b = v.T @ g
    keep = lam > floor
    return -(v @ jnp.where(keep, b / jnp.where(keep, lam, 1.0), 0.0))


def secular_lambda(mu, b, radius, lam_lo, max_iter=60):
    """The λ ≥ ``lam_lo`` with ‖z(λ)‖ = ``radius``, z_i = −b_i/(μ_i + λ) (or ``lam_lo`` if
    ‖z(lam_lo)‖ < radius already): the trust-region secular equation in the eigenbasis.

    Newton's method on φ(λ) = 1/Δ − 1/‖z(λ)‖ (Moré & Sorensen 1983, SIAM J. Sci. Stat. Comput.
    4:553; Nocedal & Wright Alg. 4.3 and eq. 4.44), which is concave and increasing on
    (−μ_min, ∞), so Newton from a point left of the root climbs monotonically to it without
    overshooting. The start max(lam_lo, max_i |b_i|/Δ − μ_i) is such a point: there the i-th
    term alone makes ‖z‖ ≥ Δ. With the eigen-decomposition in hand each iteration costs O(n),
    so it runs to full precision rather than MINPACK's 10 %.
    """
    dtype = b.dtype
    eps = jnp.finfo(dtype).eps
    radius = jnp.asarray(radius, dtype)

    def znorm2(lam):
        den = mu + lam
        safe = jnp.where(b != 0, den, 1.0)
        z2 = jnp.where(b != 0, (b / safe) ** 2, 0.0)
        q2 = jnp.where(b != 0, b * b / safe ** 3, 0.0)
        return jnp.sum(z2), jnp.sum(q2)

    lam0 = jnp.maximum(lam_lo, jnp.max(jnp.abs(b) / radius - mu))

    def cond(c):
        lam, k, done = c
        return (~done) & (k < max_iter)

    def body(c):
        lam, k, _ = c
        p2, q2 = znorm2(lam)
        pn = jnp.sqrt(p2)
        step = (p2 / jnp.where(q2 > 0, q2, 1.0)) * (pn - radius) / radius
        new = jnp.maximum(lam + step, lam_lo)
        done = (jnp.abs(pn - radius) <= 1e3 * eps * radius) | (new == lam) | ~jnp.isfinite(new)
        return jnp.where(jnp.isfinite(new), new, lam), k + 1, done

    lam, _, _ = jax.lax.while_loop(cond, body, (lam0, jnp.int32(0), jnp.asarray(False)))
    return lam


def trust_region_subproblem(h, g, radius):
    """Exact minimiser of the model gᵀp + ½pᵀHp subject to ‖p‖ ≤ Δ (any symmetric H).

    Optimality (Moré & Sorensen 1983; N&W Thm 4.1): (H + λI)p = −g, H + λI ⪰ 0, λ(Δ − ‖p‖) = 0.
    Solved in H's eigenbasis: the interior Newton step when H ≻ 0 and it fits, else the λ of
    :func:`secular_lambda`; in the *hard case* (g ⟂ the lowest eigenvector and the shifted step
    too short) the boundary is reached along that eigenvector, signed to lower the model.
    Small n only (one eigen-decomposition, closed form for n ≤ 2).

    Returns (p, predicted reduction −m(p), λ, hits_boundary).
    """
    dtype = g.dtype
    lam_h, v = sym_eig(h)
    b = v.T @ g
    lam_lo = jnp.maximum(0.0, -lam_h[0])
    lam = secular_lambda(lam_h, b, radius, lam_lo)
    den = lam_h + lam
    z = jnp.where(b != 0, -b / jnp.where(den != 0, den, 1.0), 0.0)
    zn = jnp.linalg.norm(z)
    # hard case: top up along the lowest eigenvector to reach the boundary
    short = (lam > 0) & (zn < radius * (1 - 1e-6))
    tau = jnp.sqrt(jnp.maximum(radius * radius - zn * zn, 0.0))
    slope1 = b[0] + lam_h[0] * z[0]  # the model's slope along the lowest eigenvector decides the sign
    tau = jnp.where(slope1 > 0, -tau, tau)
    z = z.at[0].add(jnp.where(short, tau, 0.0).astype(dtype))
    pred = -(jnp.vdot(b, z) + 0.5 * jnp.vdot(lam_h * z, z))
    p = v @ z
    return p, pred, lam, (lam > 0) | short


def least_squares_spectrum(jac, r):
    """The Gauss-Newton model of ½‖r + J p‖² in the eigenbasis of JᵀJ: (μ, b, V) with
    JᵀJ = V diag(μ) Vᵀ and b = Vᵀ Jᵀr. n ≤ 2 forms JᵀJ (closed-form eigen); larger n takes the
    thin SVD of J (μ = σ², b = σ·Uᵀr), which keeps the accuracy that squaring J would lose."""
    n = jac.shape[1]
    if n <= 2:
        mu, v = sym_eig(jac.T @ jac)
        return mu, v.T @ (jac.T @ r), v
    u, s, vt = jnp.linalg.svd(jac, full_matrices=False)
    return s * s, s * (u.T @ r), vt.T
