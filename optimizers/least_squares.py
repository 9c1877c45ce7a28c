"""Least-squares methods on residuals r and their Jacobian J (never the Hessian of f = Σ r²):
Gauss-Newton and Levenberg-Marquardt.

Both minimise the linearised model ‖r + J p‖², whose Hessian 2JᵀJ drops the second-order term
Σ rᵢ∇²rᵢ of ∇²f: exact at zero residual (and for linear r), so both converge quadratically on
zero-residual problems. The model is solved in the eigenbasis of JᵀJ (from a thin SVD of J for
n ≥ 3; in closed form for n ≤ 2, through spectral projectors for n = 2:
:func:`optimizers.dense.least_squares_model`), which also gives minimum-norm steps when J is
rank deficient.
State.f = Σ r², State.g = 2Jᵀr.
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from . import linesearch as ls
from .base import STATUS_STALLED, Optimizer, State, initial_state, round_off_step, stall_where
from .dense import least_squares_model, minpack_lmpar, mv, vm


def _ls_state(oracle, x0, extra=()):
    r, jac = oracle.residuals_and_jac(x0)
    return initial_state(oracle, x0, aux=(r, jac) + tuple(extra), f=jnp.vdot(r, r), g=2.0 * vm(r, jac))


def gauss_newton(linesearch: str = "none", c1: float = 1e-4, max_backtracks: int = 40) -> Optimizer:
    """Gauss-Newton (Gauss 1809; N&W §10.3): p = −(JᵀJ)⁺Jᵀr, the minimum-norm minimiser of
    ‖r + Jp‖². ``linesearch``: ``none`` (default: the full step, as in the textbook and in
    optimistix's GaussNewton — on a zero-residual square system it is Newton's method for r = 0,
    e.g. two steps on Rosenbrock's residuals from anywhere, while a monotone search can need
    dozens from far starts; its failures are the method's) or ``armijo`` (damped Gauss-Newton,
    backtracking on Σr² from α = 1, ``c1``, ``max_backtracks``). Per iteration one Jacobian and
    one residual evaluation per trial. A full step at round-off level (‖Δx‖ ≤ 10ε‖x‖, the
    floor of Levenberg-Marquardt's stall test) ends the start ``stalled``: it would repeat itself
    to ``max_iter``.
    """
    if linesearch not in ("armijo", "none"):
        raise OptbenchError(f"gauss-newton: linesearch must be armijo or none, got {linesearch!r}")
    if not (0 < c1 < 0.5 and max_backtracks >= 1):
        raise OptbenchError("gauss-newton: need 0 < c1 < 0.5 and max_backtracks >= 1")

    def init(oracle, x0):
        return _ls_state(oracle, x0)

    def step(oracle, s: State) -> State:
        r, jac = s.aux
        d = least_squares_model(jac, r)[3](0.0)
        if linesearch == "armijo":
            search = ls.armijo_backtracking(oracle.sum_of_squares, s.x, s.f, jnp.vdot(s.g, d), d, 1.0, c1, 0.5,
                                            max_backtracks)
            alpha, nf, ok = search.alpha, search.nfev, search.ok
        else:
            alpha, nf, ok = jnp.ones((), s.x.dtype), jnp.int32(1), jnp.asarray(True)
        x = s.x + alpha * d
        r, jac = oracle.residuals_and_jac(x)  # r(x) was the accepted trial; J is new
        res = ls.StepResult(alpha, x, jnp.vdot(r, r), 2.0 * vm(r, jac), nf, jnp.int32(1), ok, ok)
        new = ls.apply(s, res, aux=(r, jac))
        if linesearch == "armijo":
            return new   # the search fails when no step changes x
        # the full step: Gauss-Newton keeps no memory, so a step at round-off level (at most 10 eps
        # ‖x‖, LM's stall test) repeats itself, or jitters x by an ulp, forever; the start ends
        # ``stalled``. Of the 54 NIST starts, 24 had run to max_iter (2,000 iterations) that way,
        # 6 with x fixed exactly, 19 of the 24 at the certified RSS.
        return stall_where(round_off_step(x, s.x), new)

    return Optimizer("gauss-newton", init, step, {"linesearch": linesearch, "c1": c1, "max_backtracks": max_backtracks},
                     needs_residuals=True, description="Gauss-Newton, minimum-norm step, optional Armijo damping")


def _col_norms(jac):
    c = jnp.linalg.norm(jac, axis=0)
    return jnp.where(c > 0, c, 1.0)


def minpack_update(fnorm, fnorm1, jp_norm, lam, pnorm, radius):
    """MINPACK lmder's reduction ratio and its updates of the trust radius Δ and of λ (Moré 1978),
    elementwise: ``fnorm`` = ‖r‖ at x, ``fnorm1`` = ‖r‖ at the trial point x + p, ``jp_norm`` =
    ‖Jp‖, ``lam`` the damping that gave the step, ``pnorm`` = ‖Dp‖ and ``radius`` = Δ. The ratio is
    taken in the scale of ‖r‖, so it stays finite when ‖r‖ at the trial point overflows.
    Returns (ratio, next Δ, next λ). Shared by ``levenberg-marquardt`` and its hand-written floor
    (:func:`bench.kernels.rosenbrock2_lm`)."""
    fn_safe = jnp.where(fnorm > 0, fnorm, 1.0)
    actred = jnp.where(jnp.isfinite(fnorm1) & (0.1 * fnorm1 < fnorm), 1.0 - (fnorm1 / fn_safe) ** 2, -1.0)
    t1 = jp_norm / fn_safe
    t2 = jnp.sqrt(lam) * pnorm / fn_safe
    prered = t1 * t1 + 2.0 * t2 * t2
    dirder = -(t1 * t1 + t2 * t2)
    ratio = jnp.where(prered != 0, actred / jnp.where(prered != 0, prered, 1.0), 0.0)
    temp = jnp.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
    temp = jnp.where((0.1 * fnorm1 >= fnorm) | ~jnp.isfinite(fnorm1) | (temp < 0.1), 0.1, temp)
    shrunk = temp * jnp.minimum(radius, pnorm / 0.1)
    grown = pnorm / 0.5
    big = (lam == 0) | (ratio >= 0.75)
    radius = jnp.where(ratio <= 0.25, shrunk, jnp.where(big, grown, radius))
    par_next = jnp.where(ratio <= 0.25, lam / temp, jnp.where(big, 0.5 * lam, lam))
    return ratio, radius, par_next


def levenberg_marquardt(damping: str = "more", factor: float = 10.0, scale: bool = True, tau: float = 1e-3) -> Optimizer:
    """Levenberg-Marquardt (Levenberg 1944; Marquardt 1963) with Jacobian scaling, two damping
    strategies:

    * ``damping="more"`` — Moré's trust-region form, as in MINPACK's lmder (Moré 1978, "The
      Levenberg-Marquardt algorithm: implementation and theory", LNM 630): minimise ‖r + Jp‖²
      subject to ‖Dp‖ ≤ Δ with D = diag of J's column norms, the running maximum over iterations
      (``scale``; else D = I), Δ₀ = ``factor``·‖Dx₀‖ (``factor`` = 10 by default: MINPACK's 100
      lets the first steps of NIST BoxBOD from start 1 jump onto the plateau b₂ → ∞, and 1 or less
      sends a few MGH problems to other minima; measured on MGH + NIST, 10 solves all 54 NIST
      starts). The damping λ is found as MINPACK's lmpar
      does — safeguarded Newton on ‖Dp(λ)‖ = Δ from the previous λ, to 10 % (λ = 0 when the
      Gauss-Newton step fits) — here in the eigenbasis of the scaled JᵀJ (thin SVD of JD⁻¹)
      rather than a pivoted QR; Δ and λ are updated from the ratio of actual to predicted
      reduction by MINPACK's rules, and a step is taken when ρ ≥ 10⁻⁴.
    * ``damping="nielsen"`` — the damping parameter itself is updated (Nielsen 1999; Madsen,
      Nielsen & Tingleff 2004, eq. 3.13): μ₀ = ``tau``·max diag(JᵀJ) in scaled variables,
      μ ← μ·max(⅓, 1 − (2ρ − 1)³) on success, μ ← μν, ν ← 2ν on failure.

    Logs ρ in ``State.rho`` and Δ (Moré) or the scaled step length ‖Dp‖ (Nielsen) in
    ``State.step``. Each iteration evaluates r at one trial point (one f-evaluation); each
    accepted step one Jacobian. Needs residuals.
    """
    if damping not in ("more", "nielsen"):
        raise OptbenchError(f"levenberg-marquardt: damping must be more or nielsen, got {damping!r}")
    if not (factor > 0 and tau > 0):
        raise OptbenchError("levenberg-marquardt: need factor > 0 and tau > 0")

    def init(oracle, x0):
        r, jac = oracle.residuals_and_jac(x0)
        dt = x0.dtype
        dg = _col_norms(jac) if scale else jnp.ones_like(x0)
        if damping == "more":
            dx = jnp.linalg.norm(dg * x0)
            radius = jnp.where(dx > 0, factor * dx, factor).astype(dt)
            extra = (dg, jnp.zeros((), dt), jnp.asarray(True))
        else:
            js = jac / dg
            radius = jnp.zeros((), dt)
            extra = (dg, (tau * jnp.max(jnp.sum(js * js, axis=0))).astype(dt), jnp.asarray(2.0, dt))
        s = initial_state(oracle, x0, aux=(r, jac) + extra, f=jnp.vdot(r, r), g=2.0 * vm(r, jac))
        return s._replace(step=radius)

    def finish(s, p, r_t, jac_t, accept, rho, step_log, extra, f_t):
        """Take or refuse the trial step (r, J and f = Σr² at the trial point are already
        evaluated: under vmap the Jacobian is computed for every lane anyway); update D on
        acceptance. f is selected, not summed again from the selected r: one reduction fewer per
        iteration (2-D Rosenbrock, 10³ / 10⁴ starts: 0.94–0.98x the time, same iterates)."""
        r, jac, dg = s.aux[:3]
        x = jnp.where(accept, s.x + p, s.x)
        r = jnp.where(accept, r_t, r)
        jac = jnp.where(accept, jac_t, jac)
        if scale:
            dg = jnp.where(accept, jnp.maximum(dg, _col_norms(jac_t)), dg)
        return s._replace(x=x, f=jnp.where(accept, f_t, s.f), g=2.0 * vm(r, jac), nfev=s.nfev + 1,
                          njev=s.njev + accept.astype(jnp.int32), step=step_log.astype(s.x.dtype),
                          rho=rho.astype(s.x.dtype), aux=(r, jac, dg) + extra)

    def step_more(oracle, s: State) -> State:
        r, jac, dg, par, first = s.aux
        dt = s.x.dtype
        radius = s.step
        mu, b, floor, shifted_step = least_squares_model(jac / dg, r)
        lam = minpack_lmpar(mu, b, radius, par, floor)
        q = shifted_step(lam)
        p = q / dg
        pnorm = jnp.linalg.norm(q)
        radius = jnp.where(first, jnp.minimum(radius, pnorm), radius)
        # MINPACK's reduction ratio, in the scale of ‖r‖ so it stays finite when ‖r_t‖ overflows
        fnorm = jnp.sqrt(s.f)
        r_t, jac_t = oracle.residuals_and_jac(s.x + p)
        f_t = jnp.vdot(r_t, r_t)
        fnorm1 = jnp.sqrt(f_t)
        ratio, radius, par_next = minpack_update(fnorm, fnorm1, jnp.linalg.norm(mv(jac, p)), lam, pnorm, radius)
        accept = (ratio >= 1e-4) & jnp.isfinite(fnorm1)
        new = finish(s, p, r_t, jac_t, accept, ratio, radius, (par_next.astype(dt), first & ~accept), f_t)
        stalled = ~accept & (radius <= 10.0 * jnp.finfo(dt).eps * jnp.linalg.norm(dg * s.x))
        return new._replace(status=jnp.where(stalled, STATUS_STALLED, s.status).astype(s.status.dtype))

    def step_nielsen(oracle, s: State) -> State:
        r, jac, dg, damp, nu = s.aux
        dt = s.x.dtype
        js = jac / dg
        mu, _, _, shifted_step = least_squares_model(js, r)
        q = shifted_step(damp)
        p = q / dg
        r_t, jac_t = oracle.residuals_and_jac(s.x + p)
        f_t = jnp.vdot(r_t, r_t)
        # predicted decrease of Σr² by the damped model: qᵀ(μq − Jsᵀr) (MNT eq. 3.14, ×2 for Σr²);
        # Jsᵀr = ½∇f / D from the state's gradient (∇f = 2Jᵀr at the stored r, J) rather than a
        # second product: one reduction fewer per iteration (2-D Rosenbrock, jaxopt's settings,
        # 10³ / 10⁴ starts without history 0.92× / 0.93× the time, compile 0.8×; same iterates)
        gs = 0.5 * s.g / dg
        pred = jnp.vdot(q, damp * q - gs)
        rho = jnp.where(pred > 0, (s.f - f_t) / jnp.where(pred > 0, pred, 1.0), -1.0)
        rho = jnp.where(jnp.isfinite(f_t), rho, -1.0)
        accept = rho > 0
        damp_ok = damp * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        damp = jnp.where(accept, damp_ok, damp * nu)
        nu = jnp.where(accept, 2.0, 2.0 * nu)
        new = finish(s, p, r_t, jac_t, accept, rho, jnp.linalg.norm(q), (damp.astype(dt), nu.astype(dt)), f_t)
        stalled = ~accept & ~(damp < 1e16 * jnp.maximum(jnp.max(mu), jnp.finfo(dt).tiny))
        return new._replace(status=jnp.where(stalled, STATUS_STALLED, s.status).astype(s.status.dtype))

    return Optimizer("levenberg-marquardt", init, step_more if damping == "more" else step_nielsen,
                     {"damping": damping, "factor": factor, "scale": scale, "tau": tau}, needs_residuals=True,
                     description="Levenberg-Marquardt, Jacobian-scaled, More trust-region or Nielsen damping")
