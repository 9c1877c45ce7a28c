"""``scipy:<method>``: scipy.optimize on optbench's problems and starts, recorded in the driver's
Result/Trace shapes. Checked against scipy called directly (its own test functions and counts),
and against optbench's ``bfgs`` in one run."""
import csv
import os
import sys

import numpy as np
import pytest

scipy_optimize = pytest.importorskip("scipy.optimize")

import optimizers  # noqa: E402
import problems  # noqa: E402
from bench import scipy_runner, store  # noqa: E402
from bench.cli import main  # noqa: E402
from optbench_core import OptbenchError  # noqa: E402


def test_bfgs_matches_scipy_called_directly():
    """Same iterates as scipy's own BFGS on scipy's own Rosenbrock (rosen, rosen_der), and the
    evaluation counts are scipy's: the runner only watches and records."""
    p = problems.get("rosenbrock")
    x0s = p.random_starts(3, 0)
    res = scipy_runner.solve(p, "scipy:BFGS", x0s, max_iter=200, gtol=1e-8)
    for i, x0 in enumerate(x0s):
        ref = scipy_optimize.minimize(scipy_optimize.rosen, x0, jac=scipy_optimize.rosen_der, method="BFGS",
                                      options={"gtol": 1e-8, "norm": 2, "maxiter": 200})
        assert ref.success
        np.testing.assert_allclose(res.x[i], ref.x, rtol=0, atol=1e-9)
        assert abs(int(res.nit[i]) - ref.nit) <= 1
        if res.nit[i] == ref.nit:
            assert (res.nfev[i], res.njev[i]) == (ref.nfev, ref.njev)
    assert list(res.status) == ["converged"] * 3 and res.success.all()
    np.testing.assert_allclose(res.x, 1.0, atol=1e-6)


def test_trace_has_the_driver_shape():
    p = problems.get("himmelblau")
    x0s = p.random_starts(4, 2)
    res = scipy_runner.solve(p, "scipy:trust-exact", x0s, max_iter=50, gtol=1e-9)
    tr = res.trace
    assert tr.f.shape == tr.grad_norm.shape == tr.nfev.shape == tr.nhev.shape == (4, 51)
    assert tr.x.shape == (4, 51, 2)
    for i in range(4):
        k = int(res.nit[i])
        np.testing.assert_allclose(tr.x[i, 0], x0s[i])
        assert tr.f[i, 0] == pytest.approx(float(p(x0s[i])))
        # after the last iterate the curve stays flat, and it ends at the final values
        assert np.all(tr.f[i, k:] == res.fun[i]) and np.all(tr.x[i, k:] == res.x[i])
        assert tr.nhev[i, -1] == res.nhev[i] and tr.nfev[i, -1] == res.nfev[i]
        for key in ("nfev", "njev", "nhev"):
            assert np.all(np.diff(getattr(tr, key)[i]) >= 0)
        # trust-exact is a Hessian method: it evaluated Hessians, recorded per iteration
        assert res.nhev[i] >= k
        assert np.isnan(tr.step[i]).all() and np.isnan(tr.rho[i]).all()
    assert res.success.all()
    assert res.compile_s > 0 and res.run_s > 0 and res.device.startswith("cpu")


def test_least_squares_lm_matches_scipy_called_directly():
    """least_squares(method='lm') on himmelblau's residuals; f = Σ r² (scipy's cost is ½Σ r²)."""
    p = problems.get("himmelblau")
    x0s = p.random_starts(3, 1)
    res = scipy_runner.solve(p, "scipy:least_squares:method=lm", x0s, max_iter=100, gtol=1e-10)

    calls = {"r": 0, "jac": 0}

    def r(x):
        calls["r"] += 1
        return np.array([x[0] ** 2 + x[1] - 11.0, x[0] + x[1] ** 2 - 7.0])

    def jac(x):
        calls["jac"] += 1
        return np.array([[2 * x[0], 1.0], [1.0, 2 * x[1]]])

    for i, x0 in enumerate(x0s):
        calls.update(r=0, jac=0)
        ref = scipy_optimize.least_squares(r, x0, jac=jac, method="lm", ftol=10 * np.finfo(float).eps,
                                           xtol=10 * np.finfo(float).eps, gtol=10 * np.finfo(float).eps)
        np.testing.assert_allclose(res.x[i], ref.x, atol=1e-9)
        assert res.fun[i] == pytest.approx(2 * ref.cost, abs=1e-20)
        # the counts are the calls scipy made (its own nfev/njev can differ by its set-up calls)
        assert (res.nfev[i], res.njev[i]) == (calls["r"], calls["jac"])
        # one history row per Jacobian, i.e. per accepted iterate, from x0 to the solution
        k = int(res.nit[i])
        np.testing.assert_allclose(res.trace.x[i, 0], x0)
        np.testing.assert_allclose(res.trace.x[i, k], ref.x, atol=1e-9)
        assert k <= calls["jac"]
    assert list(res.status) == ["converged"] * 3


def test_stops_at_max_iter_and_classifies():
    p = problems.get("rosenbrock")
    res = scipy_runner.solve(p, "scipy:CG", p.random_starts(2, 0), max_iter=5, gtol=1e-12)
    assert list(res.status) == ["max_iter", "max_iter"] and list(res.nit) == [5, 5]
    assert res.trace.f.shape == (2, 6)


def test_bfgs_and_scipy_bfgs_same_minimisers_in_one_run(tmp_path):
    """optbench's bfgs and scipy's BFGS from the same starts reach the same minimisers, and both
    appear in one run's summary (settings of the quick suite, so the compiled cells are shared)."""
    if "bfgs" not in optimizers.names():
        pytest.skip("optbench's bfgs is not registered in this checkout")
    out = str(tmp_path / "run")
    probs = ["rosenbrock", "quadratic:dim=10:cond=1000"]
    rc = main(["run", "--problems", ",".join(probs), "--optimizers", "bfgs,scipy:BFGS", "--starts", "5",
               "--seed", "0", "--max-iter", "500", "--repeats", "1", "--out", out, "--quiet", "--no-plots"])
    assert rc == 0
    rows = list(csv.DictReader(open(os.path.join(out, "summary.csv"))))
    assert {(r["problem"], r["optimizer"]) for r in rows} == {(p, o) for p in probs for o in ("bfgs", "scipy:BFGS")}
    run = store.load_run(out)
    for p in probs:
        a, b = run.cell(p, "bfgs"), run.cell(p, "scipy:BFGS")
        np.testing.assert_array_equal(a["x0"], b["x0"])
        assert list(a["status"]) == ["converged"] * 5 and list(b["status"]) == ["converged"] * 5
        np.testing.assert_allclose(a["x"], b["x"], atol=1e-6)
        np.testing.assert_allclose(a["x"], np.ones_like(a["x"]), atol=1e-6)
        # scipy's own termination message is kept with the cell
        assert b["scipy_message"].shape == (5,)


def test_bad_specs_one_line():
    with pytest.raises(OptbenchError, match="unknown scipy method 'BFSG'.*did you mean: BFGS"):
        scipy_runner.get("scipy:BFSG")
    with pytest.raises(OptbenchError, match="unknown option 'gtoll' for scipy:BFGS.*did you mean: gtol"):
        scipy_runner.get("scipy:BFGS:gtoll=1e-3")
    with pytest.raises(OptbenchError, match="unknown parameter 'loss'"):
        scipy_runner.get("scipy:least_squares:loss=soft_l1")
    with pytest.raises(OptbenchError, match="must be trf, dogbox or lm"):
        scipy_runner.get("scipy:least_squares:method=newton")
    m = scipy_runner.get("scipy:l-bfgs-b:maxcor=20")
    assert m.spec == "scipy:L-BFGS-B:maxcor=20" and m.params == {"maxcor": 20}


def test_cli_scipy_errors(tmp_path, capsys):
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "scipy:bfsg", "--out", out]) == 2
    assert "unknown scipy method" in capsys.readouterr().err
    # least_squares needs residuals: quadratic has none, so nothing fits
    assert main(["run", "--problems", "quadratic", "--optimizers", "scipy:least_squares", "--out", out]) == 2
    assert "no problem × optimizer pair fits" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_without_scipy_the_name_gives_the_install_hint(monkeypatch, tmp_path, capsys):
    for mod in [m for m in list(sys.modules) if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "scipy", None)   # import scipy → ImportError
    with pytest.raises(OptbenchError) as ei:
        scipy_runner.get("scipy:BFGS")
    assert str(ei.value) == ("scipy:<method> needs scipy, which is not installed: pip install 'optbench[scipy]'")
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton,scipy:BFGS", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "pip install 'optbench[scipy]'" in err and err.count("\n") == 1 and not os.path.exists(out)


def test_progress_phases():
    seen = []
    p = problems.get("himmelblau")
    scipy_runner.solve(p, "scipy:Nelder-Mead", p.random_starts(2, 0), max_iter=20, progress=seen.append)
    assert seen == ["compile", "run 1/2", "run 2/2"]


def test_a_scipy_stop_at_the_known_minimum_is_a_success():
    """L-BFGS-B stops on its own f-tolerance on Brown's badly scaled function (f* = 0) with
    ‖∇f‖ = 4e-5 > gtol: status stalled, and at f* a success (the driver's rule, one function);
    with max_iter cutting it short first it is not."""
    p = problems.get("mgh:brown-badly-scaled")
    res = scipy_runner.solve(p, "scipy:L-BFGS-B", p.x0[None, :], max_iter=500, gtol=1e-8)
    assert res.status[0] == "stalled" and res.grad_norm[0] > 1e-8
    assert res.fun[0] <= 1e-6 and res.success[0]
    short = scipy_runner.solve(p, "scipy:L-BFGS-B", p.x0[None, :], max_iter=3, gtol=1e-8)
    assert short.status[0] == "max_iter" and not short.success[0]
