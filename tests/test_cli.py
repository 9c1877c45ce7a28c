"""End-to-end: the optbench command writes a complete run directory; bad input is one line, exit 2."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import store
from bench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "r")
    rc = main(["run", "--problems", "himmelblau,rosenbrock", "--optimizers", "newton,gd-linesearch",
               "--starts", "4", "--max-iter", "200", "--repeats", "2", "--out", out, "--quiet"])
    assert rc == 0
    return out


def test_run_writes_every_file(small_run):
    names = set(os.listdir(small_run))
    assert {"meta.json", "summary.csv", "starts.csv", "traces", "plots"} <= names
    meta = json.load(open(os.path.join(small_run, "meta.json")))
    assert meta["schema_version"] == store.SCHEMA_VERSION and meta["complete"] is True
    for key in ("command", "versions", "backend", "device_kind", "dtype", "host", "git_commit", "config"):
        assert key in meta
    assert {"jax", "jaxlib", "optax", "numpy"} <= set(meta["versions"])
    rows = list(csv.DictReader(open(os.path.join(small_run, "summary.csv"))))
    assert len(rows) == 4 and set(store.SUMMARY_COLUMNS) <= set(rows[0])
    starts = list(csv.DictReader(open(os.path.join(small_run, "starts.csv"))))
    assert len(starts) == 16 and set(store.STARTS_COLUMNS) <= set(starts[0])
    assert len(os.listdir(os.path.join(small_run, "traces"))) == 4
    pngs = sorted(n for n in os.listdir(os.path.join(small_run, "plots")) if n.endswith(".png"))
    assert {"convergence_himmelblau.png", "convergence_rosenbrock.png"} <= set(pngs)  # all kinds: test_plots.py
    for png in pngs:
        with open(os.path.join(small_run, "plots", png), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(os.path.join(small_run, store.LOCK_NAME))


def test_stored_run_matches_summary(small_run):
    run = store.load_run(small_run)
    for row in run.summary:
        cell = run.cell(row["problem"], row["optimizer"])
        assert cell["trace_f"].shape == (4, 201)
        assert row["success_rate"] == pytest.approx(cell["success"].mean())
        assert row["nit_median"] == pytest.approx(np.median(cell["nit"]))
        # the stored history ends at the stored final value
        np.testing.assert_array_equal(cell["trace_f"][:, -1], cell["fun"])


@pytest.mark.parametrize("args, needle", [
    (["run", "--problems", "rosenbrok"], "did you mean: rosenbrock"),
    (["run", "--optimizers", "newtn"], "did you mean: newton"),
    (["run", "--problems", "rosenbrock:dimm=3"], "unknown parameter 'dimm'"),
    (["run", "--problems", "rosenbrock:dim=1"], "dim >= 2"),
    (["run", "--starts", "0"], "--starts"),
    (["run", "--gtol", "-1"], "--gtol"),
    (["run", "--jobs", "0"], "--jobs"),
    (["list", "things"], "problems or optimizers"),
])
def test_bad_input_one_line_exit_2_no_directory(tmp_path, capsys, args, needle):
    out = str(tmp_path / "never")
    rc = main(args + (["--out", out] if args[0] == "run" else []))
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(out)


def test_cli_subprocess_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = str(tmp_path / "x")
    p = subprocess.run([sys.executable, "-m", "bench", "run", "--problems", "nosuch", "--out", out],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("optbench: error: unknown problem 'nosuch'")
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not os.path.exists(out)


def test_out_dir_that_is_not_a_run_is_refused(tmp_path, capsys):
    d = tmp_path / "busy"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    rc = main(["run", "--problems", "himmelblau", "--optimizers", "newton", "--out", str(d)])
    assert rc == 2 and "not a run" in capsys.readouterr().err
    assert (d / "precious.txt").read_text() == "keep me" and sorted(os.listdir(d)) == ["precious.txt"]


def test_list(capsys):
    assert main(["list", "problems"]) == 0
    out = capsys.readouterr().out
    assert "rosenbrock" in out and "dim=2" in out
    assert main(["list", "optimizers"]) == 0
    assert "newton-raphson" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["zero", "-1", "1.5", "99999999"])
def test_cpu_threads_bad_value_one_line(capsys, value):
    # 99999999: each thread reserves a stack, and the process was killed for memory before
    assert main(["--cpu-threads", value, "list", "problems"]) == 2
    err = capsys.readouterr().err
    assert "--cpu-threads must be an integer from 1 to 4096, or 0/auto" in err and err.count("\n") == 1


def test_cpu_threads_from_the_environment_is_checked_too(capsys, monkeypatch):
    monkeypatch.setenv("OPTBENCH_CPU_THREADS", "many")
    assert main(["list", "problems"]) == 2
    err = capsys.readouterr().err
    # the message names the variable the value came from, not a flag that was not given
    assert "$OPTBENCH_CPU_THREADS must be an integer from 1 to 4096, or 0/auto, got 'many'" in err
    assert "--cpu-threads" not in err and err.count("\n") == 1


_THREADS_SNIPPET = r"""
import collections, json, os, sys
import bench
from optbench_core import OptbenchError
n = bench.set_cpu_threads(sys.argv[1])
import jax.numpy as jnp
float(jnp.sum(jnp.ones(8)))   # starts the CPU backend
names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
try:
    bench.set_cpu_threads(n + 1)
    late = "accepted"
except OptbenchError as e:
    late = str(e)
try:
    auto_late = bench.set_cpu_threads("auto")
except OptbenchError as e:
    auto_late = str(e)
print(json.dumps({"n": n, "now": bench.cpu_threads(), "eigen": sum(c for k, c in names.items() if "XLAEigen" in k),
                  "late": late, "same": bench.set_cpu_threads(n), "auto_late": auto_late}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
def test_cpu_threads_sizes_xla_pool_and_is_recorded(tmp_path):
    """--cpu-threads sets the pool XLA runs CPU programs on (counted: its threads), can't be
    changed once JAX's backend runs, and is recorded in meta.json."""
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "OPTBENCH_CPU_THREADS")}
    env["PYTHONPATH"] = ROOT
    got = {}
    for arg in ("1", "auto"):
        p = subprocess.run([sys.executable, "-c", _THREADS_SNIPPET, arg], capture_output=True, text=True,
                           cwd=str(tmp_path), env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        got[arg] = json.loads(p.stdout.strip().splitlines()[-1])
    if got["auto"]["eigen"] == 0:
        pytest.skip("this jaxlib names its CPU pool threads differently")
    assert got["1"]["n"] == got["1"]["now"] == got["1"]["same"] == 1 and got["1"]["eigen"] == 1
    assert got["auto"]["n"] == got["auto"]["eigen"] == len(os.sched_getaffinity(0))
    assert "already runs on 1" in got["1"]["late"]
    # an explicit auto after the start is XLA's default or an error, never a silent no-op
    assert got["auto"]["auto_late"] == got["auto"]["n"]
    if len(os.sched_getaffinity(0)) > 1:
        assert "cannot set the CPU threads to auto" in got["1"]["auto_late"] and "already runs on 1" in got["1"]["auto_late"]
    out = str(tmp_path / "r")
    p = subprocess.run([sys.executable, "-m", "bench", "--cpu-threads", "1", "run", "--problems", "himmelblau",
                        "--optimizers", "newton", "--starts", "2", "--out", out, "--quiet"],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.load(open(os.path.join(out, "meta.json")))["cpu_threads"] == 1


def test_commands_that_draw_nothing_do_not_load_matplotlib():
    """Every command module is loaded to build the command line; matplotlib (about half a second
    of every start-up) comes in only with a command that draws."""
    code = ("import sys; from bench.cli import main; rc = main(['list', 'problems']); "
            "assert rc == 0, rc; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
