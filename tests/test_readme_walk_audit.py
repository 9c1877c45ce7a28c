"""What a walk through the README found: output files replaced without asking, --debug's exit
code, names the README uses that did not resolve, and folders in the current directory that hid
optbench's packages from ``python -m bench``."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import bench
from bench import check
from bench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("walk") / "run")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "gd:lr=1e-3", "--starts", "2",
                 "--max-iter", "20", "--repeats", "1", "--no-plots", "--no-report", "--quiet", "--out", out]) == 0
    return out


def test_check_out_replaces_only_an_earlier_check_report(run_dir, tmp_path, capsys):
    """`check --out notes.txt` overwrote the user's file; now only an earlier report (any format)
    or an empty file is replaced."""
    bl = str(tmp_path / "bl.json")
    assert main(["baseline", run_dir, "--out", bl]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    capsys.readouterr()
    assert main(["check", run_dir, "--baseline", bl, "--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert notes.read_text() == "precious" and "is not an earlier optbench check report" in err
    assert len(err.strip().splitlines()) == 1
    for fmt in ("text", "markdown", "json", "junit"):
        out = tmp_path / f"report.{fmt}"
        assert main(["check", run_dir, "--baseline", bl, "--format", fmt, "--out", str(out)]) == 0
        assert check.is_check_output(str(out))
        assert main(["check", run_dir, "--baseline", bl, "--format", fmt, "--out", str(out)]) == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["check", run_dir, "--baseline", bl, "--out", str(empty)]) == 0


def test_compare_keeps_a_users_compare_html_and_draws_nothing_from_a_damaged_run(run_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.html").write_text("my notes")
    assert main(["compare", run_dir, run_dir, "--out", str(out), "--formats", "png"]) == 2
    assert (out / "compare.html").read_text() == "my notes"
    capsys.readouterr()
    # a run whose trace lacks an array: one line, and no figure written before it was found
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(run_dir, bad)
    trace = glob.glob(str(bad / "traces" / "*.npz"))[0]
    arrays = dict(np.load(trace))
    del arrays["trace_f"]
    np.savez_compressed(trace, **arrays)
    out2 = tmp_path / "cmp2"
    assert main(["compare", run_dir, str(bad), "--out", str(out2), "--formats", "png"]) == 2
    err = capsys.readouterr().err
    assert "lacks the array 'trace_f'" in err and len(err.strip().splitlines()) == 1
    assert not out2.exists() or not os.listdir(out2)
    # an earlier compare page is replaced
    out3 = tmp_path / "cmp3"
    assert main(["compare", run_dir, run_dir, "--out", str(out3), "--formats", "png"]) == 0
    assert main(["compare", run_dir, run_dir, "--out", str(out3), "--formats", "png"]) == 0


def test_debug_keeps_the_bad_input_exit_code(capsys):
    """`--debug` shows the traceback; it made bad input exit 1 (check's "regression" code)."""
    assert main(["--debug", "run", "--problems", "rosenbrok", "--optimizers", "gd"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("optbench: error: unknown problem")


def test_bench_plugins_after_import_bench():
    """The README's `bench.plugins.load_plugin(...)` after `import bench`: it was an AttributeError."""
    assert callable(bench.plugins.load_plugin)


def test_a_least_squares_optimizer_without_residual_problems_names_the_command_line(tmp_path, capsys):
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "quadratic", "--optimizers", "scipy:least_squares", "--out", out]) == 2
    assert capsys.readouterr().err.startswith("optbench: error: --problems/--optimizers: no problem × optimizer")
    assert not os.path.exists(out)


def test_python_m_bench_where_a_folder_hides_a_package(tmp_path):
    """`python -m bench` puts the current directory first on the import path: a plain folder named
    suites or problems there became an empty namespace package (an internal error from `list`)."""
    (tmp_path / "suites").mkdir()
    # as installed (the README's editable install): no PYTHONPATH, whose regular packages would win
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    got = subprocess.run([sys.executable, "-m", "bench", "list", "suites"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    if "No module named bench" in got.stderr:
        pytest.skip("optbench is not installed in this interpreter (tests run from the checkout)")
    assert got.returncode == 2, got.stderr
    assert got.stderr.startswith("optbench: error: the directory ") and "hides optbench's 'suites' package" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1


def test_the_python_api_block_runs_as_written():
    """The README's Python API block used names it never defined (fn, rfn, x0, x0s): run as a
    script it stopped at a NameError. It now defines them; run it, and check what it states."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    at = text.index("```python", text.index("## Python API")) + len("```python\n")
    block = text[at:text.index("```", at)]
    ns = {}
    exec(compile(block, "README.md (Python API)", "exec"), ns)
    res = ns["res"]   # the last call: fuse_loops=True on 8 starts of 2-D Rosenbrock with newton
    assert res.x.shape == (8, 2) and res.success.all()
    conv = res.status == "converged"
    assert (res.grad_norm[conv] <= 1e-8).all()
