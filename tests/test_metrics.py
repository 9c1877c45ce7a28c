"""bench.metrics on hand-made traces whose answers are known by hand."""
import warnings

import numpy as np
import pytest

from bench import metrics
from bench.metrics import WorkWeights
from optbench_core import OptbenchError

INF = np.inf


def _cell(f, nit, f_star=0.0, nfev=None, njev=None, nhev=None, nhvp=None, success=None, run_s_all=(1.0,),
          grad_norm=None):
    f = np.asarray(f, float)
    b, t = f.shape
    count = lambda a: np.zeros((b, t), int) if a is None else np.asarray(a)  # noqa: E731
    return {"trace_f": f, "trace_grad_norm": f if grad_norm is None else np.asarray(grad_norm, float),
            "trace_nfev": count(nfev), "trace_njev": count(njev), "trace_nhev": count(nhev),
            "trace_nhvp": count(nhvp), "nit": np.asarray(nit), "f_star": np.array(f_star),
            "success": np.ones(b, bool) if success is None else np.asarray(success),
            "run_s_all": np.asarray(run_s_all, float)}


def test_work_weights_parse_and_label():
    w = WorkWeights()
    assert w.label() == "nfev + 1·njev + 2n·nhev + 2·nhvp"
    assert w.hessian_weight(5) == 10
    w = WorkWeights.parse("g=3, h=7, hvp=0.5")
    assert (w.g, w.h, w.h_per_dim, w.hvp) == (3, 7, False, 0.5) and w.hessian_weight(100) == 7
    assert WorkWeights.parse("h=1n").hessian_weight(4) == 4
    assert WorkWeights.parse(None) == WorkWeights()
    for bad in ("q=1", "g", "g=abc", "h=-1", "hvp=nan"):
        with pytest.raises(OptbenchError):
            WorkWeights.parse(bad)


def test_work_is_the_weighted_count():
    c = _cell([[5, 4, 3]], [2], nfev=[[1, 2, 4]], njev=[[1, 2, 3]], nhev=[[0, 1, 2]], nhvp=[[0, 0, 5]])
    np.testing.assert_array_equal(metrics.work(c, 3, WorkWeights()), [[2, 10, 29]])  # 4 + 3 + 6·2 + 2·5
    np.testing.assert_array_equal(metrics.work(c, 3, WorkWeights(g=0, h=1, h_per_dim=False, hvp=0)), [[1, 3, 6]])


def test_convergence_values_falls_back_to_gradient_norm():
    c = _cell([[3.0, 2.0]], [1], f_star=1.5, grad_norm=[[7.0, 6.0]])
    v, label = metrics.convergence_values(c)
    np.testing.assert_array_equal(v, [[1.5, 0.5]])
    assert label == "f − f*"
    c["f_star"] = np.array(np.nan)
    v, label = metrics.convergence_values(c)
    np.testing.assert_array_equal(v, [[7.0, 6.0]])
    assert label == "‖∇f‖"


def test_first_hit_respects_nit_and_cost_at():
    v = np.array([[1.0, 0.5, 0.1, 0.01],
                  [1.0, 1.0, 1.0, 0.0],     # reaches the target only after it stopped (nit = 2)
                  [np.nan, 0.05, 0.0, 0.0]])
    idx = metrics.first_hit(v, 0.1, nit=np.array([3, 2, 3]))
    np.testing.assert_array_equal(idx, [2, -1, 1])
    costs = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(metrics.cost_at(costs, idx), [2.0, INF, 9.0])


def test_time_per_iteration_and_time_to_target():
    # the batch ran 4 iterations (slowest start) in 2 s: 0.5 s per iteration for every start
    c = _cell([[1, 1e-3, 1e-3, 1e-3, 1e-3], [1, 1, 1, 1e-4, 1e-5]], [1, 4], run_s_all=[3.0, 2.0, 1.0])
    assert metrics.iterations_run(c) == 4
    assert metrics.time_per_iteration(c) == pytest.approx(0.5)
    assert metrics.time_per_iteration(c, summary_run_s=4.0) == pytest.approx(1.0)
    np.testing.assert_allclose(metrics.target_costs(c, 1e-2, "time", dim=1), [0.5, 1.5])
    np.testing.assert_allclose(metrics.target_costs(c, 1e-2, "iterations", dim=1), [1, 3])
    np.testing.assert_allclose(metrics.target_costs(c, 1e-6, "iterations", dim=1), [INF, INF])
    with pytest.raises(OptbenchError):
        metrics.measure_costs(c, "flops", 1)


def test_success_costs_are_inf_on_failure():
    c = _cell([[1, 0, 0], [1, 1, 1]], [1, 2], nfev=[[1, 2, 2], [1, 2, 3]], success=[True, False])
    np.testing.assert_array_equal(metrics.success_costs(c, "iterations", 2), [1, INF])
    np.testing.assert_array_equal(metrics.success_costs(c, "work", 2, WorkWeights(g=0)), [2, INF])


def test_performance_profile_known_answer():
    # 4 instances × 2 solvers; ratios: [1, 2], [2, 1], [inf, 1], [inf, inf]
    costs = np.array([[1.0, 2.0], [4.0, 2.0], [INF, 3.0], [INF, INF]])
    r = metrics.performance_ratios(costs)
    np.testing.assert_array_equal(r, [[1, 2], [2, 1], [INF, 1], [INF, INF]])
    taus, rho = metrics.performance_profile(costs, [1.0, 1.5, 2.0, 100.0])
    np.testing.assert_allclose(rho, [[0.25, 0.5], [0.25, 0.5], [0.5, 0.75], [0.5, 0.75]])
    taus, rho = metrics.performance_profile(costs)  # exact grid: the distinct finite ratios
    np.testing.assert_array_equal(taus, [1.0, 2.0])
    with pytest.raises(OptbenchError):
        metrics.performance_ratios(np.array([[0.0, 1.0]]))


def test_performance_profile_matches_brute_force():
    rng = np.random.default_rng(3)
    costs = rng.integers(1, 20, size=(30, 4)).astype(float)
    costs[rng.random(costs.shape) < 0.2] = INF
    taus = [1.0, 1.3, 2.0, 5.0]
    _, rho = metrics.performance_profile(costs, taus)
    for j in range(4):
        for i, tau in enumerate(taus):
            solved = 0
            for p in range(30):
                best = min(costs[p])
                solved += np.isfinite(costs[p, j]) and costs[p, j] <= tau * best
            assert rho[i, j] == pytest.approx(solved / 30)


def test_data_profile_test_and_profile_known_answer():
    # f(x0) = 10, f_L = 0: τ = 0.1 needs f ≤ 1, τ = 0.5 needs f ≤ 5
    f = np.array([[10.0, 6.0, 4.0, 0.5], [10.0, 9.0, 9.0, 0.0]])
    nit = np.array([3, 2])
    np.testing.assert_array_equal(metrics.data_profile_test(f, 0.0, 0.1, nit), [3, -1])
    np.testing.assert_array_equal(metrics.data_profile_test(f, 0.0, 0.5, nit), [2, -1])
    np.testing.assert_array_equal(metrics.data_profile_test(f, np.array([0.0, 9.0]), 0.5, nit), [2, 1])
    # f_L over two solvers, only up to each start's nit
    np.testing.assert_array_equal(metrics.best_values([f, f + 1], [nit, nit]), [0.5, 9.0])
    np.testing.assert_array_equal(metrics.best_values([f[:1], f], [nit[:1], nit]), [0.5, 9.0])
    # d_s(κ): instance dims 1 and 3 → budgets κ·2 and κ·4
    costs = np.array([[2.0, 5.0], [8.0, INF]])
    d = metrics.data_profile(costs, np.array([1, 3]), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(d, [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]])


def test_runtime_ecdf_known_answer():
    # f* = 0: f − f* = 1, 1e-2, 1e-5, 1e-9 after 1, 2, 3, 4 evaluations (n = 1, weights g = 0)
    c = _cell([[1.0, 1e-2, 1e-5, 1e-9]], [3], nfev=[[1, 2, 3, 4]])
    rt = metrics.ecdf_runtimes(c, 1, metrics.ECDF_TARGETS, WorkWeights(g=0))
    np.testing.assert_array_equal(rt, [[2, 2, 3, 3, 3, 4, 4, 4]])
    e = metrics.runtime_ecdf(rt, [1, 2, 3, 4, 100])
    np.testing.assert_allclose(e, [0, 2 / 8, 5 / 8, 1, 1])
    e = metrics.runtime_ecdf(np.array([1.0, INF, np.nan, 3.0]), [2.0, 10.0])
    np.testing.assert_allclose(e, [0.25, 0.5])
    # per dimension (COCO): n = 2 halves every runtime
    assert metrics.ecdf_runtimes(c, 2, (1e-1,), WorkWeights(g=0))[0, 0] == 1.0


def test_nan_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=(int(rng.integers(1, 9)), 7))
        v[rng.random(v.shape) < 0.3] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            ref = np.nanpercentile(v, [25, 50, 75], axis=0)
        got = np.array(metrics.nan_quantiles(v, (0.25, 0.5, 0.75)))
        np.testing.assert_allclose(got, ref, equal_nan=True)


def test_resample_steps_takes_last_point_at_or_before():
    x = np.array([[1.0, 3.0, 3.0, 6.0], [2.0, 2.0, 4.0, 9.0]])
    y = np.array([[10.0, 5.0, 4.0, 1.0], [8.0, 7.0, 3.0, 0.0]])
    got = metrics.resample_steps(x, y, np.array([0.5, 1.0, 3.0, 5.0, 7.0]), nit=np.array([3, 2]))
    np.testing.assert_array_equal(got, [[np.nan, 10, 4, 4, 1], [np.nan, np.nan, 7, 3, 3]])
