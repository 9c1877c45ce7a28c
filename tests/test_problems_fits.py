"""Regression, root-finding and Lagrange problems against independent references (numpy, scipy).

The minimisers these problems record — from a direct solve, a closed form, or a Newton iteration
at construction — are compared here with scipy.optimize run from scratch. Only numpy and scipy
evaluate the references here; the problems' own JAX functions are called eagerly only a few times
(their compiled checks are in tests/test_problems_library.py).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import problems
from optbench_core import OptbenchError


def test_linreg_solution_is_the_least_squares_solution():
    p = problems.get("linreg:n=300:d=8:cond=1e4:noise=0.5:seed=3")
    x, y = p.data["XT"].T, p.data["y"]   # stored transposed (the layout of its one-pass gradient)
    assert p.data["XT"].flags.c_contiguous
    s = np.linalg.svd(x, compute_uv=False)
    assert s[0] / s[-1] == pytest.approx(1e4, rel=1e-9)
    b, *_ = np.linalg.lstsq(x, y, rcond=None)
    assert np.allclose(b, p.x_star, rtol=0, atol=1e-10 * np.abs(p.x_star).max())
    assert float(np.sum((x @ b - y) ** 2)) == pytest.approx(p.f_star, rel=1e-10)
    assert np.linalg.norm(x.T @ (x @ p.x_star - y)) <= 1e-9 * np.linalg.norm(x) * np.linalg.norm(y)


def test_ridge_solution_solves_the_regularised_normal_equations():
    lam = 2.5
    p = problems.get(f"ridge:n=120:d=6:cond=100:lam={lam}")
    x, y = p.data["X"], p.data["y"]
    b = np.linalg.solve(x.T @ x + lam * np.eye(6), x.T @ y)
    assert np.allclose(b, p.x_star, rtol=1e-11, atol=1e-12)
    assert float(np.sum((x @ b - y) ** 2) + lam * b @ b) == pytest.approx(p.f_star, rel=1e-12)


def _logistic(w, x, y, lam):
    m = y * (x @ w)
    return np.mean(np.logaddexp(0.0, -m)) + 0.5 * lam * w @ w


@pytest.mark.parametrize("spec", ["logreg", "logreg:n=500:d=10:seed=4", "logreg:separable=true:lam=0.1"])
def test_logreg_minimum_matches_scipy(spec):
    p = problems.get(spec)
    lam = p.info["lam"]
    x, y = p.data["X"], p.data["y"]
    res = optimize.minimize(_logistic, np.zeros(p.dim), args=(x, y, lam), method="BFGS",
                            jac=lambda w, x, y, lam: -(x.T @ (y / (1.0 + np.exp(y * (x @ w))))) / len(y) + lam * w,
                            options={"gtol": 1e-12})
    assert res.fun == pytest.approx(p.f_star, rel=1e-10)
    assert p.f_star <= res.fun + 1e-15
    assert np.allclose(res.x, p.x_star, atol=1e-5)


def test_logreg_separable_has_infimum_zero_and_no_minimiser():
    p = problems.get("logreg:separable=true")
    assert p.f_star == 0.0 and p.x_star is None and "no-minimizer" in p.tags
    x, y = p.data["X"], p.data["y"]
    # a separating w (yᵢ xᵢ·w ≥ 1 for all i) exists: a feasible linear program
    lp = optimize.linprog(np.zeros(p.dim), A_ub=-(y[:, None] * x), b_ub=-np.ones(len(y)), bounds=(None, None))
    assert lp.status == 0
    w = lp.x
    for t in (1.0, 10.0, 100.0):
        assert _logistic(t * w, x, y, 0.0) < _logistic(t / 10 * w, x, y, 0.0)   # f keeps falling along it
    with pytest.raises(OptbenchError, match="separable"):
        problems.get("logreg:n=5:d=5:seed=1")      # 5 points in general position in 5-D are separable


def test_gaussian_fit_matches_curve_fit():
    p = problems.get("gaussian-fit")
    c, k = p.data["c"], p.data["k"]

    def model(c, h, mu, sigma):
        return h * np.exp(-0.5 * ((c - mu) / sigma) ** 2)

    popt, _ = optimize.curve_fit(model, c, k, p0=p.x0, xtol=1e-15, ftol=1e-15, gtol=1e-15, maxfev=10000)
    assert np.allclose(popt, p.x_star, rtol=1e-8)
    assert float(np.sum((model(c, *popt) - k) ** 2)) == pytest.approx(p.f_star, rel=1e-10)
    assert k.sum() == 1000 and p.x_star[1] == pytest.approx(170.0, abs=2.0) and abs(p.x_star[2]) == pytest.approx(10.0, abs=2.0)


def test_mlp_teacher_curve_and_layout():
    p = problems.get("mlp:hidden=5:n=20")
    assert p.dim == 16 and p.f_star == 0.0 and p.x_star.shape == (16,)
    w = p.x_star
    x = p.data["x"]
    y = np.tanh(np.outer(x, w[:5]) + w[5:10]) @ w[10:15] + w[15]
    assert np.allclose(y, p.data["y"], rtol=0, atol=1e-15)
    assert problems.get("mlp:target=sine").f_star is None


# -- roots ------------------------------------------------------------------------------------

def test_cubic_root_and_newton_cycle():
    p = problems.get("root:cubic")
    roots = np.roots([1.0, 0.0, -2.0, 2.0])
    real = roots[np.abs(roots.imag) < 1e-12].real
    assert len(real) == 1 and p.x_star[0] == pytest.approx(real[0], rel=1e-14)
    assert abs(p.x_star[0] ** 3 - 2 * p.x_star[0] + 2) <= 1e-14
    newton = lambda x: x - (x ** 3 - 2 * x + 2) / (3 * x ** 2 - 2)  # noqa: E731
    assert p.x0[0] == 0.0 and newton(0.0) == 1.0 and newton(1.0) == 0.0   # the textbook 2-cycle
    (xl,), fl = p.local_minima[0]
    assert 3 * xl ** 2 - 2 == pytest.approx(0.0, abs=1e-14) and fl > 0


def test_cos_root_is_the_dottie_number():
    p = problems.get("root:cos")
    assert p.x_star[0] == pytest.approx(optimize.brentq(lambda x: math.cos(x) - x, 0.0, 1.0, xtol=1e-16), rel=1e-15)


def test_root_systems_are_square_with_f_star_zero():
    for name in [n for n in problems.names() if n.startswith(("root:", "lagrange:"))]:
        p = problems.get(name)
        assert p.f_star == 0.0 and "root" in p.tags and p.has_residuals
        m = jax.eval_shape(lambda x: p.residual_vector(x, p.data), jax.ShapeDtypeStruct((p.dim,), jnp.float64))
        assert m.shape == (p.dim,), name


def test_discrete_bv_root_matches_minpack():
    """scipy's hybr (MINPACK hybrd) from x0 finds the root MINPACK's test driver prints (n = 10)."""
    p = problems.get("root:discrete-boundary-value")
    sol = optimize.root(lambda x: np.asarray(p.residuals(x)), p.x0, method="hybr", tol=1e-12)
    printed = [-4.3164983e-02, -8.1577157e-02, -1.1448571e-01, -1.4097358e-01, -1.5990870e-01,
               -1.6987720e-01, -1.6908998e-01, -1.5524954e-01, -1.2535589e-01, -7.5416534e-02]
    assert np.abs(sol.fun).max() <= 1e-14 and np.allclose(sol.x, printed, rtol=1e-7, atol=0)


# -- Lagrange systems -------------------------------------------------------------------------

LAGRANGE = {
    "lagrange:circle": (lambda v: v[0] + v[1], [lambda v: v[0] ** 2 + v[1] ** 2 - 1.0], [-0.5, -0.5]),
    "lagrange:plane": (lambda v: v @ v, [lambda v: v[0] + 2 * v[1] + 3 * v[2] - 14.0], [0.0, 0.0, 0.0]),
    "lagrange:hyperbola": (lambda v: v @ v, [lambda v: v[0] * v[1] - 1.0], [2.0, 1.0]),
}


@pytest.mark.parametrize("name", sorted(LAGRANGE))
def test_lagrange_root_is_the_constrained_minimum(name):
    """x* of the stationarity system matches scipy's SLSQP on the constrained problem itself."""
    p = problems.get(name)
    obj, cons, start = LAGRANGE[name]
    res = optimize.minimize(obj, start, method="SLSQP", constraints=[{"type": "eq", "fun": c} for c in cons],
                            options={"ftol": 1e-14, "maxiter": 500})
    k = len(start)
    assert res.success and res.fun == pytest.approx(p.info["constrained_min"], rel=1e-8)
    assert np.allclose(p.x_star[:k], p.info["constrained_x"]) and np.allclose(p.x_star[k:], p.info["multiplier"])
    assert obj(p.x_star[:k]) == pytest.approx(p.info["constrained_min"], rel=1e-15)
    dist = [np.linalg.norm(res.x - np.asarray(m)[:k]) for m in [p.x_star] + list(p.minima)]
    assert min(dist) <= 1e-6
    for root in [p.x_star] + list(p.minima) + list(p.info["other_roots"]):
        r = np.asarray(p.residuals(np.asarray(root, float)))
        assert np.abs(r).max() <= 1e-15, (name, root)
