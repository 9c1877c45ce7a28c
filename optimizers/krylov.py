"""Matrix-free inner solvers on Hessian-vector products: truncated CG and Steihaug-CG.

Both solve the Newton system ∇²f p = −∇f approximately by linear conjugate gradients
(Hestenes & Stiefel 1952), touching the Hessian only through products ``hvp(v)``, so they never
form an n×n matrix and work at n = 10⁶. Each is a ``lax.while_loop`` that counts its products.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def forcing_tolerance(g):
    """Inexact-Newton stopping tolerance η‖g‖ with η = min(0.5, √‖g‖): superlinear convergence
    (Dembo, Eisenstat & Steihaug 1982; N&W eq. 7.3 and Thm 7.2), as scipy's Newton-CG uses."""
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
    dtype = g.dtype
    tiny = jnp.finfo(dtype).tiny

    def cond(c: _CG):
        return (~c.done) & (c.j < max_iter)

    def body(c: _CG):
        hd = hvp(c.d)
        curv = jnp.vdot(c.d, hd)
        neg = ~(curv > tiny * jnp.vdot(c.d, c.d)) | ~jnp.isfinite(curv)
        alpha = c.rr / jnp.where(neg, 1.0, curv)
        p = c.p + alpha * c.d
        r = c.r + alpha * hd
        rr = jnp.vdot(r, r)
        conv = jnp.sqrt(rr) <= tol
        d = -r + (rr / jnp.where(c.rr > 0, c.rr, 1.0)) * c.d
        keep = lambda new, old: jnp.where(neg, old, new)  # noqa: E731
        p_neg = jnp.where(c.j == 0, -g, c.p)
        return _CG(jnp.where(neg, p_neg, p), keep(r, c.r), keep(d, c.d), keep(rr, c.rr), c.j + 1, neg | conv,
                   c.neg | neg)

    rr0 = jnp.vdot(g, g)
    c0 = _CG(jnp.zeros_like(g), g, -g, rr0, jnp.int32(0), jnp.sqrt(rr0) <= tol, jnp.asarray(False))
    c = jax.lax.while_loop(cond, body, c0)
    return c.p, c.j, c.neg


class _Steihaug(NamedTuple):
    z: jnp.ndarray
    r: jnp.ndarray       # Hz + g, the model's gradient at z
    d: jnp.ndarray
    rr: jnp.ndarray
    j: jnp.ndarray
    done: jnp.ndarray
    boundary: jnp.ndarray


def _to_boundary(z, d, radius):
    """The two τ with ‖z + τd‖ = Δ (τ₋ ≤ 0 ≤ τ₊ when ‖z‖ ≤ Δ)."""
    a = jnp.vdot(d, d)
    b = 2.0 * jnp.vdot(z, d)
    c = jnp.vdot(z, z) - radius * radius
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

    Returns (p, predicted reduction, products used, hits_boundary).
    """
    dtype = g.dtype
    tiny = jnp.finfo(dtype).tiny

    def cond(c: _Steihaug):
        return (~c.done) & (c.j < max_iter)

    def body(c: _Steihaug):
        hd = hvp(c.d)
        curv = jnp.vdot(c.d, hd)
        neg = ~(curv > tiny * jnp.vdot(c.d, c.d)) | ~jnp.isfinite(curv)
        alpha = c.rr / jnp.where(neg, 1.0, curv)
        z_new = c.z + alpha * c.d
        outside = jnp.vdot(z_new, z_new) >= radius * radius
        t_lo, t_hi = _to_boundary(c.z, c.d, radius)
        # model change along d from z: τ dᵀr + ½τ² dᵀHd
        dr = jnp.vdot(c.d, c.r)
        m_lo = t_lo * dr + 0.5 * t_lo * t_lo * curv
        m_hi = t_hi * dr + 0.5 * t_hi * t_hi * curv
        tau = jnp.where(neg & (m_lo < m_hi), t_lo, t_hi)
        to_edge = neg | outside
        z = jnp.where(to_edge, c.z + tau * c.d, z_new)
        r = jnp.where(to_edge, c.r + tau * hd, c.r + alpha * hd)
        rr = jnp.vdot(r, r)
        conv = jnp.sqrt(rr) <= tol
        d = -r + (rr / jnp.where(c.rr > 0, c.rr, 1.0)) * c.d
        return _Steihaug(z, r, d, rr, c.j + 1, to_edge | conv, to_edge)

    rr0 = jnp.vdot(g, g)
    c0 = _Steihaug(jnp.zeros_like(g), g, -g, rr0, jnp.int32(0), jnp.sqrt(rr0) <= tol, jnp.asarray(False))
    c = jax.lax.while_loop(cond, body, c0)
    pred = -0.5 * (jnp.vdot(g, c.z) + jnp.vdot(c.z, c.r))
    return c.z, pred, c.j, c.boundary
