"""A run's figures drawn by several processes are the bytes one process draws; the process count
is the user's to set; a problem a new process cannot re-create keeps the drawing in one process."""
import os
import shutil

import numpy as np
import pytest

import problems
from bench import plots, plugins, store
from bench.cli import main


def _draw(run_dir, monkeypatch, jobs, out=None):
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, str(jobs))
    return plots.plot_run_index(store.load_run(run_dir), formats=("png", "svg"), out_dir=out)


def _files(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def test_figures_drawn_by_two_processes_are_those_of_one(figure_run, tmp_path, monkeypatch):
    import concurrent.futures
    submitted = []
    real_submit = concurrent.futures.ProcessPoolExecutor.submit
    monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "submit",
                        lambda self, fn, *a: submitted.append(a[1]) or real_submit(self, fn, *a))
    one = _draw(figure_run, monkeypatch, 1, str(tmp_path / "one"))
    assert not submitted
    two = _draw(figure_run, monkeypatch, 2, str(tmp_path / "two"))
    assert sorted(submitted) == sorted(store.load_run(figure_run).problems())
    assert [os.path.basename(p) for p in one.all()] == [os.path.basename(p) for p in two.all()]
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) >= 8
    for n in a:
        assert a[n] == b[n], n
    # into memory (what `optbench report` draws), the same bytes again
    mem = plots.FigureMemory()
    idx = _draw(figure_run, monkeypatch, 2, mem)
    assert sorted(idx.all()) == sorted(n for n in a) and all(mem[n] == a[n] for n in a)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_process_count_is_one_line_exit_2_nothing_drawn(figure_run, tmp_path, monkeypatch, capsys, value):
    copy = str(tmp_path / "run")
    shutil.copytree(figure_run, copy)
    shutil.rmtree(os.path.join(copy, "plots"))
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, value)
    capsys.readouterr()
    assert main(["plot", copy]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OPTBENCH_PLOT_JOBS must be a whole number" in err
    assert not os.path.exists(os.path.join(copy, "plots")) or not os.listdir(os.path.join(copy, "plots"))


def test_default_process_count(monkeypatch):
    monkeypatch.delenv(plots.PLOT_JOBS_ENV, raising=False)
    monkeypatch.setattr(plots, "_cpus", lambda: 16)
    assert plots.plot_jobs(plots.PLOT_PARALLEL_MIN_PROBLEMS - 1) == 1
    assert plots.plot_jobs(5) == 5 and plots.plot_jobs(100) == plots.PLOT_JOBS_MAX
    monkeypatch.setattr(plots, "_cpus", lambda: 2)
    assert plots.plot_jobs(100) == 2
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, "3")
    assert plots.plot_jobs(2) == 2 and plots.plot_jobs(10) == 3


def test_a_problem_registered_from_python_keeps_the_drawing_in_one_process():
    assert plots._fresh_process_plugins(["rosenbrock", "quadratic:dim=2:cond=100", "no-such-problem"]) == []
    saved = plugins.snapshot_registries()
    try:
        problems.register(problems.Problem(name="jobs-bowl", f=lambda x: x @ x, x0=np.ones(2), f_star=0.0))
        assert plots._fresh_process_plugins(["rosenbrock", "jobs-bowl"]) is None
    finally:
        plugins.restore_registries(saved)


def test_run_refuses_a_bad_process_count_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, "none")
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "2", "--out", out]) == 2
    assert "OPTBENCH_PLOT_JOBS" in capsys.readouterr().err and not os.path.exists(out)
    # without figures nothing reads it
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "2", "--max-iter", "200",
                 "--out", out, "--no-plots", "--quiet"]) == 0


def test_compare_drawn_by_two_processes_is_the_same(figure_run, tmp_path, monkeypatch):
    other = str(tmp_path / "other")
    shutil.copytree(figure_run, other)
    out = {}
    for jobs in (1, 2):
        monkeypatch.setenv(plots.PLOT_JOBS_ENV, str(jobs))
        runs = [store.load_run(figure_run), store.load_run(other)]
        d = str(tmp_path / f"cmp{jobs}")
        idx = plots.plot_compare(runs, d, formats=("png",))
        assert idx.profiles and len(idx.all()) == len(os.listdir(d))
        out[jobs] = _files(d)
    assert out[1].keys() == out[2].keys() and len(out[1]) >= 5
    for n in out[1]:
        assert out[1][n] == out[2][n], n


def test_a_drawing_process_starts_jax_on_the_cpu_alone():
    """JAX is imported in a new process before its initializer runs, so the platform is set
    through JAX's config (the environment variable alone came too late)."""
    import concurrent.futures
    import multiprocessing
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=plots._worker_start) as pool:
        assert pool.submit(plots._drawing_platforms).result(timeout=120) == "cpu"


def test_a_drawing_process_that_dies_is_one_line(tmp_path):
    with pytest.raises(store.OptbenchError, match="a process drawing figures ended without finishing"):
        plots._in_processes(2, [(os._exit, (3,)), (os._exit, (3,))], str(tmp_path), lambda: None)


def test_a_figure_is_the_same_bytes_whatever_formats_are_asked_for(figure_run, tmp_path, monkeypatch):
    """The layout is solved once, as the PNG renderer measures text, whatever the formats: an SVG
    drawn alone, or before the PNG, is the SVG of the default order (and the PNG the same)."""
    monkeypatch.setenv(plots.PLOT_JOBS_ENV, "1")
    got = {}
    for formats in (("png", "svg"), ("svg",), ("svg", "png")):
        d = str(tmp_path / "_".join(formats))
        plots.plot_run_index(store.load_run(figure_run), formats=formats, out_dir=d)
        got[formats] = _files(d)
    ref = got[("png", "svg")]
    for formats, files in got.items():
        assert files and all(files[n] == ref[n] for n in files), formats
    assert set(got[("svg", "png")]) == set(ref)


def test_without_working_semaphores_the_figures_are_drawn_here(figure_run, tmp_path, monkeypatch):
    """Where a process pool cannot be made (no /dev/shm in a container: OSError from sem_open)
    the same figures are drawn in this process instead of the command failing."""
    import concurrent.futures

    def refuse(*a, **k):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", refuse)
    one = _draw(figure_run, monkeypatch, 1, str(tmp_path / "one"))
    two = _draw(figure_run, monkeypatch, 2, str(tmp_path / "two"))
    assert sorted(os.path.basename(p) for p in one.all()) == sorted(os.path.basename(p) for p in two.all())
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert a and a == b
