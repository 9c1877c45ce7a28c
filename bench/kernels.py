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
