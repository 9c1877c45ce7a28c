"""Audit of ``scipy:<method>`` (bench/scipy_runner.py): iteration budgets, optbench's stopping test
at x0 and at every iterate, scipy's own stops classified, option names. References: scipy called
directly with counting wrappers of our own, scipy's Rosenbrock (rosen, rosen_der) and closed forms."""
import os
import warnings

import numpy as np
import pytest

so = pytest.importorskip("scipy.optimize")

import problems  # noqa: E402
from bench import scipy_runner  # noqa: E402
from bench.cli import main  # noqa: E402
from optbench_core import OptbenchError  # noqa: E402

X0 = np.array([-1.2, 1.0])
EPS10 = 10 * np.finfo(float).eps


def _direct(method, x0, stop_after, **kw):
    """scipy's method on scipy's Rosenbrock, stopped after ``stop_after`` callbacks; returns the
    iterates seen by the callback and the calls made to f and ∇f up to then."""
    calls = {"f": 0, "g": 0}
    seen = []

    def f(x):
        calls["f"] += 1
        return so.rosen(x)

    def g(x):
        calls["g"] += 1
        return so.rosen_der(x)

    class Enough(Exception):
        pass

    def cb(xk):
        seen.append((np.array(xk, dtype=float), dict(calls)))
        if len(seen) >= stop_after:
            raise Enough

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            so.minimize(f, x0, callback=cb, method=method, **kw)
        except Enough:
            pass
    return seen


def test_nelder_mead_takes_max_iter_steps():
    """scipy counts Nelder-Mead's initial simplex as iteration 1, so maxiter=max_iter gave only
    max_iter − 1 steps (nit 4 for max_iter 5); the runner now takes max_iter steps like the others."""
    p = problems.get("rosenbrock")
    res = scipy_runner.solve(p, "scipy:Nelder-Mead", X0[None], max_iter=5, gtol=1e-12)
    ref = _direct("Nelder-Mead", X0, 5, options={"xatol": EPS10, "fatol": EPS10, "maxiter": 1000})
    assert len(ref) == 5
    assert res.nit[0] == 5 and res.status[0] == "max_iter"
    np.testing.assert_allclose(res.x[0], ref[4][0], rtol=0, atol=1e-12)
    assert res.nfev[0] == ref[4][1]["f"]


def test_tnc_stops_at_max_iter():
    """TNC ignores StopIteration: with max_iter=5 it ran on to its own convergence (21 iterations)
    and was reported 'converged' at nit 5 with the solution's x; now it stops at iterate 5."""
    p = problems.get("rosenbrock")
    res = scipy_runner.solve(p, "scipy:TNC", X0[None], max_iter=5, gtol=1e-8)
    ref = _direct("TNC", X0, 5, jac=so.rosen_der)
    assert res.status[0] == "max_iter" and res.nit[0] == 5
    # TNC's path is sensitive to the last bits of f (JAX's Rosenbrock against scipy's)
    np.testing.assert_allclose(res.x[0], ref[4][0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.trace.x[0, 5], ref[4][0], rtol=0, atol=1e-4)
    assert np.linalg.norm(so.rosen_der(res.x[0])) > 1e-8
    assert not res.success[0]


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC"])
def test_scipy_evaluation_budget_is_max_iter(method):
    """L-BFGS-B ('STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT') and TNC ('Max. number of
    function evaluations reached') cut off by maxfun were 'stalled' — stopped by themselves, a
    success at f*; a start cut off by a budget is max_iter."""
    p = problems.get("rosenbrock")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = so.minimize(so.rosen, X0, jac=so.rosen_der, method=method, options={"maxfun": 5})
    assert ref.status == {"L-BFGS-B": 1, "TNC": 3}[method]   # scipy: evaluation budget
    res = scipy_runner.solve(p, f"scipy:{method}:maxfun=5", X0[None], max_iter=100, gtol=1e-8)
    assert res.nit[0] < 100
    assert res.status[0] == "max_iter" and not res.success[0]


@pytest.mark.parametrize("method", ["Nelder-Mead", "Powell", "L-BFGS-B", "SLSQP", "TNC"])
def test_a_start_that_satisfies_gtol_stops_at_x0(method):
    """optbench's test holds at x0 (‖∇f‖ = 0 at Rosenbrock's minimiser; 8.96e-7 ≤ 1e-6 next to it):
    the driver stops there with nit 0; these methods took a step first (Powell 21 evaluations)."""
    p = problems.get("rosenbrock")
    x0s = np.array([[1.0, 1.0], [1.0 + 1e-9, 1.0]])
    assert np.linalg.norm(so.rosen_der(x0s[1])) <= 1e-6
    res = scipy_runner.solve(p, f"scipy:{method}", x0s, max_iter=20, gtol=1e-6)
    assert list(res.status) == ["converged"] * 2 and list(res.nit) == [0, 0]
    np.testing.assert_array_equal(res.x, x0s)
    assert list(res.nfev) == [1, 1]
    np.testing.assert_allclose(res.grad_norm, [np.linalg.norm(so.rosen_der(x)) for x in x0s], atol=1e-15)


def test_a_start_where_f_overflows_is_diverged_at_x0():
    """f(1e100, 1e100) = 100·(1e100 − 1e200)² + … overflows: diverged at iteration 0, as the
    driver says (Nelder-Mead built its simplex first: nit 1, 7 evaluations)."""
    p = problems.get("rosenbrock")
    x0 = np.array([1e100, 1e100])
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(so.rosen(x0))
    res = scipy_runner.solve(p, "scipy:Nelder-Mead", x0[None], max_iter=20, gtol=1e-6)
    assert res.status[0] == "diverged" and res.nit[0] == 0 and res.nfev[0] == 1


def test_least_squares_trf_stops_when_no_step_changes_x():
    """With scipy's xtol off, trf kept shrinking a zero step until max_nfev (gaussian-fit: 2,846
    residual evaluations for 12 iterations), reported max_iter and no success; at the least-squares
    minimum scipy itself reaches with its default tolerances it is a stall."""
    p = problems.get("gaussian-fit")
    res = scipy_runner.solve(p, "scipy:least_squares", p.x0[None], max_iter=20, gtol=1e-8)

    def r(x):
        return np.asarray(p.residual_vector(x, p.data), dtype=float)

    ref = so.least_squares(r, p.x0, method="trf")
    assert res.fun[0] == pytest.approx(2 * ref.cost, rel=1e-10)
    assert res.status[0] in ("converged", "stalled") and res.success[0]
    assert res.nfev[0] < 100


@pytest.mark.parametrize("gtol", [1e-8, 1e6])
def test_least_squares_lm_stops_at_max_iter(gtol):
    """MINPACK takes no callback: lm ran past max_iter to its own convergence and was reported at
    nit = max_iter with the final x. Now the iterate after max_iter Jacobians (x0 included) ends
    it — also when every iterate meets gtol (lm runs on past gtol to its own tolerances, and the
    gtol test, coming first, used to hide the budget: lm again ran to its end)."""
    p = problems.get("rosenbrock")
    seen = []

    def r(x):
        return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    def jac(x):
        if not seen or not np.array_equal(seen[-1], x):
            seen.append(np.array(x, dtype=float))
        return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])

    so.least_squares(r, X0, jac=jac, method="lm", ftol=EPS10, xtol=EPS10, gtol=EPS10)
    assert len(seen) > 4
    res = scipy_runner.solve(p, "scipy:least_squares:method=lm", X0[None], max_iter=3, gtol=gtol)
    assert res.nit[0] == 3
    if gtol < 1:
        assert res.status[0] == "max_iter"
    np.testing.assert_allclose(res.x[0], seen[3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.trace.x[0, :4], np.array(seen[:4]), rtol=0, atol=1e-12)


def test_line_search_failures_of_lbfgsb_and_tnc():
    """L-BFGS-B's 'ABNORMAL' (its line search failed) and TNC's status 4 ('Linear search failed')
    are line-search failures like BFGS's precision loss, not 'stalled'."""
    p = problems.get("himmelblau")
    x0 = np.array([-2.75415886, -2.90083419])

    def f(x):
        return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2

    def g(x):
        a, b = x[0] ** 2 + x[1] - 11, x[0] + x[1] ** 2 - 7
        return np.array([4 * x[0] * a + 2 * b, 2 * a + 4 * x[1] * b])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lb = so.minimize(f, x0, jac=g, method="L-BFGS-B", options={"gtol": 0, "ftol": 0, "maxiter": 300})
        tnc = so.minimize(f, x0, jac=g, method="TNC", options={"gtol": 0, "ftol": 0, "xtol": 0, "maxfun": 3000})
    assert lb.message.startswith("ABNORMAL") and tnc.status == 4
    res = scipy_runner.solve(p, "scipy:L-BFGS-B:ftol=0", x0[None], max_iter=300, gtol=1e-30)
    assert res.status[0] == "linesearch_failed", res.extra["scipy_message"]
    res = scipy_runner.solve(p, "scipy:TNC", x0[None], max_iter=300, gtol=1e-30)
    assert res.status[0] == "linesearch_failed", res.extra["scipy_message"]


@pytest.mark.parametrize("spec", ["scipy:Nelder-Mead:maxiter=10", "scipy:Powell:maxfev=50",
                                  "scipy:trust-exact:maxiter=10", "scipy:dogleg:maxiter=10",
                                  "scipy:trust-krylov:gtol=1e-3", "scipy:trust-ncg:eta=0.2",
                                  "scipy:trust-constr:xtol=1e-12"])
def test_documented_options_are_accepted(spec):
    """Options scipy documents for these methods ('maxiter, maxfev : int' for Nelder-Mead and
    Powell; maxiter and gtol of the trust-region methods) were refused as unknown."""
    m = scipy_runner.get(spec)
    key = spec.rsplit(":", 1)[1].split("=")[0]
    assert key in m.params


@pytest.mark.parametrize("spec,word", [("scipy:trust-constr:foo=1", "foo"), ("scipy:Nelder-Mead:bounds=1", "bounds"),
                                       ("scipy:BFGS:foo=1", "foo")])
def test_unknown_options_refused_up_front(spec, word, tmp_path, capsys):
    """trust-constr took any option name (its documentation could not be read); bounds is
    minimize's argument, not a Nelder-Mead option. One line, exit 2, nothing written."""
    with pytest.raises(OptbenchError, match=f"unknown option '{word}'"):
        scipy_runner.get(spec)
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", spec, "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"unknown option '{word}'" in err and err.count("\n") == 1 and not os.path.exists(out)


def test_huge_max_iter_keeps_only_the_rows_run_and_the_cli_refuses_the_history(tmp_path, capsys):
    """The history holds the rows the starts ran; the flat tail to max_iter is the Trace's lazy
    padding (the runner allocated (B, max_iter + 1) arrays after solving: max_iter = 10¹¹ was a
    MemoryError). A run that would write that tail out is refused before it starts, exit 2."""
    x0s = np.array([[-1.2, 1.0], [0.5, 0.5]])
    big = scipy_runner.solve("rosenbrock", "scipy:BFGS", x0s, max_iter=10 ** 11)
    small = scipy_runner.solve("rosenbrock", "scipy:BFGS", x0s, max_iter=60)
    assert list(big.status) == ["converged", "converged"]
    np.testing.assert_array_equal(big.nit, small.nit)
    np.testing.assert_array_equal(big.fun, small.fun)
    rec = big.trace.recorded()
    assert rec["f"].shape == (2, int(big.nit.max()) + 1)
    np.testing.assert_array_equal(rec["f"], small.trace.recorded()["f"])
    # padded to max_iter + 1 with each start's last row
    f = small.trace.arrays()["f"]
    assert f.shape == (2, 61)
    np.testing.assert_array_equal(f[:, -1], small.fun)
    np.testing.assert_array_equal(small.trace.arrays()["x"][:, -1], small.x)
    out = tmp_path / "run"
    rc = main(["run", "--problems", "rosenbrock", "--optimizers", "scipy:BFGS", "--max-iter", str(10 ** 11),
               "--starts", "1", "--no-plots", "--no-report", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "history needs about" in err and "available on the host" in err
