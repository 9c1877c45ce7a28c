"""Step-size rules shared by every line-search method.

Two rules, each a ``lax.while_loop`` so it runs compiled and vmapped, each counting what it
evaluates:

* **Armijo backtracking** (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.1, with
  the safeguarded quadratic interpolation of §3.5): accept the first α with
  f(x + αd) ≤ f(x) + c₁ α ∇f·d. One f-evaluation per trial, plus one gradient at the accepted
  point.
* **Strong Wolfe** (N&W Alg. 3.5 bracketing + Alg. 3.6 zoom, cubic interpolation eq. 3.59):
  sufficient decrease and |∇f(x + αd)·d| ≤ c₂ |∇f(x)·d|. One f+gradient evaluation per trial;
  the accepted point's gradient comes with it. Near a minimiser, where f differences are lost
  to round-off, the approximate Wolfe conditions of Hager & Zhang (2005, SIAM J. Optim. 16:170,
  "T2") are also accepted, so the search does not fail merely because f stopped decreasing
  measurably.

:func:`search` picks a rule by name and returns the new point, value and gradient, so a method
is a direction plus a rule name (``linesearch="armijo"`` or ``"wolfe"``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import STATUS_LINESEARCH_FAILED, lanes_while, take_if

RULES = ("armijo", "wolfe")


class LineSearchResult(NamedTuple):
    alpha: jnp.ndarray   # accepted step (0 if failed)
    f_new: jnp.ndarray   # f(x + alpha d)
    nfev: jnp.ndarray    # f-evaluations spent
    ok: jnp.ndarray      # a sufficient decrease was found


class StepResult(NamedTuple):
    """What :func:`search` returns: the accepted point and what it cost."""

    alpha: jnp.ndarray   # accepted step (0 if no decrease was found)
    x: jnp.ndarray       # x + alpha d (x itself on failure)
    f: jnp.ndarray       # f there
    g: jnp.ndarray       # ∇f there
    nfev: jnp.ndarray
    njev: jnp.ndarray
    ok: jnp.ndarray      # the rule's conditions hold (Armijo; strong or approximate Wolfe)
    moved: jnp.ndarray   # f decreased (the step was taken); False means the search failed


def first_step(g):
    """First trial step along −g when no curvature is known yet: the step of unit length in x,
    never more than α = 1 (the rule scipy's BFGS, CG and L-BFGS-B use on their first iteration)."""
    return jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(g.dtype).tiny)).astype(g.dtype)


def check_rule(method: str, linesearch: str) -> None:
    """One-line error for an unknown rule name."""
    if linesearch not in RULES:
        raise OptbenchError(f"{method}: linesearch must be one of {', '.join(RULES)}, got {linesearch!r}")


def armijo_backtracking(f, x, fx, slope, d, alpha0, c1=1e-4, shrink=0.5, max_steps=60,
                        interpolate=True) -> LineSearchResult:
    """Backtrack from ``alpha0`` along ``d`` until the Armijo condition holds (N&W Alg. 3.1).

    Each rejected trial is replaced by the minimiser of the quadratic through f(x), ∇f·d and
    the rejected value (N&W §3.5), kept within [0.1, ``shrink``] × the rejected step so the
    search neither stalls nor shrinks too fast; ``interpolate=False`` gives plain halving-style
    backtracking by ``shrink``. ``slope`` = ∇f(x)·d must be negative, else the search fails at
    once. Non-finite trial values fail the condition and cut the step by 10, so the search backs
    off from overflow instead of accepting it. A step too short to change x in floating point
    fails the search (with a wrong, uphill gradient the condition would otherwise "hold" for the
    null step).
    """
    dtype = x.dtype
    fx = jnp.asarray(fx, dtype)
    slope = jnp.asarray(slope, dtype)

    def accepted(alpha, ft):
        return jnp.isfinite(ft) & (ft <= fx + c1 * alpha * slope)

    def moves(alpha):
        # a step too short to change x in floating point is no step: with a wrong (uphill)
        # gradient the search would otherwise shrink α until x + αd == x and f(x + αd) == f(x)
        # "satisfies" the condition, and the start would run on to max_iter going nowhere
        return jnp.any(x + alpha * d != x)

    def cond(c):
        alpha, ft, n = c
        return (~accepted(alpha, ft)) & (n < max_steps) & (slope < 0)

    def body(c):
        alpha, ft, n = c
        if interpolate:
            denom = 2.0 * (ft - fx - slope * alpha)
            aq = -slope * alpha * alpha / jnp.where(denom > 0, denom, 1.0)
            aq = jnp.where(jnp.isfinite(ft) & (denom > 0), aq, 0.1 * alpha)
            alpha = jnp.clip(aq, 0.1 * alpha, shrink * alpha)
        else:
            alpha = jnp.where(jnp.isfinite(ft), shrink * alpha, jnp.minimum(shrink, 0.1) * alpha)
        return alpha, f(x + alpha * d), n + 1

    alpha0 = jnp.asarray(alpha0, dtype)
    f0 = f(x + alpha0 * d)
    alpha, ft, n = jax.lax.while_loop(cond, body, (alpha0, f0, jnp.int32(1)))
    ok = accepted(alpha, ft) & (slope < 0) & moves(alpha)
    return LineSearchResult(jnp.where(ok, alpha, 0.0).astype(dtype), jnp.where(ok, ft, fx), n, ok)


def _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi):
    """Minimiser of the cubic matching f and f' at two points (N&W eq. 3.59); NaN if none."""
    d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (a_lo - a_hi)
    disc = d1 * d1 - d_lo * d_hi
    d2 = jnp.sign(a_hi - a_lo) * jnp.sqrt(jnp.where(disc >= 0, disc, jnp.nan))
    return a_hi - (a_hi - a_lo) * (d_hi + d2 - d1) / (d_hi - d_lo + 2.0 * d2)


class _Zoom(NamedTuple):
    n: jnp.ndarray
    done: jnp.ndarray
    ok: jnp.ndarray
    a_t: jnp.ndarray       # the next trial step
    a_lo: jnp.ndarray      # best step so far with sufficient decrease (0 = the start); the
    f_lo: jnp.ndarray      # accepted step once ``ok``
    d_lo: jnp.ndarray
    g_lo: jnp.ndarray
    a_hi: jnp.ndarray      # other end of the bracket (+inf while still bracketing)
    f_hi: jnp.ndarray
    d_hi: jnp.ndarray


def strong_wolfe(value_and_grad, x, fx, gx, d, alpha0, c1=1e-4, c2=0.9, max_evals=30, alpha_max=1e10,
                 expand=2.0):
    """Strong-Wolfe line search: bracketing then zoom (N&W Alg. 3.5 and 3.6).

    The two phases are one loop: while no upper end of the bracket is known (``a_hi`` = ∞) a
    trial that still descends moves the lower end up and the next trial expands by ``expand``;
    once bracketed, the next trial is the cubic interpolant's minimiser kept 1 % inside the
    bracket (bisection when the cubic has no minimiser). ``a_lo`` always holds the lowest point
    found with sufficient decrease — the accepted point at the end — so if the budget runs out
    the search still returns a decrease when it found one.

    Returns (alpha, f, g, evaluations, wolfe_ok, decreased).
    """
    dtype = x.dtype
    eps = jnp.finfo(dtype).eps
    fx = jnp.asarray(fx, dtype)
    d0 = jnp.vdot(gx, d)
    f_tol = 100.0 * eps * jnp.abs(fx)  # round-off level of f, for the approximate Wolfe test

    def cond(z: _Zoom):
        return (~z.done) & (z.n < max_evals)

    def body(z: _Zoom):
        a = z.a_t
        ft, gt = value_and_grad(x + a * d)
        dt = jnp.vdot(gt, d)
        finite = jnp.isfinite(ft) & jnp.isfinite(dt)
        armijo_fail = ~finite | (ft > fx + c1 * a * d0) | (ft >= z.f_lo)
        curv = jnp.abs(dt) <= -c2 * d0
        approx = finite & (ft <= fx + f_tol) & (dt <= (2.0 * c1 - 1.0) * d0) & curv
        accept = (~armijo_fail & curv) | approx
        # new bracket (N&W Alg. 3.6; with a_hi = ∞ this is Alg. 3.5's bracketing step); an
        # accepted trial becomes the lower end, which is what the search returns
        to_hi = armijo_fail & ~accept
        flip = ~to_hi & (dt * (z.a_hi - z.a_lo) >= 0)
        a_hi = jnp.where(to_hi, a, jnp.where(flip, z.a_lo, z.a_hi))
        f_hi = jnp.where(to_hi, ft, jnp.where(flip, z.f_lo, z.f_hi))
        d_hi = jnp.where(to_hi, dt, jnp.where(flip, z.d_lo, z.d_hi))
        a_lo = jnp.where(to_hi, z.a_lo, a)
        f_lo = jnp.where(to_hi, z.f_lo, ft)
        d_lo = jnp.where(to_hi, z.d_lo, dt)
        g_lo = jnp.where(to_hi, z.g_lo, gt)
        bracketed = jnp.isfinite(a_hi)
        lo_, hi_ = jnp.minimum(a_lo, a_hi), jnp.maximum(a_lo, a_hi)
        width = hi_ - lo_
        a_cub = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
        a_cub = jnp.where(jnp.isfinite(a_cub) & jnp.isfinite(f_hi), a_cub, 0.5 * (lo_ + hi_))
        a_zoom = jnp.clip(a_cub, lo_ + 0.01 * width, hi_ - 0.01 * width)
        a_next = jnp.where(bracketed, a_zoom, jnp.minimum(expand * a, alpha_max))
        # a bracket shrunk to round-off, or an expansion stuck at alpha_max, cannot improve; nor
        # can a next trial that no longer moves x (x + α·d == x: f(x) fails the test, and so
        # does every later trial, which lies closer to 0): with a_lo = 0 the relative width test
        # never fires there, and the search spent the rest of its budget evaluating f(x). Only
        # a bracket from 0 can hold such a trial (an accepted a_lo > 0 moved x), so the O(n)
        # test runs only then (a conditional on one start; under vmap a cheap select): run on
        # every trial it cost newton-cg ≈ 10 % a step at n = 10⁶
        frozen = jax.lax.cond(bracketed & (a_lo == 0), lambda: jnp.all(x + a_zoom * d == x), lambda: jnp.asarray(False))
        stuck = jnp.where(bracketed, (width <= 10.0 * eps * hi_) | frozen, a >= alpha_max)
        return _Zoom(z.n + 1, accept | stuck, accept, a_next, a_lo, f_lo, d_lo, g_lo, a_hi, f_hi, d_hi)

    zero = jnp.zeros((), dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    # not a descent direction (∇f·d ≥ 0, or NaN): fail before evaluating anything
    z0 = _Zoom(jnp.int32(0), ~(d0 < 0), jnp.asarray(False), jnp.asarray(alpha0, dtype),
               zero, fx, d0, gx, inf, inf, zero)
    # a finished start keeps what it returns (and ``done``); its bracket may run on
    z = lanes_while(cond, body, z0, keep=("n", "done", "ok", "a_lo", "f_lo", "g_lo"))
    return z.a_lo, z.f_lo, z.g_lo, z.n, z.ok, z.a_lo > 0


def search(rule: str, oracle, x, fx, gx, d, alpha0, *, c1=1e-4, c2=0.9, max_evals=40, shrink=0.5, f=None,
           value_and_grad=None, grad=None) -> StepResult:
    """Take a step along ``d`` from ``x`` (value ``fx``, gradient ``gx``) by ``rule``.

    ``"armijo"``: backtracking from ``alpha0``, then one gradient at the accepted point (none,
    and none counted, when the search fails);
    ``"wolfe"``: strong-Wolfe zoom, whose last trial brings its gradient. On failure (no
    decrease at all) ``x``, ``fx``, ``gx`` come back unchanged with ``moved`` False. ``f``,
    ``value_and_grad`` and ``grad`` default to the oracle's (least-squares methods pass Σr²).
    """
    f = oracle.f if f is None else f
    value_and_grad = oracle.value_and_grad if value_and_grad is None else value_and_grad
    grad = oracle.grad if grad is None else grad
    if rule == "armijo":
        ls = armijo_backtracking(f, x, fx, jnp.vdot(gx, d), d, alpha0, c1, shrink, max_evals)

        def accepted():
            x_new = x + ls.alpha * d
            return x_new, grad(x_new)
        x_new, g_new = take_if(ls.ok, accepted, (x, gx))
        # the gradient is evaluated (and counted) only at an accepted point
        return StepResult(ls.alpha, x_new, ls.f_new, g_new, ls.nfev, ls.ok.astype(jnp.int32), ls.ok, ls.ok)
    if rule == "wolfe":
        a, fn, gn, n, ok, moved = strong_wolfe(value_and_grad, x, fx, gx, d, alpha0, c1, c2, max_evals)
        a = jnp.where(moved, a, 0.0).astype(x.dtype)
        x_new, f_new, g_new = take_if(moved, lambda: (x + a * d, fn, gn), (x, jnp.asarray(fx, fn.dtype), gx))
        return StepResult(a, x_new, f_new, g_new, n, n, ok, moved)
    raise OptbenchError(f"unknown line search {rule!r}; use one of {', '.join(RULES)}")


def apply(s, res: StepResult, *, nhev=0, nhvp=0, aux=None, fail_status=True):
    """The State after a line-search step: new point, counts, accepted step in ``State.step``.

    A search that found no decrease leaves x unchanged and (with ``fail_status``) ends the start
    with status ``linesearch_failed``; methods that can restart (quasi-Newton, CG) pass False
    and reset their memory instead.
    """
    status = s.status
    if fail_status:
        status = jnp.where(res.moved, s.status, STATUS_LINESEARCH_FAILED).astype(s.status.dtype)
    return s._replace(x=res.x, f=res.f, g=res.g, nfev=s.nfev + res.nfev, njev=s.njev + res.njev,
                      nhev=s.nhev + nhev, nhvp=s.nhvp + nhvp, status=status,
                      step=jnp.where(res.moved, res.alpha, s.step).astype(s.step.dtype),
                      aux=s.aux if aux is None else aux)
