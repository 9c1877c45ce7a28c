"""Audit of the small dense helpers and the quasi-Newton updates against textbook definitions and
numpy: the 2×2 closed forms (eigen-decomposition, modified Newton direction) on random and
adversarial matrices in one jitted vmapped call each, the modified Newton direction's properties
(N&W §3.4), the BFGS inverse update (N&W eq. 6.17) and the L-BFGS two-loop recursion (N&W
Alg. 7.4) against m explicit BFGS updates of H₀ = γI."""
import jax
import jax.numpy as jnp
import numpy as np

import optimizers
import optimizers.quasi_newton as qn
from optimizers import dense
from optimizers.base import Oracle


def _matrices(rng, n_each=40):
    out = []
    for _ in range(n_each):
        a = rng.standard_normal((2, 2))
        v = rng.standard_normal(2)
        q, _ = np.linalg.qr(rng.standard_normal((2, 2)))
        lam = rng.standard_normal()
        out += [a + a.T, np.outer(v, v), -np.outer(v, v), np.eye(2) * lam, np.diag(rng.standard_normal(2)),
                q @ np.diag([lam, lam * (1 + 1e-14)]) @ q.T,
                (a + a.T) * 10.0 ** rng.uniform(-150, 150),
                q @ np.diag([10.0 ** rng.uniform(-16, 0), 1.0]) @ q.T]
    return np.array([(h + h.T) / 2 for h in out])


def _np_direction(h, g):
    s = np.max(np.abs(h))
    lam, v = np.linalg.eigh(h / s)
    lam = lam * s
    delta = max(dense.EIG_FLOOR * np.max(np.abs(lam)), 1e-12)
    mu = np.maximum(np.abs(lam), delta)
    return -(v @ ((v.T @ g) / mu)), lam, v, mu


def test_two_by_two_eig_and_modified_newton_direction_match_numpy():
    rng = np.random.default_rng(0)
    hs = _matrices(rng)
    gs = rng.standard_normal((len(hs), 2)) * 10.0 ** rng.uniform(-3, 3, (len(hs), 1))
    lam, vec = map(np.asarray, jax.jit(jax.vmap(dense.sym_eig))(jnp.asarray(hs)))
    d, modified = map(np.asarray, jax.jit(jax.vmap(dense.modified_newton_direction))(jnp.asarray(hs),
                                                                                     jnp.asarray(gs)))
    for i, (h, g) in enumerate(zip(hs, gs)):
        ref, lr, vr, mu = _np_direction(h, g)
        scale = np.max(np.abs(lr))
        if scale > 0:
            np.testing.assert_allclose(lam[i], lr, rtol=0, atol=1e-14 * scale)
            np.testing.assert_allclose(vec[i].T @ vec[i], np.eye(2), atol=1e-14)
            np.testing.assert_allclose((h / scale) @ vec[i], vec[i] * (lam[i] / scale), atol=1e-14)
        kappa = mu.max() / mu.min()
        np.testing.assert_allclose(d[i], ref, rtol=0, atol=4e-15 * kappa * np.max(np.abs(ref)))
        assert g @ d[i] < 0                                   # descends whenever g ≠ 0
        delta = max(dense.EIG_FLOOR * scale, 1e-12)
        assert bool(modified[i]) == bool(lr[0] < delta)
        if lr[0] < -delta:                                    # moves along negative curvature
            comp = vr[:, 0] @ d[i]
            assert comp * (vr[:, 0] @ g) < 0
            np.testing.assert_allclose(comp, -(vr[:, 0] @ g) / abs(lr[0]), rtol=1e-9 * kappa,
                                       atol=1e-12 * np.max(np.abs(ref)))


def test_modified_newton_direction_is_the_newton_step_for_spd_and_general_n():
    rng = np.random.default_rng(1)
    f = jax.jit(jax.vmap(dense.modified_newton_direction))
    for n in (2, 4):
        hs, gs = [], []
        for k in range(20):
            q, _ = np.linalg.qr(rng.standard_normal((n, n)))
            lam = 10.0 ** rng.uniform(-10, 2, n) * (1 if k % 2 else np.sign(rng.standard_normal(n)))
            hs.append(q @ np.diag(lam) @ q.T)
            gs.append(rng.standard_normal(n))
        hs, gs = np.array([(h + h.T) / 2 for h in hs]), np.array(gs)
        d, modified = map(np.asarray, f(jnp.asarray(hs), jnp.asarray(gs)))
        for h, g, di, mi in zip(hs, gs, d, modified):
            lam = np.linalg.eigvalsh(h)
            ref = _np_direction(h, g)[0]
            assert g @ di < 0
            if lam[0] > 0:     # κ ≤ 1e12 < 1/EIG_FLOOR: Ĥ = H, the pure Newton step
                assert not mi
                np.testing.assert_allclose(di, -np.linalg.solve(h, g), rtol=1e-15 * np.linalg.cond(h) * 10)
            np.testing.assert_allclose(di, ref, rtol=1e-14 * 10.0 ** 12, atol=0)


def test_solve_and_products_match_numpy():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((50, 2, 2)) * 10.0 ** rng.uniform(-100, 100, (50, 1, 1))
    b = rng.standard_normal((50, 2))
    x = np.asarray(jax.jit(jax.vmap(dense.solve))(jnp.asarray(a), jnp.asarray(b)))
    for ai, bi, xi in zip(a, b, x):
        np.testing.assert_allclose(xi, np.linalg.solve(ai, bi), rtol=1e-15 * np.linalg.cond(ai) * 10)
    m = rng.standard_normal((3, 4))
    v3, v4, m2 = rng.standard_normal(3), rng.standard_normal(4), rng.standard_normal((4, 2))
    np.testing.assert_allclose(dense.mv(jnp.asarray(m), jnp.asarray(v4)), m @ v4, rtol=1e-14)
    np.testing.assert_allclose(dense.vm(jnp.asarray(v3), jnp.asarray(m)), v3 @ m, rtol=1e-14)
    np.testing.assert_allclose(dense.mm(jnp.asarray(m), jnp.asarray(m2)), m @ m2, rtol=1e-14)


def _np_bfgs(h, s, y):
    r = 1.0 / (s @ y)
    i = np.eye(len(s))
    return (i - r * np.outer(s, y)) @ h @ (i - r * np.outer(y, s)) + r * np.outer(s, s)


def test_bfgs_inverse_update_is_eq_6_17_secant_and_positive_definite():
    rng = np.random.default_rng(3)
    n = 4
    a = rng.standard_normal((n, n))
    a = a @ a.T + np.eye(n)
    c = rng.standard_normal(n)
    oracle, opt = Oracle(lambda x: 0.5 * x @ jnp.asarray(a) @ x - jnp.asarray(c) @ x + 0.1 * jnp.sum(x ** 4)), \
        optimizers.get("bfgs")
    s = opt.init(oracle, jnp.ones(n))
    step = jax.jit(lambda st: opt.step(oracle, st))
    for _ in range(4):
        s1 = step(s)
        h0, h1 = np.asarray(s.aux[0]), np.asarray(s1.aux[0])
        sv, y = np.asarray(s1.x - s.x), np.asarray(s1.g - s.g)
        assert sv @ y > 0
        np.testing.assert_allclose(h1, _np_bfgs(h0, sv, y), atol=1e-13 * np.max(np.abs(h1)))
        np.testing.assert_allclose(h1 @ y, sv, atol=1e-13 * np.linalg.norm(sv))
        np.testing.assert_allclose(h1, h1.T, atol=1e-14 * np.max(np.abs(h1)))
        assert np.linalg.eigvalsh((h1 + h1.T) / 2)[0] > 0
        s = s1


def test_lbfgs_recursions_equal_m_explicit_bfgs_updates_of_gamma_identity():
    rng = np.random.default_rng(4)
    for n, m in ((2, 3), (3, 4), (5, 2)):
        for count in range(m + 1):
            sm = rng.standard_normal((m, n))
            a = rng.standard_normal((n, n))
            ym = sm @ (a @ a.T + n * np.eye(n))          # sᵀy > 0 for every pair
            rho = 1.0 / np.sum(sm * ym, axis=1)
            g = rng.standard_normal(n)
            gamma = (sm[-1] @ ym[-1]) / (ym[-1] @ ym[-1]) if count else 1.0
            h = gamma * np.eye(n)
            for j in range(m - count, m):
                h = _np_bfgs(h, sm[j], ym[j])
            ref = -h @ g
            args = (jnp.asarray(sm), jnp.asarray(ym), jnp.asarray(rho), count, gamma)
            tol = 1e-13 * np.linalg.norm(ref)
            np.testing.assert_allclose(qn._two_loop(*args, jnp.asarray(g)), ref, atol=tol)
            np.testing.assert_allclose(-np.asarray(qn._lbfgs_inverse_hessian(*args)) @ g, ref, atol=tol)
            head = 1 % m   # circular buffers: newest pair in slot head − 1
            sc, yc, rc = np.roll(sm, head, 0), np.roll(ym, head, 0), np.roll(rho, head)
            cs, cy = qn.two_loop_coefficients(jnp.asarray(sc @ g), jnp.asarray(yc @ g), jnp.asarray(sc @ yc.T),
                                              jnp.asarray(yc @ yc.T), jnp.asarray(rc), head, count, gamma)
            np.testing.assert_allclose(-(gamma * g + np.asarray(cs) @ sc + np.asarray(cy) @ yc), ref, atol=tol)
