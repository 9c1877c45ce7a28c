"""Profiles and summary measures against their textbook definitions, on hand-made traces.

Dolan & Moré (2002): ρ_s(τ) = |{p : t_ps ≤ τ·min_s t_ps}| / P, failures never counted.
Moré & Wild (2009): solved when f(x0) − f(x) ≥ (1 − τ)(f(x0) − f_L), f_L the least f of any solver
on the instance; d_s(κ) = |{p : t_ps ≤ κ(n_p + 1)}| / P. The references below are written out
with exact rational arithmetic (fractions.Fraction) or plain loops, never with bench.metrics.
"""
from fractions import Fraction

import numpy as np
import pytest

from bench import metrics, plots
from bench.metrics import WorkWeights
from optbench_core import OptbenchError

INF = np.inf


def _cell(f, nfev, nit, success=None, run_s_all=(1.0,), f_star=0.0):
    f = np.asarray(f, float)
    b, t = f.shape
    z = np.zeros((b, t), int)
    return {"trace_f": f, "trace_grad_norm": f, "trace_nfev": np.asarray(nfev), "trace_njev": z,
            "trace_nhev": z, "trace_nhvp": z, "nit": np.asarray(nit), "f_star": np.array(f_star),
            "success": np.ones(b, bool) if success is None else np.asarray(success, bool),
            "run_s_all": np.asarray(run_s_all, float)}


def _step_value(line, x):
    """The value a steps-post line shows at x (right-continuous: the last vertex with X ≤ x)."""
    xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    i = np.searchsorted(xs, x, side="right") - 1
    return ys[i]


# -- data profiles: the κ axis -------------------------------------------------------------------

def test_data_profile_counts_each_instance_at_its_own_kappa():
    """t = 61 evaluations with n = 6 is solved at κ = 61/7; in floating point (61/7)·7 < 61, and the
    profile evaluated at the instance's own κ used to leave it out."""
    d = metrics.data_profile(np.array([[61.0]]), np.array([6]), [61 / 7])
    assert d[0, 0] == 1.0
    rng = np.random.default_rng(7)
    costs = rng.integers(1, 300, size=(40, 2)).astype(float)
    costs[rng.random(costs.shape) < 0.15] = INF
    dims = rng.integers(1, 30, size=40)
    kap = [Fraction(int(c), int(n) + 1) for c, n in zip(costs[np.isfinite(costs)], np.repeat(dims, 2)[np.isfinite(
        costs).ravel()])]
    grid = sorted(set(kap))
    got = metrics.data_profile(costs, dims, [float(k) for k in grid])
    for i, k in enumerate(grid):
        for s in range(2):
            want = sum(1 for p in range(40) if np.isfinite(costs[p, s])
                       and Fraction(int(costs[p, s]), int(dims[p]) + 1) <= k) / 40
            assert got[i, s] == want, (k, s)


def test_data_figure_steps_at_the_instances_kappa():
    """The drawn data profile equals d_s(κ) at every κ where an instance is solved."""
    # n = 6, f(x0) = 1, f_L = 0: solved (τ = 1e-3) when f = 0, after 61 evaluations
    pd = plots.ProfileData(["a"], taus=(1e-3,))
    pd.add_problem([plots.Series("a", _cell([[1.0, 0.5, 0.0]], [[1, 30, 61]], [2]), 6, None, 1.0)])
    fig = plots.data_figure(pd, {"a": plots.Style("a", "C0")})
    line = fig.axes[0].get_lines()[0]
    assert _step_value(line, 61 / 7) == 1.0
    assert _step_value(line, np.nextafter(61 / 7, 0)) == 0.0
    plots.plt.close(fig)


# -- data profiles: the test and f_L, against a loop over the definition -----------------------------

def _more_wild_reference(cells, dims, tau, kappas):
    """d_s(κ) over instances (problem, start), written out from Moré & Wild (2009)."""
    rows = []
    for problem_cells, n in zip(cells, dims):
        starts = max(c["trace_f"].shape[0] for c in problem_cells.values() if c is not None)
        for b in range(starts):
            f_low = min(float(v) for c in problem_cells.values() if c is not None and b < c["trace_f"].shape[0]
                        for v in c["trace_f"][b, : int(c["nit"][b]) + 1] if np.isfinite(v))
            row = []
            for c in problem_cells.values():
                t = INF
                if c is not None and b < c["trace_f"].shape[0]:
                    f = c["trace_f"][b]
                    for k in range(int(c["nit"][b]) + 1):
                        if np.isfinite(f[k]) and f[0] - f[k] >= (1 - tau) * (f[0] - f_low):
                            t = float(c["trace_nfev"][b, k])
                            break
                row.append((t, n))
            rows.append(row)
    return np.array([[sum(1 for r in rows if r[s][0] <= k * (r[s][1] + 1)) / len(rows) for s in range(len(rows[0]))]
                     for k in kappas])


def test_data_profile_f_low_is_per_instance_over_all_solvers():
    # problem 1 (n = 2), two starts; solver b has a NaN and stops early; problem 2 (n = 1): b has no cell
    a1 = _cell([[9.0, 5.0, 1.0, 0.0], [4.0, 4.0, 4.0, 4.0]], [[1, 3, 6, 9], [1, 2, 3, 4]], [3, 3])
    b1 = _cell([[9.0, np.nan, 0.5, -7.0], [4.0, 1.0, 1.0, 1.0]], [[1, 2, 4, 5], [1, 5, 6, 7]], [2, 1])
    a2 = _cell([[2.0, 1.0, 1.0]], [[1, 2, 3]], [1])
    kappas = [0.5, 1.0, 2.0, 3.0, 5.0]
    # by hand: start 1 f_L = 0 (a's; b's −7 comes after it stopped), start 2 f_L = 1 (b's),
    # problem 2 f_L = 1. τ = 0.5 needs f ≤ 4.5, 2.5, 1.5; τ = 1e-3 needs f ≤ 0.009, 1.003, 1.001
    by_hand = {0.5: [[6, 4], [INF, 5], [2, INF]], 1e-3: [[9, INF], [INF, 5], [2, INF]]}
    for tau in (0.5, 1e-3):
        pd = plots.ProfileData(["a", "b"], WorkWeights(g=0), taus=(tau,))
        pd.add_problem([plots.Series("a", a1, 2, 1.0, 1.0), plots.Series("b", b1, 2, 1.0, 1.0)])
        pd.add_problem([plots.Series("a", a2, 1, 1.0, 1.0)])
        np.testing.assert_array_equal(pd.data_costs(tau), by_hand[tau])
        got = metrics.data_profile(pd.data_costs(tau), pd.all_dims(), kappas)
        want = _more_wild_reference([{"a": a1, "b": b1}, {"a": a2, "b": None}], [2, 1], tau, kappas)
        np.testing.assert_array_equal(got, want)


# -- performance profiles against a loop over the definition ------------------------------------------

def test_performance_profile_ties_all_fail_and_floor():
    # instances: a tie; one where every solver fails; one solved at x0 by a (cost 0, floored to 1)
    costs = np.array([[3.0, 3.0, 6.0], [INF, INF, INF], [1.0, 2.0, INF]])
    taus, rho = metrics.performance_profile(costs)
    np.testing.assert_array_equal(taus, [1.0, 2.0])
    np.testing.assert_allclose(rho, [[2 / 3, 1 / 3, 0], [2 / 3, 2 / 3, 1 / 3]])
    # single solver: ρ(τ) = its success fraction at every τ
    _, rho = metrics.performance_profile(np.array([[4.0], [INF], [7.0], [np.nan]]), [1.0, 1e9])
    np.testing.assert_array_equal(rho, [[0.5], [0.5]])
    # through ProfileData: iterations floored at one unit (solved at x0, nit = 0)
    a = _cell([[0.0, 0.0], [5.0, 0.0]], [[1, 1], [1, 2]], [0, 1])
    b = _cell([[0.0, 0.0], [5.0, 5.0]], [[1, 1], [1, 2]], [1, 1], success=[True, False])
    pd = plots.ProfileData(["a", "b"])
    pd.add_problem([plots.Series("a", a, 1, 1.0, 1.0), plots.Series("b", b, 1, 1.0, 0.5)])
    np.testing.assert_array_equal(pd.perf_costs("iterations"), [[1, 1], [1, INF]])


def test_zero_run_time_does_not_abort_the_profiles():
    """A cell whose recorded run time is 0 (a legal value: baselines accept run_s >= 0) used to make
    every time cost 0 and the performance figure — so every run-wide figure — fail."""
    a = _cell([[1.0, 0.0], [1.0, 0.0]], [[1, 2], [1, 2]], [1, 1], run_s_all=(0.0,))
    b = _cell([[1.0, 0.0], [1.0, 0.0]], [[1, 2], [1, 2]], [1, 1], run_s_all=(2.0,))
    pd = plots.ProfileData(["a", "b"])
    pd.add_problem([plots.Series("a", a, 1, 0.0, 1.0), plots.Series("b", b, 1, 2.0, 1.0)])
    fig = plots.performance_figure(pd, {"a": plots.Style("a", "C0"), "b": plots.Style("b", "C1")})
    time_ax = fig.axes[2]
    la, lb = time_ax.get_lines()[:2]
    # a took no measurable time and b 2 s per iteration: a is best everywhere, b within no finite τ shown
    assert _step_value(la, 1.0) == 1.0 and _step_value(lb, 1.0) == 0.0
    plots.plt.close(fig)


# -- convergence figure: starts that diverged to +inf --------------------------------------------------

def test_convergence_median_counts_starts_at_plus_inf():
    """Three of four starts diverge to f = +inf (the driver stops them there); the median of f − f*
    is then +inf, drawn at the cap — it used to drop them and draw the fourth start's 1e-3."""
    f = np.array([[10.0, 100.0, INF, INF]] * 3 + [[10.0, 1.0, 1e-3, 1e-6]])
    nfev = np.tile([1, 2, 3, 4], (4, 1))
    s = plots.Series("a", _cell(f, nfev, [2, 2, 2, 3]), 2, 1.0, 0.25)
    fig = plots.convergence_figure("p", [s], {"a": plots.Style("a", "C0")})
    cap = 10.0 ** (1 + plots.DIVERGED_DECADES)       # worst start f − f* = 10
    med = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(med, np.minimum(np.median(f, axis=0), cap))
    assert med[2] == cap and any("diverging" in t.get_text() for t in fig.axes[0].texts)
    plots.plt.close(fig)
    # one start of four at +inf: the median is the mean of the two middle finite values
    f2 = np.array([[10.0, INF], [10.0, 1.0], [10.0, 2.0], [10.0, 4.0]])
    s = plots.Series("a", _cell(f2, np.tile([1, 2], (4, 1)), [1, 1, 1, 1]), 2, 1.0, 0.75)
    fig = plots.convergence_figure("p", [s], {"a": plots.Style("a", "C0")})
    assert fig.axes[0].get_lines()[0].get_ydata()[1] == pytest.approx(3.0)
    plots.plt.close(fig)


# -- work weights --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["h=", "g=", "hvp=", "g=2, h="])
def test_empty_work_weight_is_an_error(text):
    """``h=`` used to become a fixed weight 1 (not the default 2n), silently changing every work axis."""
    with pytest.raises(OptbenchError, match="needs a number"):
        WorkWeights.parse(text)
    assert WorkWeights.parse("h=n").hessian_weight(5) == 5   # "n" alone still means 1·n
