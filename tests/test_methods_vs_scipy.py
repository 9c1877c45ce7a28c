"""optbench's methods against their textbook references, with scipy.optimize as the independent
implementation: the defects an audit against scipy found, each pinned by a case it repaired.

Fast: the unit checks run eagerly (no driver compile); the end-to-end cases compile a few cells.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from optimizers import linesearch as ls
from optimizers.dense import least_squares_model, minpack_lmpar

solve = importlib.import_module("bench.solve").solve


def _minpack_parl(jac, r, radius):
    """MINPACK lmpar's lower bound (D = I, full rank), the Fortran steps written in numpy:
    x the Gauss-Newton step, fp = ‖x‖ − Δ, w = R⁻ᵀ x/‖x‖ from J = QR, parl = (fp/Δ)/‖w‖²."""
    q, rr = np.linalg.qr(jac)
    x = -np.linalg.solve(rr, q.T @ r)
    dxnorm = np.linalg.norm(x)
    fp = dxnorm - radius
    w = np.linalg.solve(rr.T, x / dxnorm)
    return (fp / radius) / np.dot(w, w), dxnorm


@pytest.mark.parametrize("n", [2, 3])
def test_lmpar_lower_bound_is_mores(n):
    """Moré (1978) §5 / MINPACK lmpar: the λ iteration starts from par clamped into [parl, paru],
    parl = fp/(Δ‖w‖²). With one iteration allowed, lmpar returns that start: from par0 = 0 it is
    parl itself. (It was fp·‖q‖/w2, short by the factor Δ/‖q‖.)"""
    rng = np.random.default_rng(3)
    jac = rng.standard_normal((7, n)) * np.array([1.0, 30.0, 0.2][:n])
    r = rng.standard_normal(7)
    parl, dxnorm = _minpack_parl(jac, r, 1.0)
    radius = 0.3 * dxnorm
    parl, _ = _minpack_parl(jac, r, radius)
    mu, b, floor, step = least_squares_model(jnp.asarray(jac), jnp.asarray(r))
    start = float(minpack_lmpar(mu, b, radius, 0.0, floor, max_iter=1))
    assert start == pytest.approx(parl, rel=1e-10)
    # and the full iteration still ends within MINPACK's 10 % of the radius, above the bound
    lam = float(minpack_lmpar(mu, b, radius, 0.0, floor))
    assert lam >= parl * (1 - 1e-12)
    assert abs(np.linalg.norm(np.asarray(step(lam))) - radius) <= 0.1 * radius


def test_wolfe_search_stops_once_trials_no_longer_move_x():
    """A bracket [0, α_hi] whose next trial leaves x unchanged cannot succeed (f(x) fails the
    test, and every later trial lies closer to 0). The width test is relative to α_hi and never
    fires with α_lo = 0, so the zoom spent its whole budget evaluating f(x): at f's round-off floor
    (NIST Misra1d, ncg) 20 of a failed search's 30 evaluations. A flat f with a claimed descent
    slope reproduces it."""
    calls = []

    def value_and_grad(y):
        calls.append(1)
        return jnp.sum(0.0 * y) + 1.0, jnp.ones_like(y)

    x = jnp.ones(1)
    with jax.disable_jit():
        a, f, g, n, ok, moved = ls.strong_wolfe(value_and_grad, x, 1.0, jnp.ones(1), -jnp.ones(1), 1e-10,
                                                 max_evals=30)
    assert not bool(moved) and not bool(ok) and float(a) == 0.0
    # 0.21× per trial from 1e-10 down to ε = 2.2e-16: about nine trials, not thirty
    assert int(n) <= 12 and len(calls) == int(n)
