"""User plug-ins: a file registering a problem and an optimizer runs through ``optbench run`` under
its own names, appears in summary.csv, the figures and the report; the Python API sees the same
names; a broken plug-in is one line, exit 2, nothing written."""
import csv
import os

import numpy as np
import pytest

import bench
import optimizers
import problems
from bench import plugins, store
from bench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "my_plugin.py")


@pytest.fixture(scope="module", autouse=True)
def restore_registries():
    """Undo what this module's plug-ins register, so later tests that select "all" optimizers
    (the quick suite) see only the built-ins."""
    saved = plugins.snapshot_registries()
    loaded = dict(plugins._LOADED)
    yield
    plugins.restore_registries(saved)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("plug") / "run")
    rc = main(["run", "--plugin", EXAMPLE, "--problems", "decay-fit,my-bowl:dim=3:cond=1e3",
               "--optimizers", "bb,newton", "--starts", "3", "--max-iter", "300", "--repeats", "1",
               "--out", out, "--quiet"])
    assert rc == 0
    return out


def test_plugin_cells_in_summary(plugin_run):
    rows = list(csv.DictReader(open(os.path.join(plugin_run, "summary.csv"))))
    cells = {(r["problem"], r["optimizer"]): r for r in rows}
    bowl = problems.get("my-bowl:dim=3:cond=1e3").spec
    assert set(cells) == {(p, o) for p in ("decay-fit", bowl) for o in ("bb", "newton")}
    # the plug-in optimizer really optimises: it solves both plug-in problems from every start
    for (p, o), r in cells.items():
        assert float(r["success_rate"]) == 1.0, (p, o, r["statuses"])
    # f* and x* of the plug-in problem are used like a built-in's
    run = store.load_run(plugin_run)
    cell = run.cell("decay-fit", "bb")
    np.testing.assert_allclose(cell["x"], np.tile([2.5, 1.3], (3, 1)), atol=1e-6)


def test_plugin_names_in_figures_and_report(plugin_run):
    plots_dir = os.path.join(plugin_run, "plots")
    names = os.listdir(plots_dir)
    assert any(n.startswith("convergence_decay-fit") or n.startswith("convergence_decay_fit") for n in names), names
    report = os.path.join(plugin_run, "report.html")
    if not os.path.exists(report):
        pytest.skip("this checkout writes no report.html")
    html = open(report, encoding="utf-8").read()
    assert "decay-fit" in html and "my-bowl" in html and "bb" in html


def test_plugin_through_python_api():
    plugins.load_plugin(EXAMPLE)   # already imported by the run above: loaded once per process
    assert "decay-fit" in problems.names() and "my-bowl" in problems.names() and "bb" in optimizers.names()
    assert optimizers.describe("bb")["params"] == {"lr0": 1e-3, "max_step": 1e4}
    p = problems.get("my-bowl:dim=4")
    res = bench.solve(p, "bb:lr0=0.01", p.random_starts(2, 1), max_iter=400, gtol=1e-10)
    assert list(res.status) == ["converged", "converged"]
    np.testing.assert_allclose(res.x, 0.0, atol=1e-9)
    # BB counts one f and one gradient per step, plus the initial pair
    np.testing.assert_array_equal(res.nfev, res.nit + 1)


def test_plugin_loaded_once(tmp_path):
    f = tmp_path / "once.py"
    f.write_text("import optimizers\nCOUNT = globals().get('COUNT', 0) + 1\n"
                 "@optimizers.register('once-gd')\n"
                 "def once_gd(lr: float = 0.1):\n"
                 "    return optimizers.get('gd:lr=' + str(lr))\n")
    m1 = plugins.load_plugin(str(f))
    m2 = plugins.load_plugin(str(f))
    assert m1 is m2 and m1.COUNT == 1
    # the decorator form with parameters: optimizers.get builds it like a built-in
    assert optimizers.get("once-gd:lr=0.5").params["lr"] == 0.5


@pytest.mark.parametrize("body, needle", [
    (None, "not found"),
    ("def broken(:\n", "(line 1): syntax error"),
    ("import numpy\n\nraise RuntimeError('no data file')\n", "(line 3) failed: RuntimeError: no data file"),
    ("import problems\nproblems.register(problems.Problem(name='rosenbrock', f=lambda x: x @ x, x0=[1.0]))\n",
     "problem 'rosenbrock' is already registered"),
    ("import optimizers\noptimizers.register('bad:name', lambda: None)\n", "without ':'"),
    ("import problems\nproblems.register(problems.Problem(name='noodle', x0=[1.0]))\n", "needs f or residuals"),
])
def test_bad_plugin_one_line_exit_2(tmp_path, capsys, body, needle):
    path = tmp_path / "plug.py"
    if body is not None:
        path.write_text(body)
    out = str(tmp_path / "never")
    rc = main(["run", "--plugin", str(path), "--problems", "rosenbrock", "--optimizers", "newton", "--out", out])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and str(path) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(out)


def test_plugin_must_be_python(tmp_path, capsys):
    path = tmp_path / "plug.txt"
    path.write_text("x = 1\n")
    assert main(["list", "problems", "--plugin", str(path)]) == 2
    assert "must be a Python file" in capsys.readouterr().err


def test_list_with_plugin(capsys):
    assert main(["list", "optimizers", "--plugin", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("bb ") for line in out.splitlines()) and "Barzilai" in out


def test_list_problems_with_plugin_shows_a_fixed_problems_description(capsys):
    """A Problem registered as an instance is listed with its dimension and its description
    (the listing read the docstring of the factory the registry made for it: empty)."""
    assert main(["list", "problems", "--plugin", EXAMPLE]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.split()[:1] == ["decay-fit"])
    assert line.split()[1] == "2" and "fitted to exact samples" in line


def test_readme_shows_the_example_verbatim():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert open(EXAMPLE, encoding="utf-8").read().rstrip("\n") in readme


def test_suite_file_names_its_plugins(tmp_path):
    """``plugins = [...]`` in a suite, relative to the suite file, is imported before names resolve."""
    import argparse
    from bench import cmd_run
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "suite_plug.py").write_text(
        "import numpy as np\nimport problems\n"
        "problems.register(problems.Problem(name='suite-plug-bowl', f=lambda x: x @ x, x0=np.ones(3), f_star=0.0))\n")
    (tmp_path / "s.toml").write_text('plugins = ["sub/suite_plug.py"]\nproblems = ["suite-plug-bowl"]\n'
                                     'optimizers = ["newton", "bb"]\nstarts = 2\n')
    p = argparse.ArgumentParser()
    cmd_run.add_arguments(p)
    plan = cmd_run.build_plan(p.parse_args([str(tmp_path / "s.toml"), "--plugin", EXAMPLE]))
    assert [c.key for c in plan.cells] == [("suite-plug-bowl", "newton"), ("suite-plug-bowl", "bb")]
    assert plan.config()["plugins"] == [str(tmp_path / "sub" / "suite_plug.py")]


def test_plugin_that_fails_halfway_leaves_nothing_registered(tmp_path):
    """A file that registers one problem and then fails is undone: loading it again reports its
    own error again (it said "already registered" for the first problem before) and the name is
    free."""
    path = tmp_path / "half.py"
    path.write_text("import numpy as np\nimport problems\n"
                    "problems.register(problems.Problem(name='half-a', f=lambda x: x @ x, x0=np.ones(2)))\n"
                    "raise RuntimeError('data file missing')\n")
    for _ in range(2):
        with pytest.raises(bench.OptbenchError, match="failed: RuntimeError: data file missing"):
            plugins.load_plugin(str(path))
    assert "half-a" not in problems.names()


def test_plot_with_plugin_redraws_a_plugin_run_byte_for_byte(plugin_run):
    """A fresh process has no plug-in registered: `plot --plugin` registers it again, so the
    plug-in problem's contour is drawn and the figure is the run's own, byte for byte (without
    the option the contour was lost and the README's byte-identical redraw was false)."""
    import subprocess
    import sys
    fig = os.path.join(plugin_run, "plots", "trajectories_decay-fit.png")
    before = open(fig, "rb").read()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "bench.cli", "plot", plugin_run, "--formats", "png", "--plugin", EXAMPLE]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert open(fig, "rb").read() == before


FLAKY = '''
import os
import jax.numpy as jnp
import optimizers
from optimizers.base import initial_state


@optimizers.register({name!r})
def flaky(lr: float = 1e-3):
    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s):
        if os.path.exists({flag!r}):
            raise RuntimeError("boom")
        x = s.x - lr * s.g
        f, g = oracle.value_and_grad(x)
        return s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, step=jnp.asarray(lr, x.dtype))
    return optimizers.Optimizer(name={name!r}, init=init, step=step, params={{"lr": lr}})
'''


def _flaky_partial_run(tmp_path, capsys, name):
    """A run whose second cell's plug-in optimizer fails (while a flag file exists) after the
    first cell was written."""
    flag = tmp_path / "broken"
    flag.write_text("")
    plug = tmp_path / "flaky.py"
    plug.write_text(FLAKY.format(flag=str(flag), name=name))
    out = str(tmp_path / "run")
    rc = main(["run", "--plugin", str(plug), "--problems", "himmelblau", "--optimizers", f"newton,{name}",
               "--starts", "2", "--max-iter", "50", "--repeats", "1", "--out", out, "--quiet", "--no-report"])
    assert rc == 2
    return out, flag, capsys.readouterr().err


def test_a_cell_failing_after_others_ran_names_the_kept_cells_and_resume_finishes(tmp_path, capsys):
    """The error said only "step fails: RuntimeError: boom"; the run directory, half done, was left
    without a word. It now names the directory and the command that finishes it."""
    out, flag, err = _flaky_partial_run(tmp_path, capsys, "flaky-gd")
    assert err.count("\n") == 1 and "boom" in err and "Traceback" not in err, err
    assert f"1 of 2 cells are kept in {out}" in err and f"optbench run --resume {out}" in err, err
    meta = store.load_meta(out)
    assert meta["complete"] is False and "boom" in meta["interrupted"]["reason"]
    flag.unlink()
    assert main(["run", "--resume", out, "--quiet", "--no-report"]) == 0
    meta = store.load_meta(out)
    assert meta["complete"] is True and len(meta["cells_done"]) == 2


def test_resume_refuses_a_damaged_trace_before_running_the_missing_cells(tmp_path, capsys):
    """A trace of a cell done before, damaged, stopped the resume only when the figures read it,
    after the missing cells ran — and every later resume the same way. It is read first now."""
    out, flag, _ = _flaky_partial_run(tmp_path, capsys, "flaky-gd-2")
    flag.unlink()
    (trace,) = [os.path.join(out, "traces", f) for f in os.listdir(os.path.join(out, "traces"))]
    with open(trace, "r+b") as fh:
        fh.truncate(100)
    assert main(["run", "--resume", out, "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "unreadable trace file" in err and err.count("\n") == 1, err
    assert len(store.load_meta(out)["cells_done"]) == 1   # the missing cell was not run


def test_figures_drawn_by_new_processes_load_the_plugin(plugin_run, tmp_path, monkeypatch):
    """A process drawing a plug-in problem's figures loads the plug-in first: the contour is there
    and the figures are the run's own (drawn in one process), byte for byte."""
    from bench import plots
    assert plots._fresh_process_plugins(store.load_run(plugin_run).problems()) == [os.path.realpath(EXAMPLE)]
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, "2")
    idx = plots.plot_run_index(store.load_run(plugin_run), formats=("png",), out_dir=str(tmp_path))
    names = sorted(os.path.basename(p) for p in idx.all())
    assert "trajectories_decay-fit.png" in names
    for n in names:
        assert open(os.path.join(tmp_path, n), "rb").read() == open(os.path.join(plugin_run, "plots", n), "rb").read(), n
