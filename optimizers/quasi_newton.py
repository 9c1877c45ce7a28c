"""Quasi-Newton methods: BFGS on the inverse Hessian and limited-memory BFGS (two-loop recursion).

Both build curvature from gradient differences y = ∇f_{k+1} − ∇f_k along steps s = x_{k+1} − x_k,
take the direction d = −H∇f and a strong-Wolfe line search, whose curvature condition keeps
sᵀy > 0 and so H positive definite (Nocedal & Wright ch. 6–7). L-BFGS takes H₀ = (sᵀy/yᵀy) I
from the newest pair (N&W eq. 7.20); BFGS starts from H₀ = I. A pair with sᵀy ≤ √ε‖s‖‖y‖ is
skipped. A search that finds no decrease along −Hg resets the
memory and retries along −∇f before the start is declared failed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from optbench_core import OptbenchError

from . import linesearch as ls
from .base import STATUS_LINESEARCH_FAILED, Optimizer, State, initial_state
from .dense import mv


def _curvature_ok(s, y):
    sy = jnp.vdot(s, y)
    return sy > jnp.sqrt(jnp.finfo(s.dtype).eps) * jnp.linalg.norm(s) * jnp.linalg.norm(y), sy


def _finish(s: State, res, reset, aux, fresh_at) -> State:
    """The State after a quasi-Newton step; ``aux`` gets ``fresh_at`` appended, (f, x) where the
    curvature memory was last fresh.

    The start ends with ``linesearch_failed`` when a search finds no decrease even along a fresh
    direction (−∇f, or the first step), and when the memory starts afresh back where it last did
    — f no lower, every coordinate within :data:`CYCLE_RTOL`·ε — so that every step since was at
    f's round-off level, which the approximate Wolfe test accepts even when f rises by up to
    100ε|f|. Without that rule such a start cycled — a −∇f step lowering f by an ulp, a
    quasi-Newton step raising it by one, a failed search that resets the memory — to max_iter
    (float32 linreg at gtol 1e-30: 2 of 4 starts, bfgs and lbfgs alike, ran 3,000 iterations and
    up to 10⁴ evaluations at f*). Measured on the mgh and nist suites (float64), no start lost:
    lbfgs MGH 120 → 123 of 140 solved, 58,494 → 33,644 evaluations, NIST 44 → 46 of 54,
    46,771 → 30,176; bfgs NIST 49 → 51, 46,806 → 16,898, MGH 127 (16,268 → 16,014) — starts
    that sat at f* until max_iter now stop by themselves.
    """
    f_fresh, x_fresh = fresh_at
    tol = CYCLE_RTOL * jnp.finfo(s.x.dtype).eps

    def at_reset(x_fresh):
        return jnp.all(jnp.abs(s.x - x_fresh) <= tol * jnp.abs(s.x)), s.x

    # two passes over n for a rare event: on one start (unbatched) the conditional skips them
    # (L-BFGS at n = 10⁶: ≈ 7 % an iteration done unconditionally); under vmap it is a select
    near, x_fresh = jax.lax.cond(reset, at_reset, lambda x_fresh: (jnp.asarray(False), x_fresh), x_fresh)
    cycling = reset & ~(s.f < f_fresh) & near
    give_up = (~res.moved & reset) | cycling
    f_fresh = jnp.where(reset, s.f, f_fresh)
    new = ls.apply(s, res, fail_status=False, aux=aux + ((f_fresh, x_fresh),))
    return new._replace(status=jnp.where(give_up, STATUS_LINESEARCH_FAILED, s.status).astype(s.status.dtype))


#: a fresh start of the memory counts as a cycle only where every coordinate is within
#: CYCLE_RTOL·ε (relative) of where the previous fresh start was: on a plateau x still moves while
#: f does not change (NIST BoxBOD from start 2, Roszman1 from start 1 went on to converge)
CYCLE_RTOL = 1e3


def _never_fresh(x0):
    return (jnp.asarray(jnp.inf, x0.dtype), jnp.full_like(x0, jnp.inf))


def bfgs(c1: float = 1e-4, c2: float = 0.9, max_evals: int = 30, init_scale: bool = False) -> Optimizer:
    """BFGS with the inverse-Hessian update (Broyden, Fletcher, Goldfarb, Shanno 1970; N&W
    Alg. 6.1, eq. 6.17): H ← (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ, ρ = 1/yᵀs, O(n²) per step, and a
    strong-Wolfe line search (``c1``, ``c2``, ``max_evals`` f+gradient trials) whose first trial
    is α₀ = min(1, 1.01·2(f_k − f_{k−1})/∇f_kᵀd_k) (N&W eq. 3.60, as scipy's BFGS; a unit-length
    step on the first iteration). Measured on MGH + NIST, always trying α = 1 first instead lost
    five NIST fits (Lanczos1–3, Nelson, Rat43 from start 1) to early stalls. ``init_scale``: rescale H₀ = I by
    sᵀy/yᵀy before the first update (N&W eq. 6.20); off by default, as in scipy, because on
    ill-conditioned problems it sets H₀ to the stiffest curvature and slows the early steps
    (measured: 64–76 iterations instead of 11 on a κ = 10⁴ quadratic in 10-D). With an exact line search (c2 → 0)
    on a strictly convex quadratic it generates conjugate directions and terminates in at most n
    steps (Dixon 1972; Fletcher, *Practical Methods of Optimization*, 1987, Thm 3.4.1).
    """
    if not (0 < c1 < c2 < 1 and max_evals >= 1):
        raise OptbenchError("bfgs: need 0 < c1 < c2 < 1 and max_evals >= 1")

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        n = x0.shape[0]
        # aux: inverse Hessian, number of updates so far, previous f
        return s._replace(aux=(jnp.eye(n, dtype=x0.dtype), jnp.int32(0), s.f + 0.5 * jnp.linalg.norm(s.g),
                               _never_fresh(x0)))

    def step(oracle, s: State) -> State:
        h, k, f_prev, fresh_at = s.aux
        d = -mv(h, s.g)
        slope = jnp.vdot(s.g, d)
        fresh = k == 0
        bad = ~(slope < 0) | ~jnp.isfinite(slope)
        reset = bad | fresh
        eye = jnp.eye(s.x.shape[0], dtype=s.x.dtype)
        h = jnp.where(bad, eye, h)
        d = jnp.where(bad, -s.g, d)
        # N&W eq. 3.60: the step that repeats last iteration's decrease, capped at the
        # quasi-Newton step (f_prev starts at f + ‖g‖/2, so the first step has unit length)
        alpha0 = jnp.minimum(1.0, 1.01 * 2.0 * (s.f - f_prev) / jnp.vdot(s.g, d))
        alpha0 = jnp.where((alpha0 > 0) & jnp.isfinite(alpha0), alpha0, 1.0)
        res = ls.search("wolfe", oracle, s.x, s.f, s.g, d, alpha0, c1=c1, c2=c2, max_evals=max_evals)
        sv = res.x - s.x
        y = res.g - s.g
        ok, sy = _curvature_ok(sv, y)
        ok = ok & res.moved
        rho = 1.0 / jnp.where(ok, sy, 1.0)
        yy = jnp.vdot(y, y)
        h0 = jnp.where(k == 0, (sy / jnp.where(yy > 0, yy, 1.0)) * eye, h) if init_scale else h
        hy = mv(h0, y)
        h_new = h0 - rho * (jnp.outer(hy, sv) + jnp.outer(sv, hy)) + (rho * rho * jnp.vdot(y, hy) + rho) * jnp.outer(sv, sv)
        # no decrease along a quasi-Newton direction: forget the curvature (H = I, k = 0) and
        # retry along −g next iteration; a failure along a fresh direction ends the start
        h = jnp.where(ok, h_new, jnp.where(res.moved, h, eye))
        k = jnp.where(ok, k + 1, jnp.where(res.moved, k, 0))
        return _finish(s, res, reset, (h, k, s.f), fresh_at)

    return Optimizer("bfgs", init, step, {"c1": c1, "c2": c2, "max_evals": max_evals, "init_scale": init_scale},
                     description="BFGS, inverse-Hessian update, strong-Wolfe line search")


def two_loop_coefficients(ps, py, sy_mat, yy_mat, rho, head, count, gamma):
    """The L-BFGS two-loop recursion (Nocedal 1980, Math. Comp. 35:773; N&W Alg. 7.4) run on
    inner products instead of vectors ("vector-free" L-BFGS, Chen et al. 2014, NeurIPS): given
    Sᵀg, Yᵀg and the small matrices SᵀY, YᵀY of the stored pairs (circular buffers whose newest
    pair sits in slot head − 1), returns (c_s, c_y) with H·g = γg + Sᵀc_s + Yᵀc_y, H₀ = γI.

    The recursion itself is O(m²) scalar work; the n-dimensional work is two matrix-vector
    products before (Sᵀg, Yᵀg) and one after (combining S and Y), each one pass over the memory,
    where the textbook vector loops make 4m passes with a row copy each.
    """
    m = ps.shape[0]
    zeros = jnp.zeros((m,), ps.dtype)

    def newest_first(i, a):
        j = (head - 1 - i) % m
        # α_j = ρ_j s_jᵀq with q = g − Σ_{newer l} α_l y_l; ``a`` holds the newer α's, zeros elsewhere
        aj = rho[j] * (ps[j] - jnp.vdot(sy_mat[j], a))
        return a.at[j].set(jnp.where(i < count, aj, 0.0))

    a = jax.lax.fori_loop(0, m, newest_first, zeros)
    yq = py - yy_mat @ a  # y_jᵀq for the final q of the first loop

    def oldest_first(i, w):
        j = (head - count + i) % m
        # β_j = ρ_j y_jᵀr with r = γq + Σ_{older l} (α_l − β_l) s_l; ``w`` holds the older (α − β)
        bj = rho[j] * (gamma * yq[j] + jnp.vdot(w, sy_mat[:, j]))
        return w.at[j].set(jnp.where(i < count, a[j] - bj, 0.0))

    w = jax.lax.fori_loop(0, m, oldest_first, zeros)
    return w, -gamma * a


def _lbfgs_search(oracle, s: State, d, slope, empty, c1, c2, max_evals):
    """L-BFGS's step along d: −∇f instead where d does not descend, first trial α = 1 (a unit
    step in x when the memory is empty or was just reset), strong-Wolfe search, and the new pair
    (s, y) with its curvature test. Returns (result, bad, reset, s, y, pair ok, sᵀy)."""
    g = s.g
    bad = ~(slope < 0) | ~jnp.isfinite(slope)
    reset = bad | empty
    d = jnp.where(bad, -g, d)
    alpha0 = jnp.where(reset, ls.first_step(g), 1.0)
    res = ls.search("wolfe", oracle, s.x, s.f, g, d, alpha0, c1=c1, c2=c2, max_evals=max_evals)
    sv = res.x - s.x
    y = res.g - g
    ok, sy = _curvature_ok(sv, y)
    return res, bad, reset, sv, y, ok & res.moved, sy


#: L-BFGS memories of at most this many numbers per start (memory × n) keep their pairs in a
#: fixed order, shifted by one row when a pair is added, and run the textbook two-loop recursion
#: with rows picked by the loop counter (the same for every start). Larger ones use circular buffers and the vector-free recursion, which
#: never copy the memory (a shift would rewrite 160 MB per step at n = 10⁶, m = 10). Under vmap
#: the circular buffers' per-start slot becomes a gather/scatter that XLA's CPU backend runs one
#: element at a time: measured on 1,000 2-D Rosenbrock starts, 3 ms per iteration against 0.2 ms
#: for the fixed order.
LBFGS_SMALL_MAX = 4096

#: L-BFGS on at most this many variables forms its n×n inverse-Hessian approximation (from the
#: stored pairs, afresh each step) instead of running the two-loop recursion; see
#: :func:`_lbfgs_inverse_hessian`.
LBFGS_DENSE_MAX = 2


def _two_loop(s_mem, y_mem, rho, count, gamma, g):
    """−H g by the two-loop recursion (N&W Alg. 7.4) over pairs stored in a fixed order (row
    m − 1 newest; the last ``count`` rows hold pairs), H₀ = γI."""
    m = s_mem.shape[0]

    def newest_first(i, c):
        q, a = c
        j = m - 1 - i
        aj = jnp.where(j >= m - count, rho[j] * jnp.sum(s_mem[j] * q), 0.0)
        return q - aj * y_mem[j], a.at[j].set(aj)

    def oldest_first(j, r):
        bj = rho[j] * jnp.sum(y_mem[j] * r)
        return r + jnp.where(j >= m - count, a[j] - bj, 0.0) * s_mem[j]

    # the loop counter indexes the rows, the same for every start: a slice, not a gather
    q, a = jax.lax.fori_loop(0, m, newest_first, (g, jnp.zeros((m,), g.dtype)))
    return -jax.lax.fori_loop(0, m, oldest_first, gamma * q)


def _lbfgs_inverse_hessian(s_mem, y_mem, rho, count, gamma):
    """The matrix the two-loop recursion applies, formed: from H = γI, each stored pair oldest
    first, H ← (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ = H − ρ(s uᵀ + u sᵀ) + (ρ² yᵀu + ρ) ssᵀ with
    u = Hy (N&W eq. 7.19). O(m n²) instead of O(m n), but one loop of m trips, each one small
    fused update, where the recursion runs two loops of m trips with several kernels each: for
    thousands of small starts at once the kernels' fixed cost, not the arithmetic, sets the pace.
    Measured in one process against the recursion on Rosenbrock, 10³ / 10⁴ starts: 2-D 1.01× /
    0.76× the time (compile 0.81–0.96×), 3-D 1.16× / 0.99×, 4-D 0.91× / 1.00×, 8-D 1.76× at 10³
    (hence :data:`LBFGS_DENSE_MAX`)."""
    m, n = s_mem.shape

    def update(j, h):
        sv, y, r = s_mem[j], y_mem[j], rho[j]
        u = mv(h, y)
        k = r * r * jnp.sum(y * u) + r
        new = h - r * (sv[:, None] * u[None, :] + u[:, None] * sv[None, :]) + k * sv[:, None] * sv[None, :]
        return jnp.where(j >= m - count, new, h)

    return jax.lax.fori_loop(0, m, update, gamma * jnp.eye(n, dtype=s_mem.dtype))


def lbfgs(memory: int = 10, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 30) -> Optimizer:
    """Limited-memory BFGS (Liu & Nocedal 1989, Math. Prog. 45:503; N&W Alg. 7.5): the last
    ``memory`` pairs (s, y) define H implicitly, applied by the two-loop recursion with
    H₀ = (sᵀy/yᵀy) I from the newest pair; strong-Wolfe line search (``c1``, ``c2``,
    ``max_evals``) from α = 1. O(memory·n) memory and work per step: never forms an n×n matrix.

    The recursion runs on inner products (:func:`two_loop_coefficients`): per iteration the
    memory is read three times (Sᵀg and Yᵀg, then the combination), and the small matrices SᵀY
    and YᵀY are kept up to date without further passes: the new pair's products with the stored
    y's follow from dᵀY (known in coefficients), and those with the stored s's and y's from the
    next iteration's Sᵀg, Yᵀg minus this one's (y = g_new − g). Memories of at most
    :data:`LBFGS_SMALL_MAX` numbers (many small starts at once) keep their pairs in order instead
    and run the textbook vector loops, which vectorise across starts; on at most
    :data:`LBFGS_DENSE_MAX` variables they form the n×n matrix those loops apply instead
    (:func:`_lbfgs_inverse_hessian`).
    """
    if not (memory >= 1 and 0 < c1 < c2 < 1 and max_evals >= 1):
        raise OptbenchError("lbfgs: need memory >= 1, 0 < c1 < c2 < 1 and max_evals >= 1")

    def small(x):
        return memory * x.shape[0] <= LBFGS_SMALL_MAX

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        n, dt = x0.shape[0], x0.dtype
        m = memory
        if small(x0):
            # aux: S, Y (rows oldest to newest, the newest pair in the last row), ρ, pairs stored, γ
            return s._replace(aux=(jnp.zeros((m, n), dt), jnp.zeros((m, n), dt), jnp.zeros((m,), dt), jnp.int32(0),
                                   jnp.ones((), dt), _never_fresh(x0)))
        zm, zmm = jnp.zeros((m,), dt), jnp.zeros((m, m), dt)
        # aux: S, Y, ρ, SᵀY, YᵀY, next slot, pairs stored, γ, and the deferred update of the newest
        # pair: pending?, its slot, its sᵀy and yᵀy, Sᵀg and Yᵀg from the step that added it
        return s._replace(aux=(jnp.zeros((m, n), dt), jnp.zeros((m, n), dt), zm, zmm, zmm, jnp.int32(0),
                               jnp.int32(0), jnp.ones((), dt), jnp.asarray(False), jnp.int32(0), jnp.ones((), dt),
                               jnp.ones((), dt), zm, zm, _never_fresh(x0)))

    def step_small(oracle, s: State) -> State:
        s_mem, y_mem, rho, count, gamma, fresh_at = s.aux
        m = memory
        g = s.g
        gamma = jnp.where(count == 0, 1.0, gamma)  # an empty memory (start, or reset) means H = I
        if g.shape[0] <= LBFGS_DENSE_MAX:
            d = -mv(_lbfgs_inverse_hessian(s_mem, y_mem, rho, count, gamma), g)
        else:
            d = _two_loop(s_mem, y_mem, rho, count, gamma, g)
        res, bad, reset, sv, y, ok, sy = _lbfgs_search(oracle, s, d, jnp.sum(g * d), count == 0, c1, c2, max_evals)
        count = jnp.where(bad, 0, count)
        yy = jnp.sum(y * y)
        # an accepted pair enters as the last row and the oldest leaves (m·n numbers: small here)
        s_mem = jnp.where(ok, jnp.concatenate([s_mem[1:], sv[None]]), s_mem)
        y_mem = jnp.where(ok, jnp.concatenate([y_mem[1:], y[None]]), y_mem)
        rho = jnp.where(ok, jnp.concatenate([rho[1:], (1.0 / jnp.where(ok, sy, 1.0))[None]]), rho)
        gamma = jnp.where(ok, sy / jnp.where(yy > 0, yy, 1.0), gamma)
        count = jnp.where(ok, jnp.minimum(count + 1, m), jnp.where(res.moved, count, 0))
        return _finish(s, res, reset, (s_mem, y_mem, rho, count, gamma), fresh_at)

    def step(oracle, s: State) -> State:
        if small(s.x):
            return step_small(oracle, s)
        (s_mem, y_mem, rho, sy_mat, yy_mat, head, count, gamma, pending, slot_p, sy_p, yy_p, ps_p, py_p,
         fresh_at) = s.aux
        g = s.g
        ps, py = s_mem @ g, y_mem @ g
        # finish the products of the pair added last step: s_jᵀy_new and y_jᵀy_new for the others
        col_s = (ps - ps_p).at[slot_p].set(sy_p)
        col_y = (py - py_p).at[slot_p].set(yy_p)
        sy_mat = jnp.where(pending, sy_mat.at[:, slot_p].set(col_s), sy_mat)
        yy_mat = jnp.where(pending, yy_mat.at[:, slot_p].set(col_y).at[slot_p, :].set(col_y), yy_mat)
        gamma = jnp.where(count == 0, 1.0, gamma)  # an empty memory (start, or reset) means H = I
        c_s, c_y = two_loop_coefficients(ps, py, sy_mat, yy_mat, rho, head, count, gamma)
        d = -(gamma * g + c_s @ s_mem + c_y @ y_mem)
        d_y = -(gamma * py + c_y @ yy_mat + c_s @ sy_mat)  # dᵀy_j for every stored y_j
        res, bad, reset, sv, y, ok, sy = _lbfgs_search(oracle, s, d, jnp.vdot(g, d), count == 0, c1, c2, max_evals)
        count = jnp.where(bad, 0, count)
        yy = jnp.vdot(y, y)
        slot = head % memory
        # write one row (the old one back when the pair is skipped): never copy whole buffers
        s_mem = s_mem.at[slot].set(jnp.where(ok, sv, s_mem[slot]))
        y_mem = y_mem.at[slot].set(jnp.where(ok, y, y_mem[slot]))
        rho = rho.at[slot].set(jnp.where(ok, 1.0 / jnp.where(ok, sy, 1.0), rho[slot]))
        row = jnp.where(bad, -py, d_y) * res.alpha  # s_newᵀy_j = α dᵀy_j (d = −g after a reset)
        sy_mat = jnp.where(ok, sy_mat.at[slot, :].set(row.at[slot].set(sy)), sy_mat)
        gamma = jnp.where(ok, sy / jnp.where(yy > 0, yy, 1.0), gamma)
        head = jnp.where(ok, (head + 1) % memory, head)
        count = jnp.where(ok, jnp.minimum(count + 1, memory), jnp.where(res.moved, count, 0))
        return _finish(s, res, reset, (s_mem, y_mem, rho, sy_mat, yy_mat, head, count, gamma, ok, slot, sy, yy, ps, py),
                       fresh_at)

    return Optimizer("lbfgs", init, step, {"memory": memory, "c1": c1, "c2": c2, "max_evals": max_evals},
                     description="limited-memory BFGS, two-loop recursion, strong-Wolfe line search")
