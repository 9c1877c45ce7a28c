"""Hand-written JAX kernels: the floor that ``optbench perf`` measures optbench against.

Each kernel does one job for one problem, with derivatives written out by hand, no history, no
status bookkeeping beyond an iteration count, and the smallest state that does the job. It is what
a lean single-purpose program reaches on this hardware, so the perf table can say how far the
general driver (``bench.solve``) is from the limit, not only from other libraries.

The kernels run the *same method* as the optbench optimizer they are matched with (same safeguards,
same constants), so iteration counts agree and the time ratio measures overhead alone:

* :func:`rosenbrock2_newton` — Newton with the eigenvalue-modified Hessian and Armijo backtracking
  (Nocedal & Wright §3.4, Alg. 3.1; optbench's ``newton``) on 2-D Rosenbrock, batched over starts,
  closed-form gradient and Hessian, and optbench's closed-form 2×2 modified-Newton direction
  (spectral projectors and Cramer's rule, :func:`optimizers.dense.modified_newton_2x2`).
* :func:`rosenbrock2_lm` — Levenberg-Marquardt as MINPACK's lmder (Moré 1978; optbench's
  default ``levenberg-marquardt``: Jacobian scaling by running column norms, the trust radius Δ
  and its update rules, the damping λ by lmpar's safeguarded Newton iteration to 10 %) on 2-D
  Rosenbrock in residual form, batched over starts, with the residuals, the Jacobian and the
  2×2 eigen-split of the scaled JᵀJ written out (the closed form of
  :func:`optimizers.dense.least_squares_model` and :func:`optimizers.dense.minpack_lmpar`).
* :func:`ext_rosenbrock_newton_cg` — line-search Newton-CG (N&W Alg. 7.1, forcing term
  η = min(0.5, √‖g‖)) on the extended (separable-pairs) Rosenbrock function of Moré, Garbow &
  Hillstrom (1981, problem 21) with a closed-form Hessian-vector product.
* :func:`linreg_gd_blocked` — gradient descent on ‖Xw − y‖² whose gradient reads X once per
  iteration: X stored as Xᵀ (features by rows), ≈ 4 MiB blocks of rows that stay in L3,
  ``w·X_bᵀ`` then ``X_bᵀ r_b`` while the block is hot (a single streaming pass instead of XLA's
  two; figures in :mod:`problems.lsq`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from optimizers.dense import EIG_FLOOR, modified_newton_2x2
from optimizers.least_squares import minpack_update

jax.config.update("jax_enable_x64", True)


# --------------------------------------------------------------------------------------------
# 2-D Rosenbrock, batched Newton with a closed-form 2×2 everything
# --------------------------------------------------------------------------------------------
def _rosen2(x, y):
    t = y - x * x
    return 100.0 * t * t + (1.0 - x) ** 2


def _rosen2_derivs(x, y):
    t = y - x * x
    f = 100.0 * t * t + (1.0 - x) ** 2
    gx = -400.0 * x * t - 2.0 * (1.0 - x)
    gy = 200.0 * t
    hxx = 1200.0 * x * x - 400.0 * y + 2.0
    hxy = -400.0 * x
    return f, gx, gy, hxx, hxy


def _modified_newton_2x2(hxx, hxy, hyy, gx, gy, rel_floor=EIG_FLOOR, abs_floor=1e-12):
    """d = −Ĥ⁻¹g, Ĥ = V max(|Λ|, δ) Vᵀ (N&W eq. 3.41, absolute-value variant), δ = max(rel·max|λ|,
    abs), on batches of entries: the closed form of optbench's ``modified_newton_direction``
    (:func:`optimizers.dense.modified_newton_2x2`, spectral projectors, no trigonometry)."""
    dx, dy, _ = modified_newton_2x2(hxx, hxy, hyy, gx, gy, rel_floor, abs_floor)
    return dx, dy


@functools.partial(jax.jit, static_argnames=("max_iter", "max_backtracks"))
def rosenbrock2_newton(x0s, gtol, max_iter=200, c1=1e-4, shrink=0.5, max_backtracks=60):
    """Batched modified Newton + Armijo on f = 100(y − x²)² + (1 − x)², starts (B, 2).

    Returns (x (B, 2), f (B,), ‖g‖ (B,), nit (B,), iterations run). A lane stops when
    ‖g‖ ≤ gtol or its line search fails, and a lane whose start has a non-finite f or ‖g‖ never
    steps (optbench's ``diverged`` at iteration 0); the batch stops when every lane has. A line
    search evaluates f at most ``max_backtracks`` times (the trial at α = 1 included), as
    optbench's ``armijo_backtracking``. The one safeguard of optbench's search left out is its
    test that the step moves x in floating point: on 2-D Rosenbrock every start converges to
    ∇f = 0 exactly, so it never decides anything here.
    """
    x, y = x0s[:, 0], x0s[:, 1]
    f, gx, gy, hxx, hxy = _rosen2_derivs(x, y)
    gtol2 = gtol * gtol
    gg = gx * gx + gy * gy
    # a start optbench calls diverged (non-finite f or ‖∇f‖) takes no step; a finite f is kept
    # finite by the line search, so the test is needed only here
    active = (gg > gtol2) & jnp.isfinite(f) & jnp.isfinite(gg)
    nit = jnp.zeros(x.shape, jnp.int32)

    def cond(c):
        k, *_, active, _ = c
        return (k < max_iter) & jnp.any(active)

    def body(c):
        k, x, y, f, gx, gy, hxx, hxy, active, nit = c
        dx, dy = _modified_newton_2x2(hxx, hxy, 200.0, gx, gy)
        slope = gx * dx + gy * dy

        def ls_cond(l):
            alpha, ft, n, done = l
            return jnp.any(~done)

        def ls_body(l):
            alpha, ft, n, done = l
            # safeguarded quadratic interpolation (N&W §3.5), as optbench's armijo_backtracking
            denom = 2.0 * (ft - f - slope * alpha)
            aq = -slope * alpha * alpha / jnp.where(denom > 0, denom, 1.0)
            aq = jnp.where(jnp.isfinite(ft) & (denom > 0), aq, 0.1 * alpha)
            alpha = jnp.where(done, alpha, jnp.clip(aq, 0.1 * alpha, shrink * alpha))
            ft = jnp.where(done, ft, _rosen2(x + alpha * dx, y + alpha * dy))
            n = n + (~done).astype(jnp.int32)
            ok = jnp.isfinite(ft) & (ft <= f + c1 * alpha * slope)
            return alpha, ft, n, done | ok | (n >= max_backtracks)

        alpha0 = jnp.ones_like(x)
        f0 = _rosen2(x + dx, y + dy)
        ok0 = jnp.isfinite(f0) & (f0 <= f + c1 * slope)
        # the trial at α = 1 is evaluation 1 of max_backtracks (with max_backtracks = 1 there is
        # no second trial, as in optbench's search)
        alpha, ft, _, _ = jax.lax.while_loop(ls_cond, ls_body, (alpha0, f0, jnp.ones_like(nit),
                                                                ok0 | ~active | (max_backtracks <= 1)))
        ok = jnp.isfinite(ft) & (ft <= f + c1 * alpha * slope) & (slope < 0)
        move = active & ok
        xn, yn = jnp.where(move, x + alpha * dx, x), jnp.where(move, y + alpha * dy, y)
        fn, gxn, gyn, hxxn, hxyn = _rosen2_derivs(xn, yn)
        nit = nit + active.astype(jnp.int32)
        active = move & (gxn * gxn + gyn * gyn > gtol2)
        return k + 1, xn, yn, fn, gxn, gyn, hxxn, hxyn, active, nit

    k, x, y, f, gx, gy, _, _, _, nit = jax.lax.while_loop(
        cond, body, (jnp.int32(0), x, y, f, gx, gy, hxx, hxy, active, nit))
    return jnp.stack([x, y], axis=1), f, jnp.sqrt(gx * gx + gy * gy), nit, k


# --------------------------------------------------------------------------------------------
# 2-D Rosenbrock in residual form, batched MINPACK Levenberg-Marquardt, everything 2×2 by hand
# --------------------------------------------------------------------------------------------
def _rosen2_res(x, y):
    return 10.0 * (y - x * x), 1.0 - x


@functools.partial(jax.jit, static_argnames=("max_iter", "lmpar_iter"))
def rosenbrock2_lm(x0s, gtol, max_iter=200, factor=10.0, lmpar_iter=10):
    """Batched Levenberg-Marquardt, MINPACK's method (optbench's default ``levenberg-marquardt``,
    :func:`optimizers.least_squares.levenberg_marquardt` with ``damping="more"``), on the
    residuals r = (10(y − x²), 1 − x) of 2-D Rosenbrock, f = Σ r², starts (B, 2).

    J = [[−20x, 10], [−1, 0]]; D = the running maximum of J's column norms; Δ₀ = ``factor``·‖Dx₀‖;
    each iteration splits the scaled JᵀJ into its two eigen-directions (spectral projector, the
    small eigenvalue as det²/μ₊), finds λ by lmpar's safeguarded Newton iteration on ‖q(λ)‖ = Δ
    from the previous λ (λ = 0 where the Gauss-Newton step fits within 1.1Δ; at most
    ``lmpar_iter`` trips), evaluates r at the trial point and takes the step where MINPACK's
    ratio of actual to predicted reduction is ≥ 10⁻⁴, updating Δ and λ by MINPACK's rules. A lane
    stops when ‖∇f‖ ≤ gtol, or when a refused step leaves Δ ≤ 10ε‖Dx‖ (optbench's ``stalled``);
    a lane whose start has a non-finite f or ‖∇f‖ never steps. The batch stops when every lane
    has. On 2-D Rosenbrock it takes the iterations optbench's method takes, start for start
    (measured on 10³ and 10⁴ random starts).

    Returns (x (B, 2), f (B,), ‖∇f‖ (B,), nit (B,), iterations run).
    """
    dt = x0s.dtype
    eps = jnp.finfo(dt).eps
    tiny = jnp.finfo(dt).tiny
    x, y = x0s[:, 0], x0s[:, 1]
    r0, r1 = _rosen2_res(x, y)
    # J's column norms: √(400x² + 1) ≥ 1, and 10 for every x (so D's second entry never changes)
    d0 = jnp.sqrt(400.0 * x * x + 1.0)
    d1 = 10.0
    dxn = jnp.sqrt((d0 * x) ** 2 + (d1 * y) ** 2)
    radius = jnp.where(dxn > 0, factor * dxn, factor)
    f = r0 * r0 + r1 * r1
    gtol2 = gtol * gtol

    def grad(x, r0, r1):   # ∇Σr² = 2Jᵀr
        return 2.0 * (-20.0 * x * r0 - r1), 20.0 * r0

    gx, gy = grad(x, r0, r1)
    gg = gx * gx + gy * gy
    active = (gg > gtol2) & jnp.isfinite(f) & jnp.isfinite(gg)
    nit = jnp.zeros(x.shape, jnp.int32)

    def body(c):
        k, x, y, r0, r1, f, d0, radius, par, first, active, nit = c
        # the scaled Jacobian JD⁻¹ = [[a00, a01], [a10, 0]], its JᵀJ = [[a, cc], [cc, d]], Jᵀr
        a00, a10, a01 = -20.0 * x / d0, -1.0 / d0, 10.0 / d1
        a, cc, d = a00 * a00 + a10 * a10, a00 * a01, a01 * a01
        bx, by = r0 * a00 + r1 * a10, r0 * a01
        m, half = 0.5 * (a + d), 0.5 * (a - d)
        rho = jnp.hypot(half, cc)
        split = rho > 0
        inv2r = jnp.where(split, 0.5 / jnp.where(split, rho, 1.0), 0.0)
        pxx = jnp.where(split, (rho + half) * inv2r, 1.0)
        pyy = jnp.where(split, (rho - half) * inv2r, 0.0)
        pxy = cc * inv2r
        hx, hy = pxx * bx + pxy * by, pxy * bx + pyy * by   # Jᵀr along the large eigenvalue
        lx, ly = bx - hx, by - hy                           # and along the small one
        hi = m + rho
        inv_hi = jnp.where(hi > 0, 1.0 / jnp.where(hi > 0, hi, 1.0), 0.0)
        det_j = -a01 * a10
        lo = det_j * (det_j * inv_hi)
        floor = (2 * eps) ** 2 * hi
        b_lo, b_hi = jnp.sqrt(lx * lx + ly * ly), jnp.sqrt(hx * hx + hy * hy)
        keep_lo, keep_hi = lo > floor, hi > floor

        def q2(lam):   # ‖q(λ)‖² and Σ bᵢ²/(μᵢ + λ)³ (lmpar's derivative term)
            ok_lo, ok_hi = keep_lo | (lam > 0), keep_hi | (lam > 0)
            den_lo = jnp.where(ok_lo, lo + lam, 1.0)
            den_hi = jnp.where(ok_hi, hi + lam, 1.0)
            s_lo, s_hi = ok_lo & (b_lo != 0), ok_hi & (b_hi != 0)
            z2 = jnp.where(s_lo, (b_lo / den_lo) ** 2, 0.0) + jnp.where(s_hi, (b_hi / den_hi) ** 2, 0.0)
            w2 = jnp.where(s_lo, b_lo * b_lo / den_lo ** 3, 0.0) + jnp.where(s_hi, b_hi * b_hi / den_hi ** 3, 0.0)
            return z2, w2

        # lmpar: Moré's bounds, then safeguarded Newton on ‖q(λ)‖ − Δ from the previous λ
        p2, w2 = q2(jnp.zeros_like(x))
        gn_norm = jnp.sqrt(p2)
        fp0 = gn_norm - radius
        parl = jnp.where(keep_lo & keep_hi & (w2 > 0), fp0 * p2 / (radius * jnp.where(w2 > 0, w2, 1.0)), 0.0)
        parl = jnp.maximum(parl, 0.0)
        bnorm = jnp.sqrt(b_lo * b_lo + b_hi * b_hi)
        paru = jnp.where(bnorm > 0, bnorm / radius, tiny / jnp.minimum(radius, 0.1))
        lam = jnp.clip(par, parl, paru)
        lam = jnp.where(lam == 0, bnorm / jnp.where(gn_norm > 0, gn_norm, 1.0), lam)
        fits = fp0 <= 0.1 * radius

        def lp_cond(l):
            return jnp.any(~l[5])

        def lp_body(l):
            lam, parl, paru, fp_prev, j, done = l
            lam1 = jnp.where(lam == 0, jnp.maximum(tiny, 0.001 * paru), lam)
            p2, w2 = q2(lam1)
            fp = jnp.sqrt(p2) - radius
            stop = (jnp.abs(fp) <= 0.1 * radius) | ((parl == 0) & (fp <= fp_prev) & (fp_prev < 0)) | \
                (j + 1 >= lmpar_iter)
            parc = (fp / radius) * p2 / jnp.where(w2 > 0, w2, 1.0)
            parl = jnp.where(fp > 0, jnp.maximum(parl, lam1), parl)
            paru = jnp.where(fp < 0, jnp.minimum(paru, lam1), paru)
            new = jnp.where(stop, lam1, jnp.maximum(parl, lam1 + parc))
            return jnp.where(done, lam, new), parl, paru, fp, j + 1, done | stop

        lam, *_ = jax.lax.while_loop(lp_cond, lp_body, (lam, parl, paru, fp0, jnp.zeros_like(nit), fits | ~active))
        lam = jnp.where(fits, 0.0, lam)
        # the damped step q = −(JᵀJ + λI)⁻¹Jᵀr in scaled variables, p = D⁻¹q
        den_lo, den_hi = lo + lam, hi + lam
        w_lo = jnp.where(den_lo > floor, 1.0 / jnp.where(den_lo > floor, den_lo, 1.0), 0.0)
        w_hi = jnp.where(den_hi > floor, 1.0 / jnp.where(den_hi > floor, den_hi, 1.0), 0.0)
        qx, qy = -(w_hi * hx + w_lo * lx), -(w_hi * hy + w_lo * ly)
        px, py = qx / d0, qy / d1
        pnorm = jnp.sqrt(qx * qx + qy * qy)
        radius = jnp.where(first, jnp.minimum(radius, pnorm), radius)
        # MINPACK's ratio of actual to predicted reduction, in the scale of ‖r‖
        fnorm = jnp.sqrt(f)
        xt, yt = x + px, y + py
        rt0, rt1 = _rosen2_res(xt, yt)
        ft = rt0 * rt0 + rt1 * rt1
        fnorm1 = jnp.sqrt(ft)
        jp0, jp1 = -20.0 * x * px + 10.0 * py, -px   # Jp, J = [[−20x, 10], [−1, 0]]
        ratio, radius_n, par_n = minpack_update(fnorm, fnorm1, jnp.sqrt(jp0 * jp0 + jp1 * jp1), lam, pnorm, radius)
        accept = active & (ratio >= 1e-4) & jnp.isfinite(fnorm1)
        stalled = ~accept & (radius_n <= 10.0 * eps * jnp.sqrt((d0 * x) ** 2 + (d1 * y) ** 2))
        x, y = jnp.where(accept, xt, x), jnp.where(accept, yt, y)
        r0, r1 = jnp.where(accept, rt0, r0), jnp.where(accept, rt1, r1)
        f = jnp.where(accept, ft, f)
        d0 = jnp.where(accept, jnp.maximum(d0, jnp.sqrt(400.0 * xt * xt + 1.0)), d0)
        gx, gy = grad(x, r0, r1)
        nit = nit + active.astype(jnp.int32)
        radius = jnp.where(active, radius_n, radius)
        par = jnp.where(active, par_n, par)
        still = active & ~stalled & (gx * gx + gy * gy > gtol2)
        return k + 1, x, y, r0, r1, f, d0, radius, par, first & ~accept, still, nit

    def cond(c):
        return (c[0] < max_iter) & jnp.any(c[10])

    init = (jnp.int32(0), x, y, r0, r1, f, d0, radius, jnp.zeros_like(x), jnp.ones(x.shape, bool), active, nit)
    k, x, y, r0, r1, f, *_, nit = jax.lax.while_loop(cond, body, init)
    gx, gy = grad(x, r0, r1)
    return jnp.stack([x, y], axis=1), f, jnp.sqrt(gx * gx + gy * gy), nit, k


# --------------------------------------------------------------------------------------------
# Extended Rosenbrock (separable pairs), line-search Newton-CG with a closed-form Hessian-vector product
# --------------------------------------------------------------------------------------------
def ext_rosenbrock(x):
    """Moré, Garbow & Hillstrom (1981) problem 21, f = Σ r² over pairs (x_{2i−1}, x_{2i}):
    100(x_{2i} − x_{2i−1}²)² + (1 − x_{2i−1})²; f* = 0 at (1, …, 1). n even."""
    u, v = x[0::2], x[1::2]
    t = v - u * u
    return jnp.sum(100.0 * t * t + (1.0 - u) ** 2)


@functools.partial(jax.jit, static_argnames=("max_iter", "max_cg", "max_backtracks"))
def ext_rosenbrock_newton_cg(x0, gtol, max_iter=500, max_cg=None, c1=1e-4, shrink=0.5, max_backtracks=40):
    """Line-search Newton-CG (Nocedal & Wright Alg. 7.1) on :func:`ext_rosenbrock`: optbench's
    ``newton-cg:linesearch=armijo`` with its defaults.

    CG on H p = −g stops at ‖r‖ ≤ η‖g‖ with η = min(0.5, √‖g‖) (superlinear forcing), after
    ``max_cg`` products (None: min(2n, 500), optbench's automatic cap) or on non-positive
    curvature (then the last iterate, or −g on the first CG step); the step is Armijo
    backtracking from 1 with safeguarded quadratic interpolation, at most ``max_backtracks``
    evaluations of f (optbench's ``max_evals``, 40). A search that finds no sufficient decrease
    leaves x where it is and ends the run (optbench's ``linesearch_failed``), and so does a
    start with a non-finite f or ‖g‖ (``diverged``, no iteration). Left out of optbench's search:
    its test that the step moves x in floating point (one more pass over x per iteration, and on
    this function the runs end with ∇f = 0 exactly). Everything works on the pair halves
    u = x[0::2], v = x[1::2], where the Hessian is 2×2 block-diagonal, so a Hessian-vector
    product is four multiply-adds per pair.

    Returns (x, f, ‖g‖, iterations, CG iterations in total).
    """
    dt = x0.dtype
    u, v = x0[0::2], x0[1::2]
    if max_cg is None:
        max_cg = min(x0.shape[0], 250) * 2   # min(2n, 500), as optbench's newton-cg (max_cg = 0)

    def fg(u, v):
        t = v - u * u
        return (jnp.sum(100.0 * t * t + (1.0 - u) ** 2), -400.0 * u * t - 2.0 * (1.0 - u), 200.0 * t)

    def fval(u, v):
        t = v - u * u
        return jnp.sum(100.0 * t * t + (1.0 - u) ** 2)

    def dot(a1, a2, b1, b2):
        return jnp.sum(a1 * b1) + jnp.sum(a2 * b2)

    def body(c):
        k, u, v, f, gu, gv, ncg, _ = c
        huu = 1200.0 * u * u - 400.0 * v + 2.0
        huv = -400.0 * u
        gg = dot(gu, gv, gu, gv)
        gnorm = jnp.sqrt(gg)
        eps = jnp.minimum(0.5, jnp.sqrt(gnorm)) * gnorm

        def cg_cond(s):
            j, zu, zv, ru, rv, du, dv, rr, done, pu, pv = s
            return (~done) & (j < max_cg)

        def cg_body(s):
            j, zu, zv, ru, rv, du, dv, rr, done, pu, pv = s
            hdu = huu * du + huv * dv
            hdv = huv * du + 200.0 * dv
            curv = dot(du, dv, hdu, hdv)
            neg = ~(curv > 0.0) | ~jnp.isfinite(curv)   # as optbench's truncated_cg
            alpha = rr / jnp.where(neg, 1.0, curv)
            zu2, zv2 = zu + alpha * du, zv + alpha * dv
            ru2, rv2 = ru + alpha * hdu, rv + alpha * hdv
            rr2 = dot(ru2, rv2, ru2, rv2)
            conv = jnp.sqrt(rr2) <= eps
            beta = rr2 / rr
            # on negative curvature: the iterate so far, or steepest descent if there is none
            nu = jnp.where(j == 0, -gu, zu)
            nv = jnp.where(j == 0, -gv, zv)
            pu = jnp.where(neg, nu, zu2)
            pv = jnp.where(neg, nv, zv2)
            return (j + 1, zu2, zv2, ru2, rv2, -ru2 + beta * du, -rv2 + beta * dv, rr2, neg | conv, pu, pv)

        zero = jnp.zeros_like(u)
        j, *_, pu, pv = jax.lax.while_loop(
            cg_cond, cg_body, (jnp.int32(0), zero, zero, gu, gv, -gu, -gv, gg, jnp.asarray(False), -gu, -gv))
        slope = dot(gu, gv, pu, pv)

        def accepted(alpha, ft):
            return jnp.isfinite(ft) & (ft <= f + c1 * alpha * slope)

        def ls_cond(l):
            alpha, ft, n = l
            # no descent (slope ≥ 0) fails at once, as in optbench's armijo_backtracking
            return ~accepted(alpha, ft) & (n < max_backtracks) & (slope < 0)

        def ls_body(l):
            alpha, ft, n = l
            denom = 2.0 * (ft - f - slope * alpha)
            aq = -slope * alpha * alpha / jnp.where(denom > 0, denom, 1.0)
            aq = jnp.where(jnp.isfinite(ft) & (denom > 0), aq, 0.1 * alpha)
            alpha = jnp.clip(aq, 0.1 * alpha, shrink * alpha)
            return alpha, fval(u + alpha * pu, v + alpha * pv), n + 1

        one = jnp.ones((), dt)
        alpha, ft, _ = jax.lax.while_loop(ls_cond, ls_body, (one, fval(u + pu, v + pv), jnp.int32(1)))
        # a failed search takes no step (it used to take the last, rejected trial — uphill — and
        # go on) and ends the run; the iteration and its CG products still count, as in optbench
        ok = accepted(alpha, ft) & (slope < 0)
        u, v = jnp.where(ok, u + alpha * pu, u), jnp.where(ok, v + alpha * pv, v)
        f, gu, gv = fg(u, v)
        return k + 1, u, v, f, gu, gv, ncg + j, ~ok

    def cond(c):
        k, u, v, f, gu, gv, _, failed = c
        return (k < max_iter) & (dot(gu, gv, gu, gv) > gtol * gtol) & ~failed

    f, gu, gv = fg(u, v)
    # a start with a non-finite f or ‖g‖ takes no step (optbench: diverged at iteration 0)
    bad = ~(jnp.isfinite(f) & jnp.isfinite(dot(gu, gv, gu, gv)))
    k, u, v, f, gu, gv, ncg, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), u, v, f, gu, gv, jnp.int32(0), bad))
    x = jnp.stack([u, v], axis=1).reshape(-1)
    return x, f, jnp.sqrt(dot(gu, gv, gu, gv)), k, ncg


# --------------------------------------------------------------------------------------------
# Least squares ‖Xw − y‖² read once per gradient: row blocks that stay in cache
# --------------------------------------------------------------------------------------------
# the kernel lives with the problems (``linreg`` uses it); re-exported here for the floor
from problems.lsq import block_rows_for, sse, sse_value_and_grad_blocked  # noqa: E402,F401


@functools.partial(jax.jit, static_argnames=("iters", "block_rows"))
def linreg_gd_blocked(xt, y, w0, lr, iters, block_rows=None):
    """``iters`` steps of gradient descent w ← w − lr·∇‖Xw − y‖², one pass over X per step, for X
    stored as ``xt`` = Xᵀ (d, m).

    Returns (w, f at the last iterate before the final step).
    """
    def body(_, c):
        w, _ = c
        f, g = sse_value_and_grad_blocked(w, xt, y, block_rows)
        return w - lr * g, f

    return jax.lax.fori_loop(0, iters, body, (w0, jnp.zeros((), xt.dtype)))
