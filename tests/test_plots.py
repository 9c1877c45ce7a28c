"""Figures from a small stored run: every kind is drawn, is a sensible PNG (and a clean SVG), shows
the numbers of the traces, and redrawing a run directory reproduces it byte for byte."""
import os
import shutil
import struct
import warnings
import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import numpy as np
import pytest

from bench import metrics, plots, store
from bench.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_FIGURES = ["convergence_himmelblau", "convergence_rosenbrock", "trajectories_himmelblau",
               "trajectories_rosenbrock", "profile_performance", "profile_data", "ecdf"]


def _png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_every_figure_is_a_sensible_png_and_a_clean_svg(figure_run):
    d = os.path.join(figure_run, "plots")
    names = sorted(os.listdir(d))
    assert names == sorted(f"{s}.{e}" for s in RUN_FIGURES for e in ("png", "svg"))
    for stem in RUN_FIGURES:
        png = os.path.join(d, stem + ".png")
        w, h = _png_size(png)
        assert 500 <= w <= 2500 and 300 <= h <= 1600, (stem, w, h)
        assert 10_000 < os.path.getsize(png) < 2_000_000
        pixels = mpimg.imread(png)
        assert pixels.shape[:2] == (h, w) and pixels[..., :3].std() > 0.05  # not blank
        svg = open(os.path.join(d, stem + ".svg"), encoding="utf-8").read()
        assert ET.fromstring(svg).tag.endswith("svg")
        assert "<metadata>" not in svg and "DOCTYPE" not in svg
        # the only URLs left are the XML namespace names an SVG file must declare
        leftovers = svg.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
            'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
        assert "http://" not in leftovers and "https://" not in leftovers


def test_regenerating_plots_reproduces_the_run_figures(figure_run, tmp_path, capsys):
    copy = str(tmp_path / "run")
    shutil.copytree(figure_run, copy)
    plots_dir = os.path.join(copy, "plots")
    before = {n: open(os.path.join(plots_dir, n), "rb").read() for n in os.listdir(plots_dir) if n.endswith(".png")}
    shutil.rmtree(plots_dir)
    assert main(["plot", copy, "--formats", "png"]) == 0
    assert "7 figures" in capsys.readouterr().out
    after = {n: open(os.path.join(plots_dir, n), "rb").read() for n in os.listdir(plots_dir)}
    assert sorted(after) == sorted(before)
    for n in before:
        assert after[n] == before[n], n


def test_svg_rendering_is_deterministic(figure_run):
    """Same data, same SVG bytes (fixed ids, no date) — redrawing keeps the SVGs too."""
    run = store.load_run(figure_run)
    out = []
    for _ in range(2):
        pd = plots.ProfileData(run.optimizers())
        pd.add_problem(plots.run_series(run, "himmelblau"))
        styles = {o: plots.Style(o, f"C{i}") for i, o in enumerate(run.optimizers())}
        with plots.plt.rc_context(plots._RC):
            fig = plots.ecdf_figure(pd, styles)
            out.append(plots.figure_bytes(fig, "svg"))
        plots.plt.close(fig)
    assert out[0] == out[1] and b"<svg" in out[0]


def test_convergence_curves_are_the_trace_medians(figure_run):
    run = store.load_run(figure_run)
    series = plots.run_series(run, "himmelblau")
    styles = {s.key: plots.Style(s.key, "C0") for s in series}
    fig = plots.convergence_figure("himmelblau", series, styles)
    ax_it, ax_work, ax_time = fig.axes[:3]
    for s, line in zip(series, ax_it.get_lines()):
        vals = s.cell["trace_f"] - float(s.cell["f_star"])
        last = int(s.cell["nit"].max())
        np.testing.assert_allclose(line.get_ydata(), np.maximum(np.median(vals[:, : last + 1], axis=0), plots.LOG_FLOOR))
        np.testing.assert_array_equal(line.get_xdata(), np.arange(last + 1))
    # time axis: iteration k at k × run_s / iterations the batch ran
    for s, line in zip(series, ax_time.get_lines()):
        row = [r for r in run.summary if r["problem"] == "himmelblau" and r["optimizer"] == s.key][0]
        tpi = row["run_s"] / max(int(s.cell["nit"].max()), 1)
        np.testing.assert_allclose(line.get_xdata(), np.arange(1, int(s.cell["nit"].max()) + 1) * tpi)
    # work axis: ends where the median start's work ends, weights named on the axis
    assert "nfev + 1·njev + 2n·nhev + 2·nhvp" in ax_work.get_xlabel()
    for s, line in zip(series, ax_work.get_lines()):
        w_end = metrics.work(s.cell, 2)[np.arange(len(s.nit)), s.nit]
        assert line.get_xdata()[-1] == pytest.approx(w_end.max())
    plots.plt.close(fig)


def test_performance_profile_curve_from_starts_csv(figure_run):
    """The iterations panel equals a profile computed independently from starts.csv."""
    run = store.load_run(figure_run)
    opts = run.optimizers()
    rows = {}
    for s in run.starts:
        rows.setdefault((s["problem"], s["start"]), {})[s["optimizer"]] = max(s["nit"], 1) if s["success"] else np.inf
    costs = np.array([[r[o] for o in opts] for r in rows.values()])
    pd = plots.ProfileData(opts)
    for p in run.problems():
        pd.add_problem(plots.run_series(run, p))
    np.testing.assert_array_equal(np.sort(pd.perf_costs("iterations"), axis=0), np.sort(costs, axis=0))
    styles = {o: plots.Style(o, f"C{i}") for i, o in enumerate(opts)}
    fig = plots.performance_figure(pd, styles)
    for j, line in enumerate(fig.axes[0].get_lines()):
        taus, y = line.get_xdata(), line.get_ydata()
        for tau, val in zip(taus, y):
            best = costs.min(axis=1)
            expect = np.mean(np.isfinite(costs[:, j]) & (costs[:, j] <= tau * best))
            assert val == pytest.approx(expect)
    plots.plt.close(fig)


def test_trajectories_paths_and_minima(figure_run):
    run = store.load_run(figure_run)
    series = plots.run_series(run, "himmelblau")
    styles = {s.key: plots.Style(s.key, f"C{i}") for i, s in enumerate(series)}
    import problems
    prob = problems.get("himmelblau")
    fig = plots.trajectory_figure("himmelblau", series, styles, prob)
    ax = fig.axes[0]
    path = series[0].cell["trace_x"][0, : series[0].nit[0] + 1]
    xy = [ln.get_xydata() for ln in ax.get_lines()]
    assert any(np.array_equal(a, path) for a in xy)
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == len(prob.known_minimisers()) == 4
    assert ax.collections  # the contour
    plots.plt.close(fig)
    # a problem that cannot be re-created (a user's own): paths without contour
    assert plots._problem_from_spec("no-such-problem:dim=2") is None
    fig = plots.trajectory_figure("mine", series, styles, None)
    assert not fig.axes[0].collections and fig.axes[0].get_lines()
    plots.plt.close(fig)


def test_taylor_panel_for_a_cell_with_rho(tiny_run, tmp_path):
    """A hand-made trust-region cell (ρ and radius written into a stored trace) gets its panel."""
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    shutil.rmtree(os.path.join(copy, "plots"))
    run = store.load_run(copy)
    assert not any(plots.has_rho(s) for s in plots.run_series(run, "himmelblau"))  # line-search Newton: no ρ
    path = os.path.join(copy, run.summary[0]["trace_file"])
    cell = store.load_npz(path)
    b, t = cell["trace_f"].shape
    k = np.arange(t)
    cell["trace_rho"] = np.where(k[None, :] >= 1, np.linspace(-3.0, 1.2, t)[None, :] * np.ones((b, 1)), np.nan)
    cell["trace_step"] = np.ones((b, 1)) * 2.0 ** -k[None, :]
    np.savez_compressed(path, **cell)
    assert main(["plot", copy, "--formats", "png"]) == 0
    names = os.listdir(os.path.join(copy, "plots"))
    assert "taylor_himmelblau.png" in names
    w, h = _png_size(os.path.join(copy, "plots", "taylor_himmelblau.png"))
    assert w > 500 and h > 300
    series = [s for s in plots.run_series(store.load_run(copy), "himmelblau") if plots.has_rho(s)]
    assert [s.key for s in series] == ["newton"]
    fig = plots.taylor_figure("himmelblau", series, {"newton": plots.Style("newton", "C0")})
    radius = fig.axes[1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(radius, 2.0 ** -np.arange(int(cell["nit"].max()) + 1))
    rho_line = fig.axes[0].get_lines()[1].get_ydata()  # the median (the first line holds the dots)
    last = int(cell["nit"].max())
    np.testing.assert_allclose(rho_line[1:], np.clip(np.linspace(-3.0, 1.2, t)[1: last + 1], *plots.RHO_CLIP))
    plots.plt.close(fig)


def test_diverging_starts_are_drawn_capped_without_overflow(tiny_run, tmp_path):
    """f − f* of 1e267 (gd diverging on Goldstein-Price reaches that) made matplotlib's log tick
    locator overflow and the run's plotting fail; such curves are now drawn on a line six decades
    above the worst start, so the converging curves keep the axis."""
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    run = store.load_run(copy)
    path = os.path.join(copy, run.summary[0]["trace_file"])
    cell = store.load_npz(path)
    b, t = cell["trace_f"].shape
    f0 = cell["trace_f"][:, 0] - float(cell["f_star"])
    diverge = (np.arange(b)[:, None] < 3) & (np.arange(t)[None, :] >= 1)   # 3 of 4 starts, after x0
    cell["trace_f"] = np.where(diverge, 7.6e267, cell["trace_f"])
    np.savez_compressed(path, **cell)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["plot", copy, "--formats", "png"]) == 0
        series = plots.run_series(store.load_run(copy), "himmelblau")
        cap = plots.diverged_cap([plots.convergence_values(s.cell)[0][:, 0] for s in series])
        assert cap == 10.0 ** (np.ceil(np.log10(f0.max())) + plots.DIVERGED_DECADES)
        fig = plots.convergence_figure("himmelblau", series, {"newton": plots.Style("newton", "C0")})
        med = fig.axes[0].get_lines()[0].get_ydata()
        assert med[0] == pytest.approx(np.median(f0)) and np.all(med[1:] == cap)   # the median start diverged
        assert any("diverging" in t.get_text() for t in fig.axes[0].texts)
        fig.canvas.draw()
        plots.plt.close(fig)
    assert plots._decade_label(float("inf")) == "" and plots._decade_label(1e-3) == "10⁻³"


def test_compare_overlays_runs_and_prints_differences(tiny_run, tmp_path, capsys):
    other = str(tmp_path / "other")
    shutil.copytree(tiny_run, other)
    out = str(tmp_path / "cmp")
    assert main(["compare", tiny_run, other, "--out", out, "--formats", "png"]) == 0
    text = capsys.readouterr().out
    assert "time ratio" in text and "himmelblau" in text and "100% → 100%" in text and "1.00×" in text
    names = set(os.listdir(out))
    figs = {"convergence_himmelblau.png", "trajectories_himmelblau.png", "profile_performance.png",
            "profile_data.png", "ecdf.png"}
    assert figs | {"compare.html"} <= names
    html = open(os.path.join(out, "compare.html"), encoding="utf-8").read()
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == len(figs)
    # one colour per optimizer, one line style per run
    runs = [store.load_run(tiny_run), store.load_run(other)]
    labels = plots.run_labels(runs)
    assert labels[0] != labels[1]
    series = [s for run, lab in zip(runs, labels) for s in plots.run_series(run, "himmelblau", key=lambda o, lab=lab: (lab, o))]
    styles = {(lab, "newton"): plots.Style(lab, "C0", ls) for lab, ls in zip(labels, plots.RUN_LINESTYLES)}
    fig = plots.convergence_figure("himmelblau", series, styles)
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["-", "--"] and lines[0].get_color() == lines[1].get_color()
    plots.plt.close(fig)


def test_plot_errors_are_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 2


def test_run_labels_distinct_and_name_what_differs(figure_run, tiny_run):
    a, b = store.load_run(figure_run), store.load_run(tiny_run)
    assert plots.run_labels([a, b]) == ["run", "tiny"]
    assert plots.run_labels([a, a]) == ["1:run", "2:run"]
    b.meta = dict(b.meta, dtype="float32", backend="gpu")
    assert plots.run_labels([a, b]) == [f"run ({a.meta['backend']} {a.meta['dtype']})", "tiny (gpu float32)"]


def test_a_figure_is_laid_out_once_for_all_its_formats(tmp_path, monkeypatch):
    """Constrained layout runs for the first format only; the SVG keeps the PNG's layout (it had
    solved it again, about 40 % of drawing a many-panel figure as SVG)."""
    import matplotlib.layout_engine as le
    import matplotlib.pyplot as plt

    calls = []
    real = le.ConstrainedLayoutEngine.execute
    monkeypatch.setattr(le.ConstrainedLayoutEngine, "execute", lambda self, fig: (calls.append(1), real(self, fig)))
    fig, axes = plt.subplots(1, 2, layout="constrained")
    axes[0].plot([1, 2, 3])
    axes[1].set_title("a long title that constrained layout must make room for")
    paths = plots._save(fig, str(tmp_path), "f", ("png", "svg"))
    assert [os.path.basename(p) for p in paths] == ["f.png", "f.svg"]
    assert len(calls) == 1
    ET.parse(paths[1])   # the SVG is whole
    assert mpimg.imread(paths[0]).shape[2] in (3, 4)
