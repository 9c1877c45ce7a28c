"""The per-problem figures (convergence, trajectories, trust-region model) and the runtime ECDF
against numbers worked out by hand or in closed form, read off the Axes objects (matplotlib Agg),
never off pixels; and damaged trace files as one-line errors.

References are written out with plain loops and numpy on the stored arrays, never with
bench.metrics. Two small solves are shared by the whole module: ``tiny_run`` (conftest: himmelblau
× newton, four starts, through the command line) and a trust-region solve of 2-D Rosenbrock from
three starts (``bench.solve``).
"""
import os
import shutil

import numpy as np
import pytest

from bench import plots, store
from bench.cli import main
from optbench_core import OptbenchError
from conftest import dir_snapshot

INF, NAN = np.inf, np.nan


def _cell(f, nfev, nit, *, f_star=0.0, x=None, success=None, grad=None):
    """A hand-made cell: trace_f (B, T), cumulative nfev (B, T), nit (B,)."""
    f = np.asarray(f, float)
    b, t = f.shape
    z = np.zeros((b, t), int)
    cell = {"trace_f": f, "trace_grad_norm": f if grad is None else np.asarray(grad, float),
            "trace_nfev": np.asarray(nfev), "trace_njev": z, "trace_nhev": z, "trace_nhvp": z,
            "nit": np.asarray(nit), "f_star": np.array(f_star), "run_s_all": np.array([1.0]),
            "success": np.zeros(b, bool) if success is None else np.asarray(success, bool)}
    if x is not None:
        cell["trace_x"] = np.asarray(x, float)
        cell["x0"] = cell["trace_x"][:, 0]
        cell["x"] = cell["trace_x"][np.arange(b), cell["nit"]]
    return cell


def _styles(series):
    return {s.key: plots.Style(str(s.key), f"C{i}") for i, s in enumerate(series)}


def _title_overflow(fig):
    """The titles, axis labels and panel texts that reach past the figure's edges (in pixels)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label] + list(ax.texts)
    out = []
    for t in texts:
        if t.get_visible() and t.get_text():
            bb = t.get_window_extent(r)
            if bb.x0 < -1 or bb.x1 > fig.bbox.width + 1 or bb.y0 < -1 or bb.y1 > fig.bbox.height + 1:
                out.append((t.get_text(), bb.x0, bb.x1, fig.bbox.width))
    return out


# -- convergence: the numbers on the axes ---------------------------------------------------------------

def test_finished_starts_are_held_and_medians_are_over_every_start():
    """Start A stops at iteration 1 (its trace repeats f there, as the driver writes it), B runs
    to 3. The median at k is over both starts, A at its held value, in the iteration panel and in
    the work panel (per-start step functions of their own work); time = k × run_s / 3."""
    f = np.array([[100.0, 1e-3, 1e-3, 1e-3],
                  [100.0, 10.0, 1.0, 1e-1]])
    nfev = np.array([[1, 3, 3, 3],      # A: 2 evaluations in its one step
                     [1, 2, 3, 4]])
    s = plots.Series("m", _cell(f + 2.0, nfev, [1, 3], f_star=2.0), 2, 0.6, 0.5)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    it, wk, tm = (ax.get_lines()[0] for ax in fig.axes[:3])
    np.testing.assert_array_equal(it.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(it.get_ydata(), [100.0, (1e-3 + 10.0) / 2, (1e-3 + 1.0) / 2, (1e-3 + 0.1) / 2],
                               rtol=1e-12)
    # work grid = every work value reached: 1, 2, 3, 4. At 2, A is still at its x0 value (work 1),
    # B has made one step; at 3 A has stepped (its final 1e-3) and B is at 1.0; at 4 A is held.
    np.testing.assert_array_equal(wk.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(wk.get_ydata(), [100.0, (100.0 + 10.0) / 2, (1e-3 + 1.0) / 2, (1e-3 + 0.1) / 2],
                               rtol=1e-12)
    np.testing.assert_allclose(tm.get_xdata(), np.arange(1, 4) * 0.6 / 3)
    np.testing.assert_allclose(tm.get_ydata(), it.get_ydata()[1:])
    plots.plt.close(fig)


def test_band_is_the_interquartile_range_over_all_starts():
    """Five starts of random decreasing values: the line is numpy's median and the shaded band
    runs from numpy's 25th to its 75th percentile (linear interpolation) at every iteration."""
    rng = np.random.default_rng(3)
    f = np.sort(rng.uniform(1e-3, 10.0, (5, 6)), axis=1)[:, ::-1]
    s = plots.Series("m", _cell(f, np.tile(np.arange(1, 7), (5, 1)), [5] * 5), 2, 1.0, 1.0)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    ax = fig.axes[0]
    q25, med, q75 = np.percentile(f, [25, 50, 75], axis=0)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), med, rtol=1e-12)
    verts = ax.collections[0].get_paths()[0].vertices
    for k in range(6):
        ys = verts[np.isclose(verts[:, 0], k), 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [q25[k], q75[k]], rtol=1e-12)
    plots.plt.close(fig)


def test_values_at_or_below_f_star_sit_on_the_floor():
    """f − f* of exactly 0 (or a rounding below f*) is drawn at LOG_FLOOR, not dropped."""
    f = np.array([[5.0, 3.0, 3.0 - 1e-15], [5.0, 3.0, 3.0]])
    s = plots.Series("m", _cell(f, np.tile([1, 2, 3], (2, 1)), [2, 2], f_star=3.0), 2, 1.0, 1.0)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [2.0, plots.LOG_FLOOR, plots.LOG_FLOOR])
    assert fig.axes[0].get_yscale() == "log"
    plots.plt.close(fig)


@pytest.mark.parametrize("bad", [NAN, -INF], ids=["nan", "-inf"])
def test_non_finite_ends_count_as_diverged_in_the_median(bad):
    """Three starts of four stop at a non-finite value (the driver's diverged: f = inf − inf is NaN,
    a NaN gradient's norm is NaN; three-hump-camel × gd:lr=0.01 ends a start at f = NaN). The
    median at iterations 1–2 is then a diverged value, drawn at the cap — it used to leave them out
    and draw the fourth start's 1e-6 as the median, a method that diverged drawn as converged."""
    f = np.array([[10.0, bad, bad]] * 3 + [[10.0, 1e-3, 1e-6]])
    s = plots.Series("m", _cell(f, np.tile([1, 2, 3], (4, 1)), [1, 1, 1, 2]), 2, 1.0, 0.25)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    cap = 10.0 ** (1 + plots.DIVERGED_DECADES)      # six decades above the worst start (10)
    med = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_array_equal(med, [10.0, cap, cap])
    assert any("diverging" in t.get_text() for t in fig.axes[0].texts)
    wk = fig.axes[1].get_lines()[0]
    assert wk.get_ydata()[-1] == cap
    plots.plt.close(fig)


def test_grad_norm_where_f_star_is_unknown():
    """f* unknown (stored as NaN): the figure shows ‖∇f‖ and says so on its axis."""
    f = np.array([[1.0, 0.5, 0.25]])
    g = np.array([[4.0, 2.0, 1e-9]])
    s = plots.Series("m", _cell(f, [[1, 2, 3]], [2], f_star=NAN, grad=g), 2, 1.0, 1.0)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), g[0])
    assert fig.axes[0].get_ylabel().startswith("‖∇f‖")
    plots.plt.close(fig)


def test_a_cell_that_stopped_at_x0_is_visible():
    """Every start converged at x0 (nit 0): one point per panel. A plain line of one point draws
    nothing, so the cell was in the legend and nowhere on the axes; it now has a marker."""
    s = plots.Series("m", _cell([[1e-12], [1e-12]], [[2], [2]], [0, 0]), 2, 1.0, 1.0)
    fig = plots.convergence_figure("p", [s], _styles([s]))
    for ax in fig.axes[:2]:
        line = ax.get_lines()[0]
        assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "None", "", " ")
    plots.plt.close(fig)


# -- trajectories --------------------------------------------------------------------------------------

def test_paths_run_from_x0_to_the_final_x(tiny_run):
    """Each drawn path is the start's trace x from column 0 (= x0) to column nit (= the final x),
    the ◆ at the final x; the box and the known minima are inside the axes."""
    import problems
    run = store.load_run(tiny_run)
    series = plots.run_series(run, "himmelblau")
    prob = problems.get("himmelblau")
    fig = plots.trajectory_figure("himmelblau", series, _styles(series), prob)
    ax = fig.axes[0]
    cell = series[0].cell
    lines = ax.get_lines()
    paths = [ln.get_xydata() for ln in lines if ln.get_marker() == "o" and ln.get_linestyle() == "-"]
    ends = [ln.get_xydata()[0] for ln in lines if ln.get_marker() == "D"]
    starts = [ln.get_xydata()[0] for ln in lines if ln.get_marker() == "s"]
    assert len(paths) == len(ends) == len(starts) == min(plots.TRAJECTORY_STARTS, len(cell["nit"]))
    for b, path in enumerate(paths):
        np.testing.assert_array_equal(path[0], cell["x0"][b])
        np.testing.assert_array_equal(path[-1], cell["x"][b])
        assert len(path) == cell["nit"][b] + 1
        np.testing.assert_array_equal(starts[b], cell["x0"][b])
        np.testing.assert_array_equal(ends[b], cell["x"][b])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lo, hi = prob.bounds
    assert (x0, y0) == tuple(lo) and (x1, y1) == tuple(hi)
    for m in prob.known_minimisers():
        assert x0 <= m[0] <= x1 and y0 <= m[1] <= y1
    plots.plt.close(fig)


def test_rosenbrock_contour_levels_cover_its_range():
    """Rosenbrock on [−2, 2]² spans f − f* from 0 to 3609 (at (−2, −2)): the levels are
    log-spaced, reach above the largest grid value, and the grid point at the minimum (1, 1),
    where f − f* = 0, lies in the darkest band."""
    import problems
    prob = problems.get("rosenbrock")
    lo, hi = prob.bounds
    grid = plots.contour_grid(prob, lo, hi, n=81)     # 81 points: (1, 1) is a grid point
    X, Y, Z = grid
    a, b = X, Y
    np.testing.assert_allclose(Z, 100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, rtol=1e-12, atol=1e-12)
    D, levels = plots._log_levels(Z, prob.f_star)
    assert levels[-1] >= Z.max() - prob.f_star == pytest.approx(3609.0)
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0])               # log-spaced
    assert levels[0] > 0 and levels[-1] / levels[0] <= 1.0001e8  # at most eight decades
    i, j = np.argwhere((X == 1.0) & (Y == 1.0))[0]
    assert Z[i, j] == 0.0 and D[i, j] <= levels[1]


def _far_series():
    """Three 2-D paths: two end near their starts, one diverges to x = 1e143."""
    x = np.zeros((3, 3, 2))
    x[0] = [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]
    x[1] = [[1.0, 0.0], [1.5, 0.2], [2.0, 0.0]]
    x[2] = [[0.0, 1.0], [-3.0, 5.0], [-1e143, 4e142]]
    cell = _cell(np.ones((3, 3)), np.tile([1, 2, 3], (3, 1)), [2, 2, 2], x=x)
    return [plots.Series("gd", cell, 2, 1.0, 0.0)]


def test_unregistered_problem_is_framed_by_its_starts_not_a_diverging_end():
    """No problem to take the box from (a plug-in's problem redrawn by ``optbench plot``): the
    frame used to include every end, so one start at 1e143 made the axes 1e143 wide and every
    path a dot. The frame now holds the starts and the ends near them; the far end is counted."""
    series = _far_series()
    fig = plots.trajectory_figure("mine", series, _styles(series), None)
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert -1.0 <= x0 < 0.0 and 2.0 < x1 <= 3.0 and -1.0 <= y0 < 0.0 and 1.0 < y1 <= 2.0
    assert [t.get_text() for t in ax.texts] == ["1 of 3 ends (◆) off the frame"]
    assert "problem not registered" in fig._suptitle.get_text()
    plots.plt.close(fig)


def test_ends_off_the_problem_box_are_counted():
    """A registered problem's panel is its box; an end outside it (beale × newton ends a start
    at x = −1786) cannot be seen, and the panel says how many."""
    import problems
    series = _far_series()
    fig = plots.trajectory_figure("rosenbrock", series, _styles(series), problems.get("rosenbrock"))
    ax = fig.axes[0]
    assert ax.get_xlim() == (-2.0, 2.0)
    assert [t.get_text() for t in ax.texts] == ["1 of 3 ends (◆) off the frame"]
    assert ax.collections   # the contour
    plots.plt.close(fig)
    # every end inside: no note
    series[0].cell["trace_x"][2, 2] = [0.5, -0.5]
    fig = plots.trajectory_figure("rosenbrock", series, _styles(series), problems.get("rosenbrock"))
    assert not fig.axes[0].texts
    plots.plt.close(fig)


def test_one_dimensional_and_three_dimensional_problems_get_no_trajectory_figure(tmp_path):
    """Paths are recorded for n ≤ 3 but drawn only for n = 2: other sizes write no file."""
    for n in (1, 3):
        x = np.zeros((2, 2, n))
        s = plots.Series("m", _cell(np.ones((2, 2)), np.ones((2, 2), int), [1, 1], x=x), n, 1.0, 1.0)
        assert plots.plot_trajectories(f"p{n}", [s], _styles([s]), str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


def test_titles_stay_inside_the_figure():
    """A one-panel trajectory figure is 5.4 in wide: its title (spec, legend of the markers and the
    no-contour note) ran off both edges; the trust-region panel's title ran off the left edge."""
    series = _far_series()
    spec = "mgh:powell-badly-scaled:some=parameter"
    with plots.plt.rc_context(plots._RC):
        fig = plots.trajectory_figure(spec, series, _styles(series), None)
        assert _title_overflow(fig) == []
        plots.plt.close(fig)
        cell = series[0].cell
        cell["trace_rho"] = np.array([[NAN, 0.5, 1.0]] * 3)
        cell["trace_step"] = np.ones((3, 3))
        fig = plots.taylor_figure(spec, series, _styles(series))
        assert _title_overflow(fig) == []
        plots.plt.close(fig)


# -- the trust-region (Taylor-model) figure --------------------------------------------------------------

def _rosen(x):
    a, b = x
    f = 100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2
    g = np.array([-400.0 * a * (b - a * a) - 2.0 * (1.0 - a), 200.0 * (b - a * a)])
    h = np.array([[1200.0 * a * a - 400.0 * b + 2.0, -400.0 * a], [-400.0 * a, 200.0]])
    return f, g, h


@pytest.fixture(scope="module")
def tr_cell():
    """trust-region on 2-D Rosenbrock from three starts, as a cell's arrays."""
    import bench
    import problems
    p = problems.get("rosenbrock")
    r = bench.solve(p, "trust-region", p.random_starts(3, seed=0), max_iter=100)
    cell = {f"trace_{k}": v for k, v in r.trace.arrays().items()}
    cell.update(x=r.x, x0=r.x0, nit=r.nit, success=r.success, f_star=np.array(p.f_star),
                run_s_all=np.asarray(r.run_s_all))
    return cell


def test_rho_is_the_second_order_taylor_model_ratio(tr_cell):
    """At every step k of every start: the trial p = x_k − x_{k−1} of an accepted step satisfies
    ‖p‖ ≤ Δ_{k−1} (the radius logged at k−1), and the logged ρ_k equals
    (f(x) − f(x + p)) / (m(0) − m(p)) with m(p) = f + gᵀp + ½pᵀHp from Rosenbrock's closed-form
    gradient and Hessian at x = x_{k−1} — not the first-order model f + gᵀp; a step is taken
    exactly when ρ > η = 0.15."""
    tx, rho, rad, nit = tr_cell["trace_x"], tr_cell["trace_rho"], tr_cell["trace_step"], tr_cell["nit"]
    accepted = rejected = 0
    for b in range(len(nit)):
        assert np.isnan(rho[b, 0]) and rad[b, 0] == 1.0
        for k in range(1, nit[b] + 1):
            x, y = tx[b, k - 1], tx[b, k]
            moved = not np.array_equal(x, y)
            assert moved == (rho[b, k] > 0.15), (b, k, rho[b, k])
            if not moved:
                rejected += 1
                continue
            accepted += 1
            f, g, h = _rosen(x)
            p = y - x
            actual = f - _rosen(y)[0]
            second = -(g @ p + 0.5 * p @ h @ p)
            first = -(g @ p)
            assert np.linalg.norm(p) <= rad[b, k - 1] * (1 + 1e-12)
            assert rho[b, k] == pytest.approx(actual / second, rel=1e-9, abs=1e-12)
            if abs(first - second) > 1e-6 * abs(second):
                assert rho[b, k] != pytest.approx(actual / first, rel=1e-3)
            assert tr_cell["trace_f"][b, k] == pytest.approx(_rosen(y)[0], rel=1e-9, abs=1e-15)
    assert accepted > 20 and rejected >= 1


def test_taylor_panels_show_the_logged_rho_and_radius(tr_cell):
    """Dots: every (iteration, ρ) a start logged while it ran, clipped to [−1, 2]; median line over
    the starts still running at k; radius panel: the median Δ over those starts."""
    s = plots.Series("trust-region", tr_cell, 2, 1.0, 1.0)
    fig = plots.taylor_figure("rosenbrock", [s], _styles([s]))
    dots, med = fig.axes[0].get_lines()[:2]
    nit, rho, rad = tr_cell["nit"], tr_cell["trace_rho"], tr_cell["trace_step"]
    want = sorted((k, min(max(rho[b, k], -1.0), 2.0)) for b in range(len(nit)) for k in range(1, nit[b] + 1))
    got = sorted(map(tuple, dots.get_xydata()))
    np.testing.assert_allclose(np.array(got, float), np.array(want, float), rtol=1e-12)
    last = int(nit.max())
    for k in range(last + 1):
        running = [b for b in range(len(nit)) if k <= nit[b]]
        r = [rho[b, k] for b in running if np.isfinite(rho[b, k])]
        if r:
            assert med.get_ydata()[k] == pytest.approx(min(max(np.median(r), -1.0), 2.0))
        assert fig.axes[1].get_lines()[0].get_ydata()[k] == pytest.approx(np.median([rad[b, k] for b in running]))
    plots.plt.close(fig)


def test_a_logged_zero_step_is_not_drawn_as_a_radius():
    """levenberg-marquardt:damping=nielsen logs the scaled step length ‖Dp‖, 0 before its first
    step. That 0 was floored to 10⁻²⁰ on the radius panel's log axis: a Δ of 10⁻²⁰ at iteration 0
    and twenty decades of axis squashing every curve. It is now left out."""
    rho = np.array([[NAN, -0.3, 0.9, 1.0]] * 2)
    step = np.array([[0.0, 33.4, 21.9, 7.7], [0.0, 28.5, 20.2, 8.6]])
    cell = _cell(np.ones((2, 4)), np.tile([1, 2, 3, 4], (2, 1)), [3, 3])
    cell.update(trace_rho=rho, trace_step=step)
    s = plots.Series("levenberg-marquardt:damping=nielsen", cell, 2, 1.0, 1.0)
    fig = plots.taylor_figure("rosenbrock", [s], _styles([s]))
    ax = fig.axes[1]
    y = ax.get_lines()[0].get_ydata()
    assert np.isnan(y[0])
    np.testing.assert_allclose(y[1:], np.median(step[:, 1:], axis=0))
    fig.canvas.draw()
    assert ax.get_ylim()[0] > 1.0
    assert "‖Dp‖" in ax.get_title() and "damping, as" not in ax.get_title()
    plots.plt.close(fig)


# -- runtime ECDF --------------------------------------------------------------------------------------

def test_ecdf_against_a_hand_count():
    """Two optimizers on one 1-D problem, two starts, targets 1e-1 … 1e-8 on f − f*. Runtime of a
    (start, target) pair = work / n at the first iteration whose f − f* ≤ target; the curve at
    budget β is the fraction of the 2 × 8 pairs with runtime ≤ β. Optimizer b is absent on a
    second problem, whose pairs it never reaches."""
    fa = np.array([[1.0, 1e-2, 1e-5, 1e-9], [1.0, 0.5, 0.05, 0.05]])
    na = np.array([[1, 3, 5, 7], [1, 2, 3, 3]])
    fb = np.array([[1.0, 1e-3, 1e-3, 1e-3], [1.0, 1e-9, 1e-9, 1e-9]])
    nb = np.array([[2, 4, 4, 4], [2, 10, 10, 10]])
    a = plots.Series("a", _cell(fa, na, [3, 2]), 1, 1.0, 0.5)
    b = plots.Series("b", _cell(fb, nb, [1, 1]), 1, 1.0, 0.5)
    pd = plots.ProfileData(["a", "b"])
    pd.add_problem([a, b])
    pd.add_problem([plots.Series("a", _cell(fa, na, [3, 2]), 1, 1.0, 0.5)])
    targets = [10.0 ** -k for k in range(1, 9)]

    def runtimes(f, n, nit):
        out = []
        for row, cnt, last in zip(f, n, nit):
            for t in targets:
                hit = [k for k in range(last + 1) if row[k] <= t]
                out.append(cnt[hit[0]] if hit else INF)
        return out

    rt = {"a": runtimes(fa, na, [3, 2]) * 2, "b": runtimes(fb, nb, [1, 1]) + [INF] * 16}
    fig = plots.ecdf_figure(pd, _styles([a, b]))
    lines = fig.axes[0].get_lines()
    curves = [ln for ln in lines if ln.get_drawstyle() == "steps-post"]
    assert len(curves) == 2
    for key, line in zip("ab", curves):
        for beta, y in zip(line.get_xdata(), line.get_ydata()):
            assert y == pytest.approx(np.mean(np.asarray(rt[key]) <= beta)), (key, beta)
        assert line.get_ydata()[-1] == pytest.approx(np.mean(np.isfinite(rt[key])))
    # × at the largest work / n any start spent: a 7, b 10
    marks = {tuple(ln.get_xdata()) for ln in lines if ln.get_marker() == "x"}
    assert marks == {(7.0,), (10.0,)}
    plots.plt.close(fig)


# -- damaged trace files: one line, exit 2, nothing lost ----------------------------------------------

def _edit(key, fn):
    def edit(cell):
        if fn is None:
            cell.pop(key)
        else:
            cell[key] = fn(cell[key])
    return edit


@pytest.mark.parametrize("edit,needle", [
    (_edit("trace_f", None), "lacks the array 'trace_f'"),
    (_edit("nit", None), "lacks the array 'nit'"),
    (_edit("trace_nfev", None), "lacks the array 'trace_nfev'"),
    (_edit("success", None), "lacks the array 'success'"),
    (_edit("nit", lambda a: a + 10_000), "nit must be"),
    (_edit("nit", lambda a: a * 0 - 5), "nit must be"),
    (_edit("trace_f", lambda a: a[:, :3]), "trace_f"),
    (_edit("trace_f", lambda a: a[:, 0]), "trace_f must be numbers"),
    (_edit("trace_x", lambda a: a[:, :, 0]), "trace_x must be numbers"),
    (_edit("f_star", lambda a: np.array("zz")), "f_star must be one number"),
], ids=["no-f", "no-nit", "no-nfev", "no-success", "nit-past-end", "nit-negative", "f-cut", "f-1d", "x-2d",
        "f-star-text"])
def test_damaged_trace_file_is_one_line_naming_it(tiny_run, tmp_path, capsys, edit, needle):
    """A trace file with an array missing, cut short or out of range was an 'internal error:
    KeyError/IndexError' (exit 1) or, for nit < 0, figures drawn from the wrong columns; now
    plot and report stop with one line naming the file (exit 2), the run and its figures kept."""
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    run = store.load_run(copy)
    path = os.path.join(copy, run.summary[0]["trace_file"])
    cell = store.load_npz(path)
    edit(cell)
    np.savez_compressed(path, **cell)
    before = dir_snapshot(copy)
    capsys.readouterr()
    for argv in (["plot", copy, "--formats", "png"], ["report", copy, "--out", str(tmp_path / "r.html")]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith("optbench: error: ") and err.count("\n") == 1, err
        assert "internal error" not in err and "Traceback" not in err
        assert path in err and needle in err, err
    assert dir_snapshot(copy) == before
    assert not os.path.exists(tmp_path / "r.html")
    with pytest.raises(OptbenchError):
        plots.run_series(store.load_run(copy), "himmelblau")


def test_undamaged_cells_pass_the_check(tiny_run, tr_cell):
    """What the driver writes passes: the CLI's cell, the trust-region cell, and one without f*."""
    run = store.load_run(tiny_run)
    for row in run.summary:
        plots.check_cell(run.cell(row["problem"], row["optimizer"]), "x.npz")
    plots.check_cell(tr_cell, "x.npz")
    plots.check_cell(dict(tr_cell, f_star=np.array(NAN)), "x.npz")
    with pytest.raises(OptbenchError, match="trace_grad_norm"):
        plots.check_cell({k: v for k, v in tr_cell.items() if k != "trace_grad_norm"} | {"f_star": np.array(NAN)},
                         "x.npz")


def test_a_run_with_no_finished_cell_is_one_line(tiny_run, tmp_path, capsys):
    """A run interrupted before its first cell: nothing to plot, said in one line, exit 2."""
    import json
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    meta_path = os.path.join(copy, "meta.json")
    meta = json.load(open(meta_path, encoding="utf-8"))
    meta["cells_done"], meta["complete"] = [], False
    with open(meta_path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    capsys.readouterr()
    assert main(["plot", copy]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished cells" in err
    run = store.load_run(copy)
    idx = plots.plot_run_index(run, formats=("png",), out_dir=plots.FigureMemory())
    assert idx.all() == [] and not idx.memory


def test_plot_writes_the_documented_files(tiny_run, tmp_path, capsys):
    """``optbench plot`` writes convergence_, trajectories_ (2-D), the profiles and the ECDF, one
    file per format, and nothing else; the count it prints is the number written."""
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    shutil.rmtree(os.path.join(copy, "plots"))
    capsys.readouterr()
    assert main(["plot", copy, "--formats", "svg,png"]) == 0
    stems = ["convergence_himmelblau", "trajectories_himmelblau", "profile_performance", "profile_data", "ecdf"]
    names = sorted(os.listdir(os.path.join(copy, "plots")))
    assert names == sorted(f"{s}.{e}" for s in stems for e in ("png", "svg"))
    assert f"{len(names)} figures written" in capsys.readouterr().out
