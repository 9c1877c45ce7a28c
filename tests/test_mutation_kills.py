"""Checks that pin down textbook details the rest of the suite left free (found by mutation
testing: each test here fails on a plausible one-line bug that every other test and the CI gate
let through). Every expected value comes from a definition or a closed form, not from a run of
this code. Everything runs eagerly on tiny problems: no compiled solves, a few seconds in all.
"""
import jax
import jax.numpy as jnp
import numpy as np

import optimizers
from optimizers import krylov
from optimizers.base import Oracle
from optimizers.dense import modified_newton_direction
from optimizers.linesearch import armijo_backtracking, strong_wolfe

jax.config.update("jax_enable_x64", True)


def _f64(*v):
    return jnp.asarray(v, jnp.float64)


def _steps(spec, f, x0, k):
    """x_0 … x_k of ``k`` steps of an optimizer on f, run eagerly through its init/step."""
    opt, oracle = optimizers.get(spec), Oracle(f)
    s = opt.init(oracle, jnp.asarray(x0, jnp.float64))
    xs = [np.asarray(s.x)]
    for _ in range(k):
        s = opt.step(oracle, s)
        xs.append(np.asarray(s.x))
    return xs, s


def _parallel(u, v):
    """cos∠(u, v): 1 when u is a positive multiple of v."""
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


# -- line searches -------------------------------------------------------------------------------

def test_armijo_rejects_a_first_trial_that_raises_f():
    """N&W (3.4): accept α only if f(x + αd) ≤ f(x) + c₁α∇fᵀd, which is below f(x) for a descent
    direction. On f = x² from x = 1 along d = −1 (slope −2), α₀ = 2.00001 lands at f = 1.00002 > f(x):
    it must be rejected, and the accepted step must meet the condition."""
    f = lambda x: jnp.sum(x * x)  # noqa: E731
    x, d, c1 = _f64(1.0), _f64(-1.0), 1e-4
    res = armijo_backtracking(f, x, f(x), -2.0, d, 2.00001, c1=c1)
    assert bool(res.ok)
    assert 0.0 < float(res.alpha) < 2.0
    assert float(res.f_new) <= 1.0 + c1 * float(res.alpha) * -2.0
    assert np.isclose(float(res.f_new), float(f(x + res.alpha * d)), rtol=1e-15)


def test_armijo_steepest_descent_counts_each_trial_and_the_accepted_gradient():
    """Counting as scipy does (nfev: one per f evaluated; njev: one per gradient): on f = x² from 1,
    gd-linesearch tries α = grow·1 = 2 (f = 9, rejected), then the quadratic interpolant's minimiser
    α = −φ'(0)α²/(2(φ(α) − φ(0) − φ'(0)α)) = 16/32 = ½, which lands on x* = 0. With the start's
    own f and ∇f: nfev = 3, njev = 2."""
    xs, s = _steps("gd-linesearch", lambda x: jnp.sum(x * x), [1.0], 1)
    assert float(xs[1][0]) == 0.0
    assert (int(s.nfev), int(s.njev)) == (3, 2)


def test_a_failed_armijo_search_ends_the_start_linesearch_failed():
    """README statuses: a search that finds no acceptable step ends the start ``linesearch_failed``
    (not ``stalled``), x unchanged. gd-linesearch with one trial (max_backtracks=1) on f = x² from 1
    tries only α = 2 (f = 9)."""
    xs, s = _steps("gd-linesearch:max_backtracks=1", lambda x: jnp.sum(x * x), [1.0], 1)
    assert optimizers.STATUS_NAMES[int(s.status)] == "linesearch_failed"
    assert float(xs[1][0]) == 1.0


def test_gd_wolfe_first_trial_repeats_the_last_first_order_decrease():
    """N&W eq. 3.60: α₀ = α_{k−1}∇f_{k−1}ᵀd_{k−1}/∇f_kᵀd_k (= α_{k−1}‖g_{k−1}‖²/‖g_k‖² along −g); the
    first step has unit length. On f = x²/2 from 4: α = ¼ → x₁ = 3; then α₀ = ¼·16/9 = 4/9 → x₂ = 5/3,
    both first trials meeting the strong Wolfe conditions (one evaluation each)."""
    xs, s = _steps("gd-wolfe", lambda x: 0.5 * jnp.sum(x * x), [4.0], 2)
    np.testing.assert_allclose([xs[1][0], xs[2][0], float(s.step)], [3.0, 5.0 / 3.0, 4.0 / 9.0], rtol=1e-14)
    assert int(s.nfev) == 3


def test_strong_wolfe_accepts_a_first_trial_on_the_curvature_boundary():
    """The strong-Wolfe curvature condition is |∇f(x+αd)ᵀd| ≤ c₂|∇f(x)ᵀd| — with equality allowed
    (N&W 3.7b). On f = x²/2 from x = 1 along d = −1 with c₂ = ½, α₀ = ½ gives ∇fᵀd = −½ exactly
    (and sufficient decrease): the first trial is accepted, after one evaluation."""
    vg = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x * x))
    x = _f64(1.0)
    f0, g0 = vg(x)
    a, fa, _, n, ok, moved = strong_wolfe(vg, x, f0, g0, _f64(-1.0), 0.5, c1=1e-4, c2=0.5)
    assert bool(ok) and bool(moved)
    assert float(a) == 0.5 and int(n) == 1 and float(fa) == 0.125


def test_strong_wolfe_expands_past_a_trial_with_sufficient_decrease_and_steep_slope():
    """N&W Alg. 3.5: a trial that meets sufficient decrease (c₁) while the slope is still steeper
    than c₂|φ'(0)| is a new lower end; the search moves on to larger steps and never returns a
    point worse than it. φ(α) = −α + 0.6α² − 0.5α³ + 0.05α⁴: φ(1) = −0.85 (sufficient decrease for
    c₁ = 1e-4, not for 0.9), φ'(1) = −1.1; the minimiser along the line is near α ≈ 7.4."""
    phi = lambda x: jnp.sum(-x + 0.6 * x ** 2 - 0.5 * x ** 3 + 0.05 * x ** 4)  # noqa: E731
    vg = jax.value_and_grad(phi)
    x = _f64(0.0)
    f0, g0 = vg(x)
    a, fa, ga, _, ok, moved = strong_wolfe(vg, x, f0, g0, _f64(1.0), 1.0, c1=1e-4, c2=0.9)
    assert bool(ok) and bool(moved)
    assert float(a) > 1.0 and float(fa) <= -0.85
    assert abs(float(ga[0])) <= 0.9


# -- first order ----------------------------------------------------------------------------------

def test_nesterov_iterates_are_the_look_ahead_points_of_the_textbook_scheme():
    """Nesterov (2004, scheme 2.2.19, constant momentum): x_{k+1} = y_k − α∇f(y_k),
    y_{k+1} = x_{k+1} + β(x_{k+1} − x_k), y₀ = x₀; the method reports the look-ahead points y_k
    (where the gradient is taken). On f = ½xᵀAx, A = diag(1, 4), α = 0.1, β = 0.9, four steps;
    heavy ball (x_{k+1} = x_k − α∇f(x_k) + β(x_k − x_{k−1})) gives other points."""
    a = np.diag([1.0, 4.0])
    xs, _ = _steps("nesterov:lr=0.1:beta=0.9", lambda x: 0.5 * x @ jnp.asarray(a) @ x, [1.0, -1.0], 4)
    x_prev = y = np.array([1.0, -1.0])
    for k in range(1, 5):
        x = y - 0.1 * a @ y
        y = x + 0.9 * (x - x_prev)
        x_prev = x
        np.testing.assert_allclose(xs[k], y, rtol=1e-13)


def test_ncg_restarts_along_the_gradient_when_polak_ribiere_beta_is_negative():
    """Polak–Ribière+ (Gilbert & Nocedal 1992; N&W eq. 5.45): β⁺ = max(0, g₁ᵀ(g₁ − g₀)/‖g₀‖²), so
    where the PR β is negative the second direction is −g₁. On f = x² + 3y² + ½(x⁴ + y⁴) from
    (1, −0.88) the first strong-Wolfe step ends where β_PR < 0."""
    f = lambda v: jnp.sum(jnp.asarray([1.0, 3.0]) * v ** 2) + 0.5 * jnp.sum(v ** 4)  # noqa: E731
    xs, _ = _steps("ncg", f, [1.0, -0.88], 2)
    g0, g1 = (np.asarray(jax.grad(f)(jnp.asarray(x))) for x in xs[:2])
    assert g1 @ (g1 - g0) / (g0 @ g0) < -0.01
    assert _parallel(xs[2] - xs[1], -g1) > 1 - 1e-12


# -- quasi-Newton ---------------------------------------------------------------------------------

def _bfgs_inverse(h, s, y):
    """N&W eq. 6.17, the BFGS update of the inverse Hessian approximation."""
    rho = 1.0 / (s @ y)
    v = np.eye(len(s)) - rho * np.outer(s, y)
    return v @ h @ v.T + rho * np.outer(s, s)


def test_lbfgs_second_direction_uses_the_scaled_initial_matrix():
    """L-BFGS (N&W Alg. 7.4/7.5) after one pair: H₁ = update of γI with γ = sᵀy/yᵀy (eq. 7.20),
    so x₂ − x₁ is a positive multiple of −H₁∇f(x₁), whatever step length the search picks.
    A quadratic in 3-D (the two-loop recursion; 2-D forms the matrix instead)."""
    a = np.diag([1.0, 10.0, 100.0])
    xs, _ = _steps("lbfgs", lambda x: 0.5 * x @ jnp.asarray(a) @ x, [1.0, 1.0, 1.0], 2)
    s, g1 = xs[1] - xs[0], a @ xs[1]
    y = a @ s
    gamma = (s @ y) / (y @ y)
    d = -_bfgs_inverse(gamma * np.eye(3), s, y) @ g1
    assert _parallel(xs[2] - xs[1], d) > 1 - 1e-10
    # the unscaled or inverted scaling points elsewhere on this problem
    for wrong in (1.0, (y @ y) / (s @ y)):
        assert _parallel(_bfgs_inverse(wrong * np.eye(3), s, y) @ g1, -d) < 1 - 1e-6


def test_bfgs_skips_a_pair_with_negative_curvature():
    """BFGS keeps H positive definite by skipping a pair with sᵀy ≤ 0 (module docs; N&W §6.1):
    on f = ½(−x² + y² + 4z²) a one-trial search (max_evals=1) from (1, ½, 0.1) takes a step along
    which the curvature is negative, so H stays I and the next step is along −∇f."""
    dg = np.array([-1.0, 1.0, 4.0])
    f = lambda v: 0.5 * jnp.sum(jnp.asarray(dg) * v * v)  # noqa: E731
    xs, _ = _steps("bfgs:max_evals=1", f, [1.0, 0.5, 0.1], 2)
    step = xs[1] - xs[0]
    assert step @ (dg * step) < 0 and f(jnp.asarray(xs[1])) < f(jnp.asarray(xs[0]))
    assert np.linalg.norm(xs[2] - xs[1]) > 0
    assert _parallel(xs[2] - xs[1], -(dg * xs[1])) > 1 - 1e-12


# -- Newton family --------------------------------------------------------------------------------

def test_modified_newton_direction_uses_absolute_eigenvalues_in_three_dimensions():
    """Ĥ = V max(|Λ|, δ) Vᵀ (N&W §3.4, absolute-value modification): for H = diag(2, −1, 3) and
    g = (1, 1, 1) the direction is −(½, 1, ⅓); rotated, the same in the rotated frame."""
    d, modified = modified_newton_direction(jnp.diag(_f64(2.0, -1.0, 3.0)), _f64(1.0, 1.0, 1.0))
    assert bool(modified)
    np.testing.assert_allclose(np.asarray(d), [-0.5, -1.0, -1.0 / 3.0], rtol=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    lam = np.array([4.0, -2.0, 0.5, -8.0])
    g = np.array([1.0, -2.0, 3.0, 0.5])
    d, _ = modified_newton_direction(jnp.asarray(q @ np.diag(lam) @ q.T), jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(d), -q @ ((q.T @ g) / np.abs(lam)), rtol=1e-10)


def test_steihaug_goes_to_the_boundary_along_the_first_negative_curvature_direction():
    """Steihaug-CG (N&W Alg. 7.2): if d₀ = −g has d₀ᵀHd₀ ≤ 0, return p = τd₀ with ‖p‖ = Δ, τ > 0
    (the boundary point of lower model value): p = −Δg/‖g‖, predicted reduction −gᵀp − ½pᵀHp."""
    h = jnp.diag(_f64(-2.0, 1.0))
    g = _f64(1.0, 0.5)
    radius = 10.0
    p, pred, _, boundary = krylov.steihaug_cg(lambda v: h @ v, g, radius, 1e-10, 10)
    expect = -radius * np.asarray(g) / np.linalg.norm(g)
    np.testing.assert_allclose(np.asarray(p), expect, rtol=1e-12)
    hn = np.asarray(h)
    assert np.isclose(float(pred), -(np.asarray(g) @ expect + 0.5 * expect @ hn @ expect), rtol=1e-12)
    assert bool(boundary)


def test_truncated_cg_returns_steepest_descent_on_first_negative_curvature():
    """Truncated CG for line-search Newton-CG (N&W Alg. 7.1): stop at the first direction of
    non-positive curvature; on the first iteration return −g (a descent direction), later the
    iterate so far, and report negative curvature."""
    h = jnp.diag(_f64(-2.0, 1.0))
    g = _f64(1.0, 0.5)
    p, _, neg = krylov.truncated_cg(lambda v: h @ v, g, 1e-10, 10)
    np.testing.assert_array_equal(np.asarray(p), -np.asarray(g))
    assert bool(neg)
    # positive curvature first (gᵀHg > 0), negative on the second direction: the first CG
    # iterate p₁ = −(gᵀg / gᵀHg) g is returned
    h = jnp.diag(_f64(2.6, -0.1))
    g = _f64(-0.8, -0.4)
    p, _, neg = krylov.truncated_cg(lambda v: h @ v, g, 1e-10, 10)
    gn = np.asarray(g)
    np.testing.assert_allclose(np.asarray(p), -(gn @ gn) / (gn @ np.asarray(h) @ gn) * gn, rtol=1e-12)
    assert bool(neg)


# -- least squares --------------------------------------------------------------------------------

def test_levenberg_marquardt_nielsen_raises_the_damping_after_each_rejected_step():
    """Nielsen's rule (Madsen, Nielsen & Tingleff 2004, eq. 3.13; module docs): μ₀ = τ·max
    diag(J_sᵀJ_s) in scaled variables J_s = J D⁻¹ (D = J's column norms), and after a rejected
    step μ ← μν, ν ← 2ν (ν₀ = 2). The trial step solves (J_sᵀJ_s + μI)q = −J_sᵀr, x + q/D, and
    ``State.step`` logs ‖q‖. Rosenbrock's residuals from (−1.2, 1): the first two trials raise f
    (rejected, x stays), the third, with μ = 8μ₀, is taken."""
    res = lambda x: jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])  # noqa: E731
    x0 = np.array([-1.2, 1.0])
    jac = np.array([[-20.0 * x0[0], 10.0], [-1.0, 0.0]])
    r0 = np.asarray(res(jnp.asarray(x0)))
    dg = np.linalg.norm(jac, axis=0)
    js = jac / dg
    mu0 = 1e-3 * np.max(np.sum(js * js, axis=0))

    def q(mu):
        return np.linalg.solve(js.T @ js + mu * np.eye(2), -js.T @ r0)

    opt, oracle = optimizers.get("levenberg-marquardt:damping=nielsen"), Oracle(None, residuals=res)
    s = opt.init(oracle, jnp.asarray(x0))
    for mu, taken in ((mu0, False), (2 * mu0, False), (8 * mu0, True)):
        s = opt.step(oracle, s)
        assert np.isclose(float(s.step), np.linalg.norm(q(mu)), rtol=1e-10)
        expect = x0 + q(mu) / dg if taken else x0
        np.testing.assert_allclose(np.asarray(s.x), expect, rtol=1e-10)


def test_least_squares_methods_report_the_gradient_of_the_sum_of_squares():
    """State.f = Σr² and State.g = ∇(Σr²) = 2Jᵀr (module docs): the driver's ‖∇f‖ ≤ gtol test reads
    State.g, so a factor off there moves every convergence decision. Checked against autodiff of
    Σr² after each of a few steps on Beale's residuals (MGH 5) from (1, 1)."""
    res = lambda x: jnp.stack([1.5 - x[0] * (1.0 - x[1]), 2.25 - x[0] * (1.0 - x[1] ** 2),  # noqa: E731
                               2.625 - x[0] * (1.0 - x[1] ** 3)])
    fsq = lambda x: jnp.sum(res(x) ** 2)  # noqa: E731
    for spec in ("gauss-newton", "gauss-newton:linesearch=armijo", "levenberg-marquardt",
                 "levenberg-marquardt:damping=nielsen"):
        opt, oracle = optimizers.get(spec), Oracle(None, residuals=res)
        s = opt.init(oracle, _f64(1.0, 1.0))
        for _ in range(3):
            s = opt.step(oracle, s)
            assert np.isclose(float(s.f), float(fsq(s.x)), rtol=1e-12), spec
            np.testing.assert_allclose(np.asarray(s.g), np.asarray(jax.grad(fsq)(s.x)), rtol=1e-10, atol=1e-14,
                                       err_msg=spec)


# -- scoring --------------------------------------------------------------------------------------

def test_success_needs_f_within_one_millionth_of_the_known_minimum():
    """README ("Result format", res.success): where f* is known a start that stopped by itself is
    solved when f − f* ≤ 1e-6·max(1, |f*|) in float64 — absolute 1e-6 near f* = 0, relative 1e-6
    for |f*| > 1."""
    from bench.solve import success_mask
    conv, stalled, max_iter = optimizers.STATUS_NAMES.index("converged"), \
        optimizers.STATUS_NAMES.index("stalled"), optimizers.STATUS_NAMES.index("max_iter")
    codes = np.array([conv, conv, stalled, max_iter])
    for f_star, tol in ((0.0, 1e-6), (0.5, 1e-6), (-3.0e3, 3.0e-3), (124.362, 124.362e-6)):
        fun = np.array([f_star + 0.9 * tol, f_star + 1.1 * tol, f_star + 0.9 * tol, f_star])
        np.testing.assert_array_equal(success_mask(codes, fun, f_star), [True, False, True, False])


def test_starts_csv_columns_hold_their_own_counts():
    """starts.csv's nfev/njev columns (README, "Result format"): gd-linesearch on f = x² from 1
    makes nfev = 3, njev = 2 (see the counting test above) and stops converged after one step;
    the CSV text the store writes must say so under each header."""
    import csv
    import io

    from bench.solve import solve
    from bench.store import STARTS_COLUMNS, _csv_text, summarize
    from problems.base import Problem

    prob = Problem(name="x-squared", f=lambda x: jnp.sum(x * x), x0=np.array([1.0]), f_star=0.0)
    res = solve(prob, "gd-linesearch", np.array([[1.0]]), max_iter=5)   # a batch of one start
    _, starts = summarize(res, 1, "traces/x.npz")
    row = next(csv.DictReader(io.StringIO(_csv_text(STARTS_COLUMNS, starts))))
    assert (row["status"], row["nit"], row["nfev"], row["njev"], row["nhev"]) == ("converged", "1", "3", "2", "0")
