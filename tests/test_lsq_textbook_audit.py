"""Gauss-Newton and Levenberg-Marquardt checked step by step against textbook transcriptions
written here in numpy: numpy's SVD least squares for the (minimum-norm) Gauss-Newton step,
MINPACK's lmder/lmpar (Moré 1978, LNM 630) for ``damping="more"``, Madsen, Nielsen & Tingleff
(2004, Alg. 3.16) for ``damping="nielsen"``, and NIST's certified parameters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import problems
from optimizers.base import Oracle
from optimizers.dense import least_squares_model
from optimizers.least_squares import gauss_newton, levenberg_marquardt
from problems import nist

T = np.linspace(0.1, 3.0, 7)
Y = 2.0 * np.exp(-1.3 * T) + 0.5 + 0.01 * np.sin(7 * T)


def _exp3(b, xp=np):
    return b[0] * xp.exp(-b[1] * T) + b[2] - Y


def _exp3_jac(b):
    e = np.exp(-b[1] * T)
    return np.stack([e, -b[0] * T * e, np.ones_like(T)], 1)


def _exp2(b, xp=np):
    return b[0] * (1 - xp.exp(-b[1] * T)) - Y


def _exp2_jac(b):
    e = np.exp(-b[1] * T)
    return np.stack([1 - e, b[0] * T * e], 1)


def _rosen(b, xp=np):
    return xp.stack([10 * (b[1] - b[0] ** 2), 1 - b[0]])


def _rosen_jac(b):
    return np.array([[-20 * b[0], 10.0], [-1.0, 0.0]])


CASES = {"exp3": (_exp3, _exp3_jac, [1.0, 0.3, 0.0]), "exp2": (_exp2, _exp2_jac, [1.0, 0.1]),
         "rosenbrock": (_rosen, _rosen_jac, [-1.2, 1.0])}


# ---- references, transcribed from the papers -------------------------------------------------
def _lmpar(J, r, D, delta, par0):
    """MINPACK lmpar (Moré 1978 §5) with dense solves of (JᵀJ + λD²)x = −Jᵀr instead of QR."""
    n = J.shape[1]
    A, g, D2 = J.T @ J, J.T @ r, np.diag(D * D)
    x = np.linalg.lstsq(J, -r, rcond=None)[0]
    dxnorm = np.linalg.norm(D * x)
    fp = dxnorm - delta
    if fp <= 0.1 * delta:
        return 0.0, x

    def wnorm2(par, x):   # ‖R_λ⁻ᵀ D²x/‖Dx‖‖²
        v = D * D * x / np.linalg.norm(D * x)
        return v @ np.linalg.solve(A + par * D2, v)
    parl = fp / delta / wnorm2(0.0, x) if np.linalg.matrix_rank(J) == n else 0.0
    gnorm = np.linalg.norm(g / D)
    paru = gnorm / delta if gnorm > 0 else np.finfo(float).tiny / min(delta, 0.1)
    par = min(max(par0, parl), paru)
    if par == 0:
        par = gnorm / dxnorm
    for it in range(1, 11):
        if par == 0:
            par = max(np.finfo(float).tiny, 0.001 * paru)
        x = np.linalg.solve(A + par * D2, -g)
        temp, fp = fp, np.linalg.norm(D * x) - delta
        if abs(fp) <= 0.1 * delta or (parl == 0 and fp <= temp < 0) or it == 10:
            return par, x
        parc = fp / delta / wnorm2(par, x)
        if fp > 0:
            parl = max(parl, par)
        if fp < 0:
            paru = min(paru, par)
        par = max(parl, par + parc)


def _lmder(res, jac, x0, iters, factor=10.0):
    """MINPACK lmder's outer/inner loop (mode 1: D the running max of J's column norms)."""
    x = np.array(x0, float)
    r, J = res(x), jac(x)
    fnorm = np.linalg.norm(r)
    D = np.linalg.norm(J, axis=0)
    D[D == 0] = 1.0
    delta = factor * np.linalg.norm(D * x) or factor
    par, first, out = 0.0, True, []
    for _ in range(iters):
        par, p = _lmpar(J, r, D, delta, par)
        lam, pnorm = par, np.linalg.norm(D * p)
        if lam > 0:   # Moré's step: on the trust-region boundary to 10 %
            assert abs(pnorm - delta) <= 0.1 * delta + 1e-12 * delta
        if first:
            delta = min(delta, pnorm)
        r1 = res(x + p)
        fnorm1 = np.linalg.norm(r1)
        actred = 1 - (fnorm1 / fnorm) ** 2 if 0.1 * fnorm1 < fnorm else -1.0
        t1, t2 = np.linalg.norm(J @ p) / fnorm, np.sqrt(par) * pnorm / fnorm
        prered, dirder = t1 ** 2 + t2 ** 2 / 0.5, -(t1 ** 2 + t2 ** 2)
        ratio = actred / prered if prered != 0 else 0.0
        if ratio <= 0.25:
            temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
            if 0.1 * fnorm1 >= fnorm or temp < 0.1:
                temp = 0.1
            delta, par = temp * min(delta, pnorm / 0.1), par / temp
        elif par == 0 or ratio >= 0.75:
            delta, par = pnorm / 0.5, 0.5 * par
        if ratio >= 1e-4:
            x, r, fnorm, first = x + p, r1, fnorm1, False
            J = jac(x)
            D = np.maximum(D, np.linalg.norm(J, axis=0))
        out.append(dict(x=x.copy(), delta=delta, par=par, ratio=ratio))
    return out


def _nielsen(res, jac, x0, iters, tau):
    """Madsen, Nielsen & Tingleff (2004) Alg. 3.16 on F = ½‖r‖² (no scaling)."""
    x = np.array(x0, float)
    r, J = res(x), jac(x)
    A, g = J.T @ J, J.T @ r
    mu, nu, out = tau * np.max(np.diag(A)), 2.0, []
    for _ in range(iters):
        h = np.linalg.solve(A + mu * np.eye(len(x)), -g)
        r1 = res(x + h)
        rho = (0.5 * r @ r - 0.5 * r1 @ r1) / (0.5 * h @ (mu * h - g))
        if rho > 0:
            x, r = x + h, r1
            J = jac(x)
            A, g = J.T @ J, J.T @ r
            mu, nu = mu * max(1 / 3, 1 - (2 * rho - 1) ** 3), 2.0
        else:
            mu, nu = mu * nu, 2 * nu
        out.append(dict(x=x.copy(), mu=mu, nu=nu, rho=rho))
    return out


def _run(opt, res, x0, iters):
    oracle = Oracle(None, lambda b: res(b, jnp))
    s = opt.init(oracle, jnp.asarray(x0, float))
    step = jax.jit(lambda s: opt.step(oracle, s))
    out = []
    for _ in range(iters):
        s = step(s)
        out.append(s)
    return out


# ---- Gauss-Newton ----------------------------------------------------------------------------
def test_gauss_newton_step_is_the_minimum_norm_least_squares_solution():
    """p = J⁺(−r), numpy's SVD least squares, for full-rank and rank-deficient J with n = 1, 2, 3
    (each n has its own code path) and m below, at and above n."""
    rng = np.random.default_rng(0)
    step = jax.jit(lambda j, r: least_squares_model(j, r)[3](0.0))
    shapes = ((1, 1), (3, 1), (2, 2), (4, 2), (1, 2), (3, 3), (5, 3), (2, 3))
    for m, n in shapes:
        for rank in range(min(m, n) + 1):
            for scale in (1.0, 1e-8, 1e8):
                jac = rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n)) * scale if rank else np.zeros((m, n))
                r = rng.normal(size=m)
                want = np.linalg.lstsq(jac, -r, rcond=None)[0]
                got = np.asarray(step(jnp.asarray(jac), jnp.asarray(r)))
                np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12 * np.linalg.norm(want),
                                           err_msg=f"{m}x{n} rank {rank} scale {scale:g}")
    for jac in ([[1., 2.], [2., 4.], [3., 6.]], [[1., 1.], [1., 1.]], [[0., 1.], [0., 2.]], [[1., 2., 3.], [2., 4., 6.]]):
        jac = np.array(jac)
        r = np.arange(1.0, jac.shape[0] + 1)
        np.testing.assert_allclose(np.asarray(step(jnp.asarray(jac), jnp.asarray(r))),
                                   np.linalg.lstsq(jac, -r, rcond=None)[0], rtol=1e-12, atol=1e-15)


def test_gauss_newton_counts_match_the_evaluations_made():
    """The full step: one residual-and-Jacobian evaluation per iteration, counted as 1 nfev and
    1 njev (a Python-side counter through ``jax.debug.callback`` sees every evaluation)."""
    calls = [0]

    def res(b, xp=jnp):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return _exp3(b, xp)
    x0 = np.array([1.5, 1.0, 0.3])
    states = _run(gauss_newton(), res, x0, 4)
    jax.effects_barrier()
    assert calls[0] == 5 and int(states[-1].nfev) == 5 and int(states[-1].njev) == 5
    # the iterates are x ← x + J⁺(−r)
    x = x0
    for s in states:
        x = x + np.linalg.lstsq(_exp3_jac(x), -_exp3(x), rcond=None)[0]
        np.testing.assert_allclose(np.asarray(s.x), x, rtol=1e-10)


# ---- Levenberg-Marquardt ---------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_more_damping_follows_minpack_lmder_iteration_by_iteration(case):
    """x, Δ, λ and ρ after each of six trials equal a numpy transcription of lmder/lmpar:
    ‖Dp‖ within 10 % of Δ when λ > 0, MINPACK's predicted reduction, the 0.25/0.75 radius rules
    with temp ∈ [0.1, 0.5], λ carried over, D the running max of column norms."""
    res, jac, x0 = CASES[case]
    ref = _lmder(res, jac, x0, 6)
    got = _run(levenberg_marquardt(), res, x0, 6)
    for k, (s, want) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(np.asarray(s.x), want["x"], rtol=1e-10, err_msg=f"x, iteration {k}")
        np.testing.assert_allclose(float(s.step), want["delta"], rtol=1e-9, err_msg=f"Δ, iteration {k}")
        np.testing.assert_allclose(float(s.rho), want["ratio"], rtol=1e-9, atol=1e-12, err_msg=f"ρ, iteration {k}")
        np.testing.assert_allclose(float(s.aux[3]), want["par"], rtol=1e-8, atol=1e-300, err_msg=f"λ, iteration {k}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_nielsen_damping_follows_madsen_nielsen_tingleff(case):
    """Unscaled (``scale=False``) Nielsen damping equals MNT Alg. 3.16: μ₀ = τ·max diag JᵀJ,
    ρ from the gain ratio, μ·max(⅓, 1 − (2ρ − 1)³) on success, μν and ν ← 2ν on failure."""
    res, jac, x0 = CASES[case]
    ref = _nielsen(res, jac, x0, 6, tau=1e-3)
    got = _run(levenberg_marquardt(damping="nielsen", scale=False, tau=1e-3), res, x0, 6)
    for k, (s, want) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(np.asarray(s.x), want["x"], rtol=1e-10, err_msg=f"x, iteration {k}")
        np.testing.assert_allclose(float(s.rho), want["rho"], rtol=1e-9, atol=1e-12, err_msg=f"ρ, iteration {k}")
        np.testing.assert_allclose(float(s.aux[3]), want["mu"], rtol=1e-10, err_msg=f"μ, iteration {k}")
        assert float(s.aux[4]) == want["nu"], k


@pytest.mark.parametrize("name", ["Misra1a", "Thurber"])
def test_levenberg_marquardt_reaches_nist_certified_parameters_from_both_starts(name):
    ds = nist.load(name)
    res = bench.solve(problems.get(f"nist:{name}"), "levenberg-marquardt", x0s=ds.starts, max_iter=500)
    for k in range(2):
        np.testing.assert_allclose(np.asarray(res.x[k]), ds.certified, rtol=1e-6, err_msg=f"start {k + 1}")
