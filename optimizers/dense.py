"""Small dense linear algebra with fast paths for n = 1 and n = 2.

Batched tiny systems through ``jnp.linalg.solve``/``eigh`` cost several times a closed form on
CPU (LAPACK call overhead per 2×2), and 2-D problems are the bread and butter of a benchmark, so
n ≤ 2 gets closed forms; n ≥ 3 uses LAPACK via ``jnp.linalg``. n is static under jit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import lanes_while


#: matrices with at most this many entries are multiplied by multiply-and-sum, not ``dot``
SMALL_DOT_MAX = 4096


def mv(a, x):
    """a @ x (matrix times vector). For a small matrix, an elementwise multiply and a sum: under
    ``vmap`` a matrix-vector product becomes a batched ``dot`` of tiny matrices, which XLA's CPU
    backend runs one small matrix at a time (measured: Levenberg-Marquardt on 10,000 2-D starts
    spent most of its step in seven such 2×2 products); the fused multiply-and-sum vectorises
    across the batch. Large matrices keep ``dot`` (BLAS)."""
    if a.size <= SMALL_DOT_MAX:
        return jnp.sum(a * x[None, :], axis=1)
    return a @ x


def vm(x, a):
    """x @ a (vector times matrix) = aᵀx, as :func:`mv`."""
    if a.size <= SMALL_DOT_MAX:
        return jnp.sum(x[:, None] * a, axis=0)
    return x @ a


def mm(a, b):
    """a @ b for matrices, as :func:`mv` (multiply-and-sum when the product is small)."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= SMALL_DOT_MAX:
        return jnp.sum(a[:, :, None] * b[None, :, :], axis=1)
    return a @ b


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
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.

    n = 2 in closed form without trigonometry: λ± = m ± r with m the mean of the diagonal,
    h half its difference, b the off-diagonal and r = hypot(h, b); the eigenvector of λ+ is
    (r + h, b) when h ≥ 0 and (b, r − h) otherwise — the form without cancellation — normalised.
    (The angle form through arctan2/cos/sin computes the same and cost ¾ of a whole 2-D Newton
    step on CPU, measured in ``optbench perf``.) When r = 0, H = mI and the axes are returned.
    """
    n = h.shape[0]
    if n == 1:
        return h[0], jnp.ones((1, 1), h.dtype)
    if n == 2:
        a, b, c = h[0, 0], 0.5 * (h[0, 1] + h[1, 0]), h[1, 1]
        mean, half = 0.5 * (a + c), 0.5 * (a - c)
        rad = jnp.hypot(half, b)
        pos = half >= 0
        v1 = jnp.where(pos, rad + half, b)
        v2 = jnp.where(pos, b, rad - half)
        nrm = jnp.hypot(v1, v2)
        ok = nrm > 0
        inv = 1.0 / jnp.where(ok, nrm, 1.0)
        v1 = jnp.where(ok, v1 * inv, 1.0)
        v2 = jnp.where(ok, v2 * inv, 0.0)
        vecs = jnp.stack([jnp.stack([-v2, v1]), jnp.stack([v1, v2])], axis=1)
        return jnp.stack([mean - rad, mean + rad]), vecs
    return jnp.linalg.eigh(0.5 * (h + h.T))


#: ``newton``'s default relative eigenvalue floor δ/max|λ|: a few ε, so that only eigenvalues
#: that are negative or zero to round-off are changed. It was 1e-8 (≈ √ε), which also raised the
#: small eigenvalue of positive definite Hessians with κ > 10⁸ and cost Newton its quadratic
#: convergence there: on the NIST and MGH suites (all starts) newton solved 33 → 52 of 54 and
#: 117 → 124 of 140 starts with this floor, in fewer iterations (46,417 → 10,785 and 32,046 →
#: 18,824) and evaluations; float32 NIST 31 → 36.
EIG_FLOOR = 1e-15


def modified_newton_direction(h, g, rel_floor=EIG_FLOOR, abs_floor=1e-12):
    """d = −Ĥ⁻¹g with Ĥ = V max(|Λ|, δ) Vᵀ: the Hessian's eigenvalues replaced by their absolute
    values, floored at δ = max(rel_floor·max|λ|, abs_floor) (Nocedal & Wright §3.4, eq. 3.41 and
    the absolute-value variant). Ĥ = H wherever H is safely positive definite, so the pure Newton
    step, and its quadratic convergence, are kept near a minimum; elsewhere d is a descent
    direction that also moves along negative curvature, away from saddles.

    Returns (d, modified) where ``modified`` says whether Ĥ differs from H.
    """
    if g.shape[0] == 2:
        dx, dy, modified = modified_newton_2x2(h[0, 0], 0.5 * (h[0, 1] + h[1, 0]), h[1, 1], g[0], g[1],
                                               rel_floor, abs_floor)
        return jnp.stack([dx, dy]), modified
    lam, v = sym_eig(h)
    big = jnp.max(jnp.abs(lam))
    delta = jnp.maximum(rel_floor * big, abs_floor)
    lam_mod = jnp.maximum(jnp.abs(lam), delta)
    d = -(v @ ((v.T @ g) / lam_mod))
    return d, jnp.any(lam < delta)


def modified_newton_2x2(a, b, c, gx, gy, rel_floor=EIG_FLOOR, abs_floor=1e-12):
    """:func:`modified_newton_direction` for H = [[a, b], [b, c]] and g = (gx, gy), written on
    the entries (so it works elementwise on batches of them); returns (dx, dy, modified).

    With λ± = m ± r (m the mean of the diagonal, h half their difference, r = √(h² + b²)), the
    spectral projector on λ+ is P = (H − λ−I)/(2r), entries ((r + h)/2r, b/2r, (r − h)/2r), each
    bounded by 1 in magnitude, so it is accurate even when r is tiny; then
    Ĥ⁻¹g = Pg/μ+ + (g − Pg)/μ−. Where H is safely positive definite, Cramer's rule (the same d,
    more accurately). When r = 0, H = mI and any split works: P = I/2. No eigenvectors, no
    hypot, no normalisation: the eigenvector form computes the same and cost several times as
    much per batch, dominating a 2-D Newton step on CPU. The hand-written floor kernel of
    ``optbench perf`` (``bench.kernels``) uses this function too.
    """
    m, half = 0.5 * (a + c), 0.5 * (a - c)
    r = jnp.sqrt(half * half + b * b)
    lo, hi = m - r, m + r
    delta = jnp.maximum(rel_floor * jnp.maximum(jnp.abs(lo), jnp.abs(hi)), abs_floor)
    mu_lo, mu_hi = jnp.maximum(jnp.abs(lo), delta), jnp.maximum(jnp.abs(hi), delta)
    split = r > 0
    inv2r = jnp.where(split, 0.5 / jnp.where(split, r, 1.0), 0.0)
    pxx = jnp.where(split, (r + half) * inv2r, 0.5)
    pyy = jnp.where(split, (r - half) * inv2r, 0.5)
    pxy = b * inv2r
    phx, phy = pxx * gx + pxy * gy, pxy * gx + pyy * gy
    pd = lo >= delta
    sdet = jnp.where(pd, a * c - b * b, 1.0)
    dx = jnp.where(pd, -(c * gx - b * gy) / sdet, -(phx / mu_hi + (gx - phx) / mu_lo))
    dy = jnp.where(pd, -(a * gy - b * gx) / sdet, -(phy / mu_hi + (gy - phy) / mu_lo))
    return dx, dy, lo < delta


def secular_lambda(mu, b, radius, lam_lo, max_iter=60):
    """The λ ≥ ``lam_lo`` with ‖z(λ)‖ = ``radius``, z_i = −b_i/(μ_i + λ) (or ``lam_lo`` if
    ‖z(lam_lo)‖ < radius already): the trust-region secular equation in the eigenbasis.

    Newton's method on φ(λ) = 1/Δ − 1/‖z(λ)‖ (Moré & Sorensen 1983, SIAM J. Sci. Stat. Comput.
    4:553; Nocedal & Wright Alg. 4.3 and eq. 4.44), which is concave and increasing on
    (−μ_min, ∞), so Newton from a point left of the root climbs monotonically to it without
    overshooting. The start max(lam_lo, max_i |b_i|/Δ − μ_i) is such a point: there the i-th
    term alone makes ‖z‖ ≥ Δ. With the eigen-decomposition in hand each iteration costs O(n),
    so it runs to full precision (Levenberg-Marquardt instead uses MINPACK's 10 % rule,
    :func:`minpack_lmpar`).
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
        # on the pole (λ = −μ_i for a component with b_i ≠ 0 so small that |b_i|/Δ − μ_i rounded
        # to −μ_i): ‖z‖ is infinite and Newton's step inf/inf; step just right of it instead of
        # stopping there, where the step would be feasible but not the model's minimiser
        pole = ~jnp.isfinite(p2)
        new = jnp.where(pole, lam + 4.0 * eps * (1.0 + jnp.abs(lam)), new)
        return jnp.where(jnp.isfinite(new), new, lam), k + 1, done & ~pole

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
    b = vm(g, v)
    lam_lo = jnp.maximum(0.0, -lam_h[0])
    lam = secular_lambda(lam_h, b, radius, lam_lo)
    den = lam_h + lam
    z = jnp.where(b != 0, -b / jnp.where(den != 0, den, 1.0), 0.0)
    # λ > 0 puts p on the boundary (λ(Δ − ‖p‖) = 0), and the lowest eigen-component z₀ is then
    # taken from that equation, ‖z‖ = Δ, instead of −b₀/(λ₀ + λ): near the pole λ = −λ₀ that
    # quotient is round-off over round-off (‖p‖ up to 1.3Δ was seen on rotated 2×2 hard cases,
    # and 1.0005Δ where b₀ ≈ 1e-12), and in the hard case (b₀ = 0) it is 0 and the boundary is
    # reached along the lowest eigenvector. Its sign lowers the model's linear term b₀z₀, as
    # −b₀/(λ₀ + λ) does. If the other components alone reach past Δ (λ not converged) they are
    # scaled back onto the boundary.
    rest2 = jnp.sum(z[1:] * z[1:])
    tau = jnp.sqrt(jnp.maximum(radius * radius - rest2, 0.0))
    z = jnp.where(lam > 0, z.at[0].set(jnp.where(b[0] > 0, -tau, tau)), z)
    over = (lam > 0) & (rest2 > radius * radius)
    z = jnp.where(over, z.at[0].set(0.0) * (radius / jnp.sqrt(jnp.where(over, rest2, 1.0))), z).astype(dtype)
    pred = -(jnp.vdot(b, z) + 0.5 * jnp.vdot(lam_h * z, z))
    p = mv(v, z)
    return p, pred, lam, lam > 0


def least_squares_spectrum(jac, r):
    """The Gauss-Newton model of ½‖r + J p‖² in the eigenbasis of JᵀJ: (μ, b, V, floor) with
    JᵀJ = V diag(μ) Vᵀ and b = Vᵀ Jᵀr; eigenvalues at or below ``floor`` are numerically zero.
    n ≤ 2 forms JᵀJ (closed-form eigen; its small eigenvalues are accurate to eps·max μ, so
    floor = n·eps·max μ); larger n takes the thin SVD of J (μ = σ², b = σ·Uᵀr), which keeps the
    accuracy that squaring J would lose: there only σ ≤ n·eps·max σ is dropped, so
    ill-conditioned fits (NIST Bennett5, MGH09/10) keep their full Gauss-Newton step."""
    n = jac.shape[1]
    eps = jnp.finfo(jac.dtype).eps
    if n <= 2:
        mu, v = sym_eig(mm(jac.T, jac))
        return mu, vm(vm(r, jac), v), v, n * eps * jnp.max(mu)
    u, s, vt = jnp.linalg.svd(jac, full_matrices=False)
    return s * s, s * (u.T @ r), vt.T, (n * eps * jnp.max(s)) ** 2


def least_squares_model(jac, r):
    """The Gauss-Newton model of ½‖r + J p‖² in the eigenbasis of JᵀJ, as (μ, |b|, floor, step):
    μ the eigenvalues of JᵀJ (ascending), |b|ᵢ the length of the component of Jᵀr along the i-th
    eigen-direction, floor as in :func:`least_squares_spectrum`, and ``step(λ)`` the minimiser
    −(JᵀJ + λI)⁻¹Jᵀr of ½‖r + Jp‖² + ½λ‖p‖², with the eigen-directions whose μᵢ + λ ≤ floor
    dropped (at λ = 0 the minimum-norm Gauss-Newton step). MINPACK's λ iteration needs only μ
    and |b|, a damped step only ``step``.

    n = 2 through the spectral projector P of the larger eigenvalue (as
    :func:`modified_newton_2x2`): with JᵀJ = [[a, c], [c, d]], m the mean of the diagonal, h half
    its difference and ρ = hypot(h, c), μ± = m ± ρ and P = ((ρ + h)/2ρ, c/2ρ, (ρ − h)/2ρ), entries
    bounded by 1; Jᵀr splits into Pg and g − Pg. No eigenvectors or normalisation: under
    ``vmap`` the eigenvector form was the largest part of a 2-D Levenberg-Marquardt step on CPU.
    When ρ = 0 (JᵀJ = mI) the axes split g, as :func:`sym_eig` returns them. Other n use
    :func:`least_squares_spectrum` and its eigenvectors.
    """
    if jac.shape[1] != 2:
        mu, b, v, floor = least_squares_spectrum(jac, r)

        def step(lam):
            den = mu + lam
            keep = (den > floor) & (b != 0)
            return -mv(v, jnp.where(keep, b / jnp.where(keep, den, 1.0), 0.0))
        return mu, jnp.abs(b), floor, step
    # JᵀJ's three distinct entries and Jᵀr as sums over the two columns: under ``vmap`` the
    # matrix product JᵀJ was one kernel that transposed each start's J (measured in one process,
    # 10³ 2-D starts: Levenberg-Marquardt 0.95× the time this way, 10⁴ starts unchanged)
    j0, j1 = jac[:, 0], jac[:, 1]
    a, c, d = jnp.sum(j0 * j0), jnp.sum(j0 * j1), jnp.sum(j1 * j1)
    gx, gy = jnp.sum(r * j0), jnp.sum(r * j1)
    m, half = 0.5 * (a + d), 0.5 * (a - d)
    rho = jnp.hypot(half, c)   # not √(h² + c²): the squares overflow long before JᵀJ does
    split = rho > 0
    inv2r = jnp.where(split, 0.5 / jnp.where(split, rho, 1.0), 0.0)
    pxx = jnp.where(split, (rho + half) * inv2r, 1.0)
    pyy = jnp.where(split, (rho - half) * inv2r, 0.0)
    pxy = c * inv2r
    hx, hy = pxx * gx + pxy * gy, pxy * gx + pyy * gy  # Pg, along μ+
    lx, ly = gx - hx, gy - hy                          # g − Pg, along μ−
    hi = m + rho
    # the small eigenvalue as det(JᵀJ)/μ+, the determinant through the column of larger norm,
    # a·‖j₁ − (c/a)j₀‖² (or d·‖j₀ − (c/d)j₁‖²; det(J)² for two residuals): m − ρ cancels to
    # eps·μ+ and, with a floor at that level, dropped the small direction once cond(J) passed
    # ~5·10⁷ (Misra1a–c and MGH's Powell badly scaled stalled far from x*); this keeps it to
    # cond(J) ≈ 1/(2ε), as the SVD path does
    inv_hi = jnp.where(hi > 0, 1.0 / jnp.where(hi > 0, hi, 1.0), 0.0)
    if jac.shape[0] == 2:   # a square J: det(JᵀJ) = det(J)², elementwise (no second pass over J)
        det_j = jac[0, 0] * jac[1, 1] - jac[0, 1] * jac[1, 0]
        lo = det_j * (det_j * inv_hi)   # in this order: det(J)² alone overflows for entries ~1e100
    else:
        piv0 = a >= d
        pa = jnp.where(piv0, a, d)
        t = c / jnp.where(pa > 0, pa, 1.0)
        # both sums, then the choice: with the choice inside the sum XLA's code (and its rounding)
        # changed with the batch size, and pack=True runs of LM on Misra1a took other iterations
        e2 = jnp.where(piv0, jnp.sum((j1 - t * j0) ** 2), jnp.sum((j0 - t * j1) ** 2))
        lo = (pa * inv_hi) * e2         # pa ≤ μ+: no overflow before JᵀJ's own
    eps = jnp.finfo(jac.dtype).eps
    floor = (2 * eps) ** 2 * hi
    b = jnp.stack([jnp.sqrt(lx * lx + ly * ly), jnp.sqrt(hx * hx + hy * hy)])

    def step(lam):
        den_lo, den_hi = lo + lam, hi + lam
        w_lo = jnp.where(den_lo > floor, 1.0 / jnp.where(den_lo > floor, den_lo, 1.0), 0.0)
        w_hi = jnp.where(den_hi > floor, 1.0 / jnp.where(den_hi > floor, den_hi, 1.0), 0.0)
        return -jnp.stack([w_hi * hx + w_lo * lx, w_hi * hy + w_lo * ly])
    return jnp.stack([lo, hi]), b, floor, step


def minpack_lmpar(mu, b, radius, par0, floor, max_iter=10):
    """The Levenberg-Marquardt parameter as MINPACK's ``lmpar`` determines it (Moré 1978, §5):
    λ = 0 if the Gauss-Newton step fits within 1.1Δ, else safeguarded Newton iterations on
    φ(λ) = ‖q(λ)‖ − Δ, q_i = −b_i/(μ_i + λ), started from the previous λ (``par0``) clamped
    into Moré's bounds [parl, paru] and stopped at the first λ with |φ| ≤ 0.1Δ (at most 10
    iterations). Starting from the previous λ makes the damping carry over between iterations,
    which is part of MINPACK's behaviour in curved valleys. Returns λ.
    """
    dtype = b.dtype
    tiny = jnp.finfo(dtype).tiny
    keep = mu > floor

    def q2(lam):
        den = mu + lam
        ok = keep | (lam > 0)
        z2 = jnp.where(ok & (b != 0), (b / jnp.where(ok, den, 1.0)) ** 2, 0.0)
        w2 = jnp.where(ok & (b != 0), b * b / jnp.where(ok, den, 1.0) ** 3, 0.0)
        return jnp.sum(z2), jnp.sum(w2)

    p2, w2 = q2(jnp.zeros((), dtype))
    dxnorm = jnp.sqrt(p2)
    fp0 = dxnorm - radius
    full_rank = jnp.all(keep)
    # Moré's lower bound from the Gauss-Newton step (MINPACK lmpar: parl = (fp/Δ)/‖w‖² with
    # w = R⁻ᵀD²x/‖Dx‖, ‖w‖² = Σ bᵢ²/μᵢ³ / ‖q‖² in this basis): fp·‖q‖²/(Δ·w2). It read
    # fp·‖q‖/w2, a bound lower by the factor Δ/‖q‖ < 1/1.1, so the λ iteration started further
    # left of the root than MINPACK's
    parl = jnp.where(full_rank & (w2 > 0), fp0 * p2 / (radius * jnp.where(w2 > 0, w2, 1.0)), 0.0)
    parl = jnp.maximum(parl, 0.0)
    gnorm = jnp.linalg.norm(b)  # ‖D⁻¹Jᵀr‖, the scaled gradient
    paru = jnp.where(gnorm > 0, gnorm / radius, tiny / jnp.minimum(radius, 0.1))
    par = jnp.clip(par0, parl, paru)
    par = jnp.where(par == 0, gnorm / jnp.where(dxnorm > 0, dxnorm, 1.0), par)

    def cond(c):
        _, _, _, _, k, done = c
        return (~done) & (k < max_iter)

    def body(c):
        par, parl, paru, fp_prev, k, _ = c
        par = jnp.where(par == 0, jnp.maximum(tiny, 0.001 * paru), par)
        p2, w2 = q2(par)
        dxn = jnp.sqrt(p2)
        fp = dxn - radius
        done = (jnp.abs(fp) <= 0.1 * radius) | ((parl == 0) & (fp <= fp_prev) & (fp_prev < 0)) | (k + 1 >= max_iter)
        parc = (fp / radius) * p2 / jnp.where(w2 > 0, w2, 1.0)
        parl = jnp.where(fp > 0, jnp.maximum(parl, par), parl)
        paru = jnp.where(fp < 0, jnp.minimum(paru, par), paru)
        new = jnp.maximum(parl, par + parc)
        return jnp.where(done, par, new), parl, paru, fp, k + 1, done

    # where the Gauss-Newton step fits, λ = 0 and there is nothing to iterate: such starts begin
    # done, so a batch in which every start's step fits (most late iterations) skips the loop
    fits = fp0 <= 0.1 * radius
    # a finished start keeps λ, its trip count and ``done``; its bounds may run on
    par, _, _, _, _, _ = lanes_while(cond, body, (par, parl, paru, fp0, jnp.int32(0), fits), keep=(0, 4, 5))
    return jnp.where(fits, 0.0, par)
