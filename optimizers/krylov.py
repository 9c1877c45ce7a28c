"""Matrix-free inner solvers on Hessian-vector products: truncated CG and Steihaug-CG.

Both solve the Newton system ∇²f p = −∇f approximately by linear conjugate gradients
(Hestenes & Stiefel 1952), touching the Hessian only through products ``hvp(v)``, so they never
form an n×n matrix and work at n = 10⁶. Each is a ``lax.while_loop`` that counts its products.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .base import lanes_while


def forcing_tolerance(g):
    """Inexact-Newton stopping tolerance η‖g‖ with η = min(0.5, √‖g‖), ‖·‖ the 2-norm: superlinear
    convergence (Dembo, Eisenstat & Steihaug 1982; N&W eq. 7.3, Thm 7.2 and Alg. 7.1). scipy's
    Newton-CG uses the same rule in the 1-norm (of g and of the CG residual), so its inner loops
    stop elsewhere and its iterates differ from these."""
    gn = jnp.linalg.norm(g)
    return jnp.minimum(0.5, jnp.sqrt(gn)) * gn


class _CG(NamedTuple):
    p: jnp.ndarray
    r: jnp.ndarray
    d: jnp.ndarray
    rr: jnp.ndarray
    j: jnp.ndarray
    done: jnp.ndarray
    neg: jnp.ndarray


def truncated_cg(hvp, g, tol, max_iter):
    """Approximate solution of H p = −g by CG, stopped at ‖Hp + g‖ ≤ ``tol``, after ``max_iter``
    products, or at the first direction of non-positive curvature (N&W Alg. 7.1): there the
    iterate so far is returned, or −g if that is still zero, so the result is always a descent
    direction. Returns (p, number of Hessian-vector products, negative curvature met)."""

    def cond(c: _CG):
        return (~c.done) & (c.j < max_iter)

    def body(c: _CG):
        hd = hvp(c.d)
        curv = jnp.vdot(c.d, hd)
        neg = ~(curv > 0) | ~jnp.isfinite(curv)
        alpha = c.rr / jnp.where(neg, 1.0, curv)
        # −g on the first trip is d₀ (the carried d, not g captured: a captured −g made XLA copy
        # the loop's initial d)
        p_neg = jnp.where(c.j == 0, c.d, c.p)
        p = jnp.where(neg, p_neg, c.p + alpha * c.d)
        r = c.r + alpha * hd
        rr = jnp.vdot(r, r)
        conv = jnp.sqrt(rr) <= tol
        d = -r + (rr / jnp.where(c.rr > 0, c.rr, 1.0)) * c.d
        # on negative curvature the loop ends with p; r, d and rr are not used again
        return _CG(p, r, d, rr, c.j + 1, neg | conv, c.neg | neg)

    rr0 = jnp.vdot(g, g)
    c0 = _CG(jnp.zeros_like(g), g, -g, rr0, jnp.int32(0), jnp.sqrt(rr0) <= tol, jnp.asarray(False))
    c = lanes_while(cond, body, c0, keep=("p", "j", "done", "neg"))
    return c.p, c.j, c.neg


class _Steihaug(NamedTuple):
    z: jnp.ndarray
    r: jnp.ndarray       # Hz + g, the model's gradient at z
    d: jnp.ndarray
    rr: jnp.ndarray
    zz: jnp.ndarray      # ‖z‖², zᵀd, ‖d‖²: carried by recurrences, not recomputed
    zd: jnp.ndarray
    dd: jnp.ndarray
    j: jnp.ndarray
    done: jnp.ndarray
    boundary: jnp.ndarray


def _to_boundary(zz, zd, dd, radius):
    """The two τ with ‖z + τd‖ = Δ (τ₋ ≤ 0 ≤ τ₊ when ‖z‖ ≤ Δ), from ‖z‖², zᵀd and ‖d‖²."""
    a = dd
    b = 2.0 * zd
    c = zz - radius * radius
    sq = jnp.sqrt(jnp.maximum(b * b - 4.0 * a * c, 0.0))
    a = jnp.where(a > 0, a, 1.0)
    # the numerically stable pair of roots
    q = -0.5 * (b + jnp.where(b >= 0, sq, -sq))
    t1 = q / a
    t2 = c / jnp.where(q != 0, q, 1.0)
    return jnp.minimum(t1, t2), jnp.maximum(t1, t2)


def steihaug_cg(hvp, g, radius, tol, max_iter):
    """Steihaug–Toint truncated CG for the trust-region subproblem min gᵀp + ½pᵀHp, ‖p‖ ≤ Δ
    (Steihaug 1983, SIAM J. Numer. Anal. 20:626; Toint 1981; N&W Alg. 7.2).

    CG from p = 0 until the residual ‖Hp + g‖ ≤ ``tol``; a step that would leave the region, or a
    direction of non-positive curvature, is followed to the boundary (the boundary point of lower
    model value, for negative curvature). The model's gradient r = Hp + g is carried along, so
    the predicted reduction −m(p) = −½(gᵀp + pᵀr) costs no extra product.

    The norms the boundary test needs come from the recurrences of CG started at z = 0 (Conn,
    Gould & Toint 2000, *Trust-Region Methods*, §7.5.1): with rᵀd = −rᵀr and z⁺ᵀr⁺ = r⁺ᵀd = 0,
    ‖z⁺‖² = ‖z‖² + 2α zᵀd + α²‖d‖², z⁺ᵀd⁺ = β(zᵀd + α‖d‖²), ‖d⁺‖² = ‖r⁺‖² + β²‖d‖², so a
    trip costs one product and two inner products (dᵀHd, ‖r‖²), not six passes over n.

    Returns (p, predicted reduction, products used, hits_boundary).
    """
    def cond(c: _Steihaug):
        return (~c.done) & (c.j < max_iter)

    def body(c: _Steihaug):
        hd = hvp(c.d)
        curv = jnp.vdot(c.d, hd)
        neg = ~(curv > 0) | ~jnp.isfinite(curv)
        alpha = c.rr / jnp.where(neg, 1.0, curv)
        zz_new = c.zz + 2.0 * alpha * c.zd + alpha * alpha * c.dd
        outside = zz_new >= radius * radius
        t_lo, t_hi = _to_boundary(c.zz, c.zd, c.dd, radius)
        # model change along d from z: τ dᵀr + ½τ² dᵀHd, with dᵀr = −rᵀr
        m_lo = -t_lo * c.rr + 0.5 * t_lo * t_lo * curv
        m_hi = -t_hi * c.rr + 0.5 * t_hi * t_hi * curv
        tau = jnp.where(neg & (m_lo < m_hi), t_lo, t_hi)
        to_edge = neg | outside
        step = jnp.where(to_edge, tau, alpha)
        z = c.z + step * c.d
        r = c.r + step * hd
        rr = jnp.vdot(r, r)
        conv = jnp.sqrt(rr) <= tol
        beta = rr / jnp.where(c.rr > 0, c.rr, 1.0)
        d = -r + beta * c.d
        # after a step to the boundary the loop ends: the recurrences need not hold there
        return _Steihaug(z, r, d, rr, zz_new, beta * (c.zd + alpha * c.dd), rr + beta * beta * c.dd, c.j + 1,
                         to_edge | conv, to_edge)

    rr0 = jnp.vdot(g, g)
    zero = jnp.zeros((), g.dtype)
    c0 = _Steihaug(jnp.zeros_like(g), g, -g, rr0, zero, zero, rr0, jnp.int32(0), jnp.sqrt(rr0) <= tol,
                   jnp.asarray(False))
    c = lanes_while(cond, body, c0, keep=("z", "r", "j", "done", "boundary"))
    pred = -0.5 * (jnp.vdot(g, c.z) + jnp.vdot(c.z, c.r))
    return c.z, pred, c.j, c.boundary
