"""Audit of ``optbench perf``'s floors (``bench.kernels``) and of how its peers are set up and read.

The floors promise the *same method* as the optbench optimizer they are matched with, so the same
iterations: checked here start by start against ``bench.solve`` (iteration counts, CG products,
end points, and what happens when a line search fails or a start is not finite), with the
closed-form derivatives checked against autodiff. The peers must stop on the same test,
‖∇f‖₂ ≤ gtol, and their iteration counts must count iterations: checked against independent
counts (the points a solver evaluated, the gradient norms along scipy's own run). Tiny sizes;
no timing is asserted. The optimistix, jaxopt and optax checks skip where those are not installed.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import problems
from bench import kernels, perf
from optimizers import newton as newton_mod

CPU = jax.devices("cpu")[0]
ROSEN = problems.get("rosenbrock")


def _starts16():
    x0s = ROSEN.random_starts(16, seed=0)
    x0s[0] = [1.0, 1.0]          # already at the minimum: no iteration
    return x0s


# -- closed-form derivatives --------------------------------------------------------------------

def test_rosenbrock2_closed_form_derivatives_match_autodiff():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-3, 3, (20, 2))
    f_ad = lambda z: 100.0 * (z[1] - z[0] ** 2) ** 2 + (1.0 - z[0]) ** 2  # noqa: E731
    ref = jax.jit(jax.vmap(lambda z: (f_ad(z), jax.grad(f_ad)(z), jax.hessian(f_ad)(z))))
    f_r, g_r, h_r = (np.asarray(a) for a in ref(jnp.asarray(pts)))
    f, gx, gy, hxx, hxy = (np.asarray(a) for a in jax.jit(kernels._rosen2_derivs)(pts[:, 0], pts[:, 1]))
    np.testing.assert_allclose(f, f_r, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(jax.jit(kernels._rosen2)(pts[:, 0], pts[:, 1])), f_r, rtol=1e-14)
    np.testing.assert_allclose(np.stack([gx, gy], 1), g_r, rtol=1e-12, atol=1e-12)
    # the kernel passes ∂²f/∂y² = 200 as a constant
    np.testing.assert_allclose(np.stack([hxx, hxy, np.full(20, 200.0)], 1),
                               np.stack([h_r[:, 0, 0], h_r[:, 0, 1], h_r[:, 1, 1]], 1), rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(h_r[:, 0, 1], h_r[:, 1, 0])


def test_ext_rosenbrock_is_mgh_21_and_its_kernel_gradient_is_autodiffs():
    """f is Moré–Garbow–Hillstrom #21 (hand-written sum below); the kernel's returned f and ‖∇f‖
    at the point it stops (after 3 iterations, far from the minimum) are autodiff's there."""
    x0 = np.tile([-1.2, 1.0], 8)
    ref = sum(100.0 * (x0[2 * i + 1] - x0[2 * i] ** 2) ** 2 + (1 - x0[2 * i]) ** 2 for i in range(8))
    np.testing.assert_allclose(float(kernels.ext_rosenbrock(jnp.asarray(x0))), ref, rtol=1e-14)
    x, f, gn, k, _ = kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6, max_iter=3)
    assert int(k) == 3
    np.testing.assert_allclose(float(f), float(kernels.ext_rosenbrock(x)), rtol=1e-13)
    np.testing.assert_allclose(float(gn), float(jnp.linalg.norm(jax.grad(kernels.ext_rosenbrock)(x))), rtol=1e-12)
    np.testing.assert_allclose(float(gn), perf._ext_rosen_gnorm_np(np.asarray(x)), rtol=1e-12)


# -- the 2-D Newton floor against optbench's newton -------------------------------------------------

@pytest.mark.parametrize("gtol,max_iter", [(1e-8, 200), (0.0, 200), (1e-8, 3)])
def test_rosenbrock2_floor_runs_optbenchs_newton_iterations(gtol, max_iter):
    """Start by start the same iteration count and end point as ``newton:mode=minimize``, a start
    at the minimum included (0 iterations), at gtol = 0 (runs to ∇f = 0 exactly) and when
    max_iter cuts the run; ``iterations run`` is the largest count."""
    x0s = _starts16()
    x, f, gn, nit, k = kernels.rosenbrock2_newton(jnp.asarray(x0s), gtol, max_iter=max_iter)
    res = bench.solve(ROSEN, "newton:mode=minimize", x0s, max_iter=max_iter, gtol=gtol)
    np.testing.assert_array_equal(np.asarray(nit), res.nit)
    assert int(k) == int(np.max(res.nit)) and int(np.asarray(nit)[0]) == 0
    np.testing.assert_allclose(np.asarray(x), res.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gn), perf._rosen_grad_np(np.asarray(x)), rtol=1e-12, atol=1e-12)
    done = res.status == "converged"
    assert np.all(np.asarray(gn)[done] <= gtol) and np.all(np.asarray(gn)[~done] > gtol)


def test_rosenbrock2_floor_defaults_are_newtons():
    sig_k = inspect.signature(kernels.rosenbrock2_newton).parameters
    sig_n = inspect.signature(newton_mod.newton).parameters
    for name in ("c1", "shrink", "max_backtracks"):
        assert sig_k[name].default == sig_n[name].default, name


def test_rosenbrock2_floor_counts_the_unit_trial_in_max_backtracks():
    """optbench's search evaluates f at most ``max_backtracks`` times, the trial at α = 1
    included, and a start whose search fails stops there (``linesearch_failed``). The floor's
    first trial was not counted: with max_backtracks = 1 it still backtracked once, so 12 of
    these 16 starts that optbench stops at iteration 2 or 3 ran on to convergence (25, 22, …)."""
    x0s = _starts16()
    x, f, gn, nit, k = kernels.rosenbrock2_newton(jnp.asarray(x0s), 1e-8, max_backtracks=1)
    res = bench.solve(ROSEN, "newton:mode=minimize:max_backtracks=1", x0s, max_iter=200, gtol=1e-8)
    assert np.any(res.status == "linesearch_failed")   # the case this test is about
    np.testing.assert_array_equal(np.asarray(nit), res.nit)
    np.testing.assert_allclose(np.asarray(x), res.x, rtol=0, atol=1e-12)


def test_rosenbrock2_floor_does_not_step_from_a_non_finite_start():
    """A start where f overflows is ``diverged`` at iteration 0 for optbench; the floor took an
    iteration from it."""
    x0s = _starts16()
    x0s[3] = [1e80, 1e80]        # f = inf, ∇f finite
    x0s[5] = [1e155, 0.0]
    x, f, gn, nit, k = kernels.rosenbrock2_newton(jnp.asarray(x0s), 1e-8)
    res = bench.solve(ROSEN, "newton:mode=minimize", x0s, max_iter=200, gtol=1e-8)
    assert list(res.status[[3, 5]]) == ["diverged", "diverged"]
    np.testing.assert_array_equal(np.asarray(nit), res.nit)
    np.testing.assert_array_equal(np.asarray(x)[[3, 5]], x0s[[3, 5]])


# -- the Newton-CG floor against optbench's newton-cg:linesearch=armijo -----------------------------

def _ext32_starts():
    rng = np.random.default_rng(1)
    p = perf.ext_rosenbrock_problem(32)
    rng.uniform(-2, 2, 32)                       # (a start where rounding makes the two drift apart)
    return p, [p.x0, rng.uniform(-2, 2, 32), rng.uniform(-2, 2, 32)]


def test_newton_cg_floor_runs_optbenchs_armijo_newton_cg_iterations():
    """Same iterations and Hessian-vector products as ``newton-cg:linesearch=armijo`` (the
    floor's Hv is closed form, optbench's autodiff), from the standard start — the perf case's —
    and two random ones; a start at the minimum takes no iteration."""
    p, starts = _ext32_starts()
    for x0 in starts:
        x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6, max_iter=1000)
        r = bench.solve(p, "newton-cg:linesearch=armijo", x0[None], max_iter=1000, gtol=1e-6)
        assert (int(k), int(ncg)) == (int(r.nit[0]), int(r.nhvp[0]))
        np.testing.assert_allclose(np.asarray(x), r.x[0], rtol=0, atol=1e-9)
        assert float(gn) <= 1e-6
    assert (int(k), int(ncg)) != (0, 0)
    x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.ones(32), 1e-6, max_iter=1000)
    assert (int(k), int(ncg), float(f), float(gn)) == (0, 0, 0.0, 0.0)


def test_newton_cg_floor_defaults_are_newton_cgs():
    """The floor's line-search budget and CG cap are newton-cg's (40 evaluations; min(2n, 500)
    products): they were 60 and 200."""
    sig_k = inspect.signature(kernels.ext_rosenbrock_newton_cg).parameters
    sig_n = inspect.signature(newton_mod.newton_cg).parameters
    assert sig_k["max_backtracks"].default == sig_n["max_evals"].default
    assert sig_k["c1"].default == sig_n["c1"].default
    assert sig_k["max_cg"].default is None and sig_n["max_cg"].default == 0   # both: automatic, min(2n, 500)
    # an explicit cap means the same in both
    p, starts = _ext32_starts()
    x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.asarray(starts[1]), 1e-6, max_iter=200, max_cg=3)
    r = bench.solve(p, "newton-cg:linesearch=armijo:max_cg=3", starts[1][None], max_iter=200, gtol=1e-6)
    assert (int(k), int(ncg)) == (int(r.nit[0]), int(r.nhvp[0]))


@pytest.mark.parametrize("max_backtracks", [1, 2])
def test_newton_cg_floor_stops_where_its_line_search_fails(max_backtracks):
    """A search with no sufficient decrease leaves x in place and ends the run, as optbench's
    (``linesearch_failed``). The floor took the last, rejected trial and went on: with one trial
    per search, f went 29.2 → 9,830 at iteration 6 and the run took 30 iterations, not 6."""
    p, starts = _ext32_starts()
    x0 = starts[1]
    x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6, max_iter=200,
                                                        max_backtracks=max_backtracks)
    r = bench.solve(p, f"newton-cg:linesearch=armijo:max_evals={max_backtracks}", x0[None], max_iter=200, gtol=1e-6)
    assert r.status[0] == "linesearch_failed"
    assert (int(k), int(ncg)) == (int(r.nit[0]), int(r.nhvp[0]))
    np.testing.assert_allclose(float(f), r.fun[0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(x), r.x[0], rtol=0, atol=1e-12)
    # f never rose: the end point is no worse than the run one iteration shorter
    f_prev = float(kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6, max_iter=int(k) - 1,
                                                    max_backtracks=max_backtracks)[1])
    assert float(f) <= f_prev


def test_newton_cg_floor_does_not_step_from_a_non_finite_start():
    x0 = np.tile([-1.2, 1.0], 16)
    x0[0] = 1e160                                  # f = inf
    x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6, max_iter=50)
    assert (int(k), int(ncg)) == (0, 0) and not np.isfinite(float(f))


# -- the floors as perf wires them --------------------------------------------------------------

def _prepared_outcome(case, label):
    c = next(c for c in case.contenders if c.label == label)
    return c.prepare()()[1]


def test_perf_rows_of_the_floors_read_the_same_iterations_as_optbench():
    case = perf.rosenbrock_case(8, 1e-8, CPU, scipy_starts=1, methods=("newton",), slim=True)
    fl = _prepared_outcome(case, "floor: closed-form Newton (2×2)")
    ob = _prepared_outcome(case, "optbench newton:mode=minimize")
    np.testing.assert_array_equal(fl.nit, ob.nit)
    assert fl.solved == ob.solved == 1.0
    # not slim, on the CPU: the method again with fuse_loops=True, and the floor compiled the same
    # way, which runs the same iterations too
    case = perf.rosenbrock_case(8, 1e-8, CPU, scipy_starts=1, methods=("newton",))
    fl = _prepared_outcome(case, "floor: closed-form Newton (2×2)" + perf.FUSED_SUFFIX)
    ob = _prepared_outcome(case, "optbench newton:mode=minimize" + perf.FUSED_SUFFIX)
    np.testing.assert_array_equal(fl.nit, ob.nit)
    assert fl.solved == ob.solved == 1.0
    case = perf.ext_rosenbrock_case(32, 1e-6, CPU, methods=("newton-cg",))
    fl = _prepared_outcome(case, "floor: Newton-CG, closed-form Hv")
    ob = _prepared_outcome(case, "optbench newton-cg:linesearch=armijo")
    np.testing.assert_array_equal(fl.nit, ob.nit)
    assert fl.solved == ob.solved == 1.0 and int(fl.nit[0]) == 78


# -- peers: the same test on the same quantity, iterations counted as iterations --------------------

def _ext_np(n):
    """f and ∇f (returned together), and Hv, of extended Rosenbrock in numpy."""
    def fg(x):
        u, v = x[0::2], x[1::2]
        t = v - u * u
        g = np.empty_like(x)
        g[0::2], g[1::2] = -400.0 * u * t - 2.0 * (1.0 - u), 200.0 * t
        return float(np.sum(100.0 * t * t + (1.0 - u) ** 2)), g

    def hessp(x, p):
        u, v = x[0::2], x[1::2]
        huu, huv = 1200.0 * u * u - 400.0 * v + 2.0, -400.0 * u
        out = np.empty_like(p)
        out[0::2], out[1::2] = huu * p[0::2] + huv * p[1::2], huv * p[0::2] + 200.0 * p[1::2]
        return out
    return fg, hessp


@pytest.mark.parametrize("jac_form", ["with f", "callable"])
def test_scipy_newton_cg_stops_at_the_first_iterate_with_small_gradient(jac_form, monkeypatch):
    """scipy's Newton-CG tests only its step, so it ran past ‖∇f‖ ≤ gtol (n = 32: 86 iterations
    where the 84th already met it). The reference is scipy's own run, its gradient norms
    recorded at every iterate. The first run (perf's untimed warm-up) finds the iteration with
    a callback; the later, timed runs stop there by maxiter, without the callback."""
    so = pytest.importorskip("scipy.optimize")
    n, gtol = 32, 1e-6
    fg, hessp = _ext_np(n)
    x0 = np.tile([-1.2, 1.0], n // 2)
    norms = []
    so.minimize(fg, x0, jac=True, hessp=hessp, method="Newton-CG", options={"xtol": 1e-30, "maxiter": 1000},
                callback=lambda xk: norms.append(np.linalg.norm(fg(xk)[1])))
    first = 1 + next(i for i, g in enumerate(norms) if g <= gtol)
    assert first < len(norms)   # scipy by itself runs on
    stops = []
    real = getattr(perf, "_gradient_stop", None)
    monkeypatch.setattr(perf, "_gradient_stop", lambda *a: stops.append(1) or real(*a), raising=False)
    if jac_form == "with f":
        run = perf._scipy_loop("Newton-CG", [x0, x0], gtol, 1000, fg, True, hessp=hessp)
    else:
        run = perf._scipy_loop("Newton-CG", [x0, x0], gtol, 1000, lambda x: fg(x)[0], lambda x: fg(x)[1],
                               hessp=hessp)
    for calls in (2, 2):                       # one callback per start, in the first run only
        _, xs, nit = run()
        assert list(nit) == [first, first] and len(stops) == calls
        assert np.linalg.norm(fg(xs[0])[1]) <= gtol < norms[first - 2]
        np.testing.assert_array_equal(xs[0], xs[1])


def test_scipy_peers_stop_on_the_2_norm_of_the_gradient():
    """BFGS (norm=2), trust-exact (2-norm) and L-BFGS-B (∞-norm at gtol/√n) end with ‖∇f‖₂ ≤ gtol,
    BFGS and trust-exact at the first iterate that has it (scipy's gradient norms recorded)."""
    so = pytest.importorskip("scipy.optimize")
    gtol = 1e-8
    x0s = ROSEN.random_starts(6, seed=2)
    for method, hess in (("BFGS", None), ("trust-exact", so.rosen_hess), ("L-BFGS-B", None)):
        _, xs, nit = perf._scipy_loop(method, x0s, gtol, 200, so.rosen, so.rosen_der, hess)()
        assert np.all(perf._rosen_grad_np(np.asarray(xs)) <= gtol), method
        if method == "L-BFGS-B":
            continue
        for x0, k in zip(x0s, nit):
            norms = []
            so.minimize(so.rosen, x0, jac=so.rosen_der, hess=hess, method=method,
                        options={"maxiter": 400, "gtol": 1e-300},
                        callback=lambda xk: norms.append(float(perf._rosen_grad_np(xk)[0])))
            assert k == 1 + next(i for i, g in enumerate(norms) if g <= gtol), method


def _recording(monkeypatch, name):
    """Replace perf's ``name`` (the function the peers are built on) by one that records, with
    ``jax.debug.callback``, every point it is evaluated at."""
    pts = []
    orig = getattr(perf, name)

    def rec(x):
        jax.debug.callback(lambda y: pts.append(np.array(y)), x)
        return orig(x)
    monkeypatch.setattr(perf, name, rec)
    return pts


def test_optimistix_bfgs_iterations_are_its_completed_line_searches(monkeypatch):
    """optimistix takes a step per evaluation of f, so ``num_steps`` counted every rejected
    backtracking trial and the evaluation at x₀ (2-D Rosenbrock: 56 steps for 36 iterations).
    Independent count: from the points f was evaluated at, a trial is rejected when the next
    one halves its step from the same base point (backtracking by 1/2, optimistix's default)."""
    pytest.importorskip("optimistix")
    pts = _recording(monkeypatch, "_rosen_f")
    fn = jax.jit(perf._optimistix_min("BFGS", 1e-12, 1e-12, 200))
    for x0 in ROSEN.random_starts(3, seed=0):
        pts.clear()
        x, it = fn(jnp.asarray(x0)[None])
        p = np.array(pts).reshape(len(pts), 2)
        base, accepted = p[0], 0
        for i in range(1, len(p)):
            halved = i + 1 < len(p) and np.allclose(p[i + 1] - base, 0.5 * (p[i] - base), rtol=1e-9, atol=1e-15)
            if not halved:
                accepted, base = accepted + 1, p[i]
        assert accepted < len(p) - 1             # some trials were rejected
        assert int(it[0]) == accepted
        np.testing.assert_array_equal(base, np.asarray(x[0]))   # the last accepted point is the answer


@pytest.mark.parametrize("solver", ["LevenbergMarquardt", "GaussNewton"])
def test_optimistix_least_squares_iterations_are_its_trials_after_x0(monkeypatch, solver):
    """Each step of optimistix's LM / Gauss-Newton tries one point (accepted or not): the
    iterations are the points its residuals were evaluated at, x₀'s evaluation not counted
    (Gauss-Newton on Rosenbrock's residuals: 2 steps to the solution and the zero step its Cauchy
    test needs = 3; ``num_steps`` said 4)."""
    pytest.importorskip("optimistix")
    pts = _recording(monkeypatch, "_rosen_residuals")
    fn = jax.jit(perf._optimistix_lsq(solver, 1e-12, 1e-12, 200))
    for x0 in ROSEN.random_starts(2, seed=0):
        pts.clear()
        x, it = fn(jnp.asarray(x0)[None])
        assert int(it[0]) == len(pts) - 1
        if solver == "GaussNewton":
            assert int(it[0]) == 3


def _first_iterate_test(label, gtol=1e-8):
    """The peer's run from the standard start stops at the first iterate with ‖∇f‖₂ ≤ gtol: its
    end point has it, the run one iteration shorter does not."""
    out = _prepared_outcome(perf.rosenbrock_case(1, gtol, CPU, scipy_starts=1, max_iter=200), label)
    k = int(out.nit[0])
    assert out.grad_norm[0] <= gtol and k > 1
    short = _prepared_outcome(perf.rosenbrock_case(1, gtol, CPU, scipy_starts=1, max_iter=k - 1), label)
    assert int(short.nit[0]) == k - 1 and short.grad_norm[0] > gtol


def test_jaxopt_levenberg_marquardt_stops_on_the_gradient_of_the_sum_of_squares():
    """jaxopt minimises ½Σr², whose gradient is half of ∇Σr²: its tol is gtol/2."""
    pytest.importorskip("jaxopt")
    _first_iterate_test("jaxopt LevenbergMarquardt")


def test_optax_lbfgs_loop_stops_on_the_gradient_norm():
    pytest.importorskip("optax")
    _first_iterate_test("optax.lbfgs (jitted while_loop)")


# -- the regression floor -----------------------------------------------------------------------

def test_linreg_floor_is_optbenchs_gradient_descent_in_float32():
    """``iters`` steps w ← w − lr·∇‖Xw − y‖² on X stored as Xᵀ, in float32: the same iterates as
    numpy's float64 formula and as optbench's ``gd`` on the blocked f (perf's "optbench gd
    (blocked f)" row), and the f it returns is f at the iterate before the last step."""
    rng = np.random.default_rng(4)
    rows, d, iters = 650, 4, 5                      # 3 blocks of 200 rows and a tail of 50
    x = rng.standard_normal((rows, d)).astype(np.float32)
    y = (x @ rng.standard_normal(d) + 0.1 * rng.standard_normal(rows)).astype(np.float32)
    xt, w0, lr = np.ascontiguousarray(x.T), np.zeros(d, np.float32), np.float32(0.25 / rows)
    w, f = kernels.linreg_gd_blocked(xt, y, w0, lr, iters, 200)
    assert w.dtype == jnp.float32
    ref, x64, y64 = [w0.astype(np.float64)], x.astype(np.float64), y.astype(np.float64)
    for _ in range(iters):
        ref.append(ref[-1] - float(lr) * 2.0 * x64.T @ (x64 @ ref[-1] - y64))
    np.testing.assert_allclose(np.asarray(w), ref[-1], rtol=1e-4)
    r = x64 @ ref[-2] - y64
    np.testing.assert_allclose(float(f), r @ r, rtol=1e-4)
    p = problems.Problem(name="linreg-blocked-audit", f=lambda w, dd: kernels.sse(w, dd["XT"], dd["y"], 200),
                         x0=w0, data={"XT": xt, "y": y})
    res = bench.solve(p, f"gd:lr={float(lr)!r}", w0[None], max_iter=iters, gtol=0.0, dtype="float32")
    assert int(res.nit[0]) == iters
    np.testing.assert_allclose(res.x[0], np.asarray(w), rtol=1e-5)
