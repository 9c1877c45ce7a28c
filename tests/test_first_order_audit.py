"""Audit of the first-order methods, the optax adapter and Newton-Raphson root finding against
closed forms, hand-written textbook recurrences, hand-written optax loops and scipy.

Every reference here is computed independently of the optimizer under test: matrix powers for
fixed-step gradient descent, the two-sequence form of Nesterov's method, analytic gradients for
the line-search conditions, optax's own update loop, brentq / Cardano / hand-solved KKT systems
for the roots.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import optimizers
import problems
from optbench_core import OptbenchError

# a small SPD quadratic f = ½xᵀAx − bᵀx (eigenvalues (5 ± √5)/2), known minimiser A⁻¹b
A = np.array([[3.0, 1.0], [1.0, 2.0]])
B = np.array([1.0, -1.0])
X_STAR = np.linalg.solve(A, B)
X0 = np.array([2.0, -3.0])
LMAX = float(np.linalg.eigvalsh(A).max())


def _quad_problem():
    a, b = jnp.asarray(A), jnp.asarray(B)
    return problems.Problem(name="audit-quad", f=lambda x: 0.5 * x @ a @ x - b @ x, x0=X0,
                            f_star=float(-0.5 * B @ X_STAR), x_star=X_STAR)


def _grad(x):
    return A @ x - B


def _xs(res):
    return np.asarray(res.trace.recorded()["x"])


# -- fixed-step gradient descent ---------------------------------------------------------------

def test_gd_iterates_are_the_matrix_power_closed_form():
    lr = 0.3
    res = bench.solve(_quad_problem(), optimizers.get(f"gd:lr={lr}"), X0, max_iter=12, gtol=1e-300)
    m = np.eye(2) - lr * A
    ref = np.array([X_STAR + np.linalg.matrix_power(m, k) @ (X0 - X_STAR) for k in range(13)])
    np.testing.assert_allclose(_xs(res), ref, rtol=0, atol=1e-13)


def test_gd_beyond_two_over_lmax_grows_by_the_spectral_factor_and_never_succeeds():
    """α > 2/λ_max: the error along the top eigenvector grows by |1 − αλ_max| > 1 per step; the
    start must not be reported converged or successful."""
    lr = 2.2 / LMAX
    res = bench.solve(_quad_problem(), optimizers.get(f"gd:lr={lr}"), X0, max_iter=40, gtol=1e-8)
    x = _xs(res)
    growth = np.linalg.norm(x[40] - X_STAR) / np.linalg.norm(x[30] - X_STAR)
    assert growth == pytest.approx(abs(1.0 - lr * LMAX) ** 10, rel=1e-6)
    assert res.status in ("max_iter", "diverged") and not res.success


# -- momentum methods --------------------------------------------------------------------------

def test_heavy_ball_matches_polyak_recurrence():
    lr, beta = 0.1, 0.7
    x, v, ref = X0.copy(), np.zeros(2), [X0.copy()]
    for _ in range(10):
        v = beta * v - lr * _grad(x)    # v ← βv − α∇f(x), x ← x + v (the docstring's convention)
        x = x + v
        ref.append(x.copy())
    res = bench.solve(_quad_problem(), optimizers.get(f"momentum:lr={lr}:beta={beta}"), X0, max_iter=10,
                      gtol=1e-300)
    np.testing.assert_allclose(_xs(res), np.array(ref), rtol=0, atol=1e-13)


def test_nesterov_reports_the_look_ahead_points_of_the_two_sequence_scheme():
    """Nesterov 2004 scheme 2.2.19 with constant β: x_{k+1} = y_k − α∇f(y_k),
    y_{k+1} = x_{k+1} + β(x_{k+1} − x_k), y₀ = x₀; the reported iterate is y_k."""
    lr, beta = 0.1, 0.7
    y, x_prev, ref = X0.copy(), X0.copy(), [X0.copy()]
    for _ in range(10):
        x_new = y - lr * _grad(y)
        y = x_new + beta * (x_new - x_prev)
        x_prev = x_new
        ref.append(y.copy())
    res = bench.solve(_quad_problem(), optimizers.get(f"nesterov:lr={lr}:beta={beta}"), X0, max_iter=10,
                      gtol=1e-300)
    np.testing.assert_allclose(_xs(res), np.array(ref), rtol=0, atol=1e-13)


def _diag_problem(kappa):
    a = jnp.asarray(np.diag([1.0, kappa]))
    return problems.Problem(name=f"audit-diag-{kappa}", f=lambda x: 0.5 * x @ a @ x, x0=np.ones(2), f_star=0.0,
                            x_star=np.zeros(2))


def test_heavy_ball_with_polyaks_parameters_reaches_the_optimal_rate():
    """α = 4/(√L + √μ)², β = ((√κ − 1)/(√κ + 1))² on diag(1, κ): both modes are critically damped,
    e_k ∝ k ρ^k with ρ = (√κ − 1)/(√κ + 1), so ‖e_200‖/‖e_100‖ = 2ρ¹⁰⁰ (to O(1/k))."""
    kappa = 100.0
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    lr, beta = 4.0 / (1.0 + math.sqrt(kappa)) ** 2, rho ** 2
    res = bench.solve(_diag_problem(kappa), optimizers.get(f"momentum:lr={lr}:beta={beta}"), np.ones(2),
                      max_iter=200, gtol=1e-300)
    e = np.linalg.norm(_xs(res), axis=1)
    assert (e[200] / e[100] / 2.0) ** (1 / 100) == pytest.approx(rho, rel=2e-3)


def test_nesterov_meets_its_strongly_convex_bound():
    """α = 1/L, β = (√κ − 1)/(√κ + 1): f(x_k) − f* ≤ (1 − 1/√κ)^k (f(x₀) − f* + μ/2‖x₀ − x*‖²)."""
    kappa = 100.0
    lr, beta = 1.0 / kappa, (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    res = bench.solve(_diag_problem(kappa), optimizers.get(f"nesterov:lr={lr}:beta={beta}"), np.ones(2),
                      max_iter=150, gtol=1e-300)
    f = np.asarray(res.trace.recorded()["f"])
    c0 = 0.5 * (1.0 + kappa) + 0.5 * 2.0
    bound = (1.0 - 1.0 / math.sqrt(kappa)) ** np.arange(len(f)) * c0
    assert np.all(f <= bound * (1 + 1e-12))


# -- line-search steepest descent ---------------------------------------------------------------

def _rosen_grad(x):
    return np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)])


def _rosen(x):
    return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2


@pytest.mark.parametrize("spec,c1,c2", [("gd-linesearch:c1=0.3", 0.3, None), ("gd-wolfe", 1e-4, 0.9)])
def test_steepest_descent_accepted_steps_satisfy_their_conditions(spec, c1, c2):
    """Every accepted step x_{k+1} = x_k − α_k∇f(x_k) (α_k = State.step) satisfies Armijo,
    f_{k+1} ≤ f_k − c₁α‖∇f_k‖², and for strong Wolfe |∇f_{k+1}·∇f_k| ≤ c₂‖∇f_k‖²; checked with
    Rosenbrock's analytic gradient, far from the minimiser (no round-off acceptance)."""
    p = problems.get("rosenbrock")
    res = bench.solve(p, optimizers.get(spec), p.x0, max_iter=30, gtol=1e-8)
    t = res.trace.recorded()
    x, step = np.asarray(t["x"]), np.asarray(t["step"])
    for k in range(len(x) - 1):
        g = _rosen_grad(x[k])
        np.testing.assert_allclose(x[k + 1], x[k] - step[k + 1] * g, rtol=1e-12, atol=1e-14)
        assert _rosen(x[k + 1]) <= _rosen(x[k]) - c1 * step[k + 1] * g @ g + 1e-13
        if c2 is not None:
            assert abs(_rosen_grad(x[k + 1]) @ g) <= c2 * (g @ g) * (1 + 1e-9)


# -- optax adapter -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,build", [
    ("optax:adam:learning_rate=0.01:b1=0.8", lambda optax: optax.adam(0.01, b1=0.8)),
    ("optax:sgd:learning_rate=0.001:momentum=0.9:nesterov=true",
     lambda optax: optax.sgd(0.001, momentum=0.9, nesterov=True)),
])
def test_optax_iterates_match_a_hand_written_optax_loop(spec, build):
    optax = pytest.importorskip("optax")
    p = problems.get("rosenbrock")
    tx = build(optax)
    x = jnp.asarray(p.x0)
    state, ref = tx.init(x), [np.asarray(x)]
    for _ in range(20):
        g = jax.grad(p.f)(x)
        updates, state = tx.update(g, state, x)
        x = optax.apply_updates(x, updates)
        ref.append(np.asarray(x))
    res = bench.solve(p, optimizers.get(spec), p.x0, max_iter=20, gtol=1e-300)
    np.testing.assert_allclose(_xs(res), np.array(ref), rtol=0, atol=1e-14)


@pytest.mark.parametrize("spec,needle", [
    ("optax:adam:learning_rate=abc", "learning_rate must be a number, got 'abc'"),
    ("optax:adam:learning_rate=true", "learning_rate must be a positive finite number, got True"),
    ("optax:sgd:learning_rate=0.1:momentum=abc", "momentum must be a number, got 'abc'"),
    ("optax:sgd:learning_rate=0.1:momentum=nan", "momentum must be a number, got nan"),
    ("optax:adamm", "unknown optax optimizer 'adamm'"),
    ("optax:adam:foo=1", "unknown parameter 'foo'"),
])
def test_optax_bad_specs_are_refused_when_named(spec, needle):
    """Refused by optimizers.get, in one line — not at the first compiled step (text reached
    optax and failed there with 'Only integer scalar arrays…'), nor run with lr = True = 1."""
    with pytest.raises(OptbenchError) as exc:
        optimizers.get(spec)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_optax_bad_hyperparameter_is_a_one_line_cli_error(tmp_path, capsys):
    from bench.cli import main
    rc = main(["run", "--problems", "sphere", "--optimizers", "optax:sgd:learning_rate=0.1:momentum=abc",
               "--starts", "1", "--max-iter", "3", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "momentum must be a number" in err
    assert "Traceback" not in err


# -- Newton-Raphson root finding ------------------------------------------------------------------

def test_newton_raphson_is_quadratic_on_cos_x_minus_x():
    """e_{k+1}/e_k² → |r''/(2r')| at the root, r = cos x − x: cos x*/(2(1 + sin x*))."""
    p = problems.get("root:cos")
    res = bench.solve(p, optimizers.get("newton-raphson"), np.array([1.0]), max_iter=20, gtol=1e-14)
    xs = 0.7390851332151607
    e = np.abs(_xs(res)[:, 0] - xs)
    assert res.status == "converged" and res.success
    assert e[3] / e[2] ** 2 == pytest.approx(math.cos(xs) / (2.0 * (1.0 + math.sin(xs))), rel=1e-3)


def test_newton_raphson_is_quadratic_on_a_vector_system():
    """lagrange:circle, root (−1/√2, −1/√2, 1/√2): ‖e_{k+1}‖ ≤ C‖e_k‖² with a modest C once close."""
    p = problems.get("lagrange:circle")
    res = bench.solve(p, optimizers.get("newton-raphson"), p.x0, max_iter=20, gtol=1e-14)
    r = math.sqrt(0.5)
    e = np.linalg.norm(_xs(res) - np.array([-r, -r, r]), axis=1)
    close = [k for k in range(len(e) - 1) if 1e-7 < e[k] < 1e-1]
    assert close and all(e[k + 1] <= 5.0 * e[k] ** 2 for k in close)
    assert res.success


def test_newton_raphson_cycles_on_the_textbook_cubic():
    """x³ − 2x + 2 from x0 = 0: N(0) = 0 − 2/(−2) = 1, N(1) = 1 − 1/1 = 0."""
    res = bench.solve(problems.get("root:cubic"), optimizers.get("newton-raphson"), np.array([0.0]), max_iter=6,
                      gtol=1e-10)
    np.testing.assert_array_equal(_xs(res)[:, 0], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert res.status == "max_iter" and not res.success


def test_root_problems_known_roots():
    scipy_opt = pytest.importorskip("scipy.optimize")
    # 1-D: bracketed roots
    cos_root = scipy_opt.brentq(lambda x: math.cos(x) - x, 0.0, 1.0, xtol=1e-15)
    cubic_root = scipy_opt.brentq(lambda x: x ** 3 - 2 * x + 2, -3.0, 0.0, xtol=1e-15)
    assert problems.get("root:cos").x_star[0] == pytest.approx(cos_root, abs=2e-16)
    assert problems.get("root:cubic").x_star[0] == pytest.approx(cubic_root, abs=1e-15)
    # closed forms / hand-solved KKT systems
    r = math.sqrt(0.5)
    expected = {"root:powell-singular": np.zeros(4), "root:helical-valley": np.array([1.0, 0.0, 0.0]),
                "lagrange:circle": np.array([-r, -r, r]), "lagrange:plane": np.array([1.0, 2.0, 3.0, -2.0]),
                "lagrange:hyperbola": np.array([1.0, 1.0, -2.0])}
    for name, xs in expected.items():
        p = problems.get(name)
        np.testing.assert_allclose(p.x_star, xs, rtol=0, atol=1e-15)
        assert np.max(np.abs(np.asarray(p.residuals(jnp.asarray(xs))))) <= 1e-15
    # the systems whose root is not closed-form: scipy's hybrid method finds one inside the box
    for name in ("root:broyden-tridiagonal", "root:discrete-boundary-value"):
        p = problems.get(name)
        sol = scipy_opt.root(lambda x: np.asarray(p.residuals(jnp.asarray(x))), p.x0, method="hybr", tol=1e-13)
        lo, hi = p.bounds
        assert np.max(np.abs(sol.fun)) < 1e-12 and np.all((lo <= sol.x) & (sol.x <= hi)), name
        assert p.f_star == 0.0


def test_no_real_root_is_not_reported_solved():
    """x² + 1 = 0 has no real root; at x0 = 0 the Jacobian is singular (r' = 0) and r = 1, a
    stationary point of Σ r² (the status may say so: ‖∇Σr²‖ ≤ gtol), but no root: a problem
    tagged "root" has f* = 0, and the start is no success. The same for an inconsistent linear
    system, (x + y, x + y − 1), whose Jacobian is singular everywhere."""
    p = problems.Problem(name="audit-no-root", residuals=lambda x: x ** 2 + 1.0, x0=np.array([0.0]),
                         tags=("root",))
    assert p.f_star == 0.0
    for method in ("newton-raphson", "newton"):
        res = bench.solve(p, optimizers.get(method), np.array([[0.0], [0.5]]), max_iter=20, gtol=1e-10)
        assert not np.any(res.success), (method, res.status)
        assert np.all(res.fun >= 1.0)
    q = problems.Problem(name="audit-inconsistent", residuals=lambda x: jnp.stack([x[0] + x[1], x[0] + x[1] - 1.0]),
                         x0=np.array([0.0, 0.0]), tags=("root",))
    res = bench.solve(q, optimizers.get("newton"), q.x0, max_iter=20, gtol=1e-10)
    assert not res.success and res.fun == pytest.approx(0.5)
    # a tagged problem's own f* is kept, and an untagged one's unknown f* stays unknown
    assert problems.Problem(name="t", residuals=lambda x: x - 1.0, x0=np.zeros(1), tags=("root",), f_star=2.0).f_star == 2.0
    assert problems.Problem(name="u", residuals=lambda x: x - 1.0, x0=np.zeros(1)).f_star is None
