"""Nothing lost: interrupted runs keep every finished cell and `--resume` completes them exactly;
two writers never share a directory; damaged run files give one line naming the file."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import optimizers
from bench import store
from bench.cli import main
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: six cells (the spawned runs below pause before their second cell, so a signal lands mid-run)
SUITE = ["--problems", "himmelblau,rosenbrock", "--optimizers", "newton,gd-linesearch,bfgs", "--starts", "4",
         "--max-iter", "200", "--repeats", "1", "--seed", "1", "--no-plots", "--quiet"]
#: summary columns that measure convergence (not time): a resumed run must match them exactly
CONVERGENCE = [c for c in store.SUMMARY_COLUMNS if c not in ("compile_s", "run_s")]


def _meta(path):
    with open(os.path.join(path, "meta.json")) as fh:
        return json.load(fh)


#: ``optbench run`` in a child process that, once its first cell is committed, waits (up to
#: five minutes) before starting its second. Cells are compiled ahead and then run in
#: milliseconds, so without the pause a run could finish before the test's signal arrives; with
#: it the signal lands deterministically between two cells, outside any critical section.
_PAUSING_RUN = """
import sys, time
from bench import suite
_run, _calls = suite.Cell.run, []
def _paused_run(self, *a, **k):
    _calls.append(self)
    if len(_calls) == 2:
        time.sleep(300)
    return _run(self, *a, **k)
suite.Cell.run = _paused_run
from bench.cli import entry
entry()
"""


def _spawn(args, cwd):
    # no persistent compilation cache: the child neither reads nor fills the user's
    env = dict(os.environ, PYTHONPATH=ROOT, OPTBENCH_CACHE_DIR="off")
    return subprocess.Popen([sys.executable, "-c", _PAUSING_RUN, "run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc, what, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return
        except (OSError, ValueError):  # not written yet
            pass
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _tmp_files(path):
    return [n for d in (path, os.path.join(path, "traces")) for n in os.listdir(d) if ".tmp" in n]


def assert_same_convergence(a, b):
    """Two runs hold the same cells with identical convergence metrics, start rows and traces."""
    ra, rb = store.load_run(a), store.load_run(b)
    assert [(r["problem"], r["optimizer"]) for r in ra.summary] == [(r["problem"], r["optimizer"]) for r in rb.summary]
    for x, y in zip(ra.summary, rb.summary):
        assert {k: x[k] for k in CONVERGENCE} == {k: y[k] for k in CONVERGENCE}
    assert ra.starts == rb.starts
    for r in ra.summary:
        ca, cb = ra.cell(r["problem"], r["optimizer"]), rb.cell(r["problem"], r["optimizer"])
        for key in ("trace_f", "trace_grad_norm", "trace_nfev", "x", "fun", "nit", "status"):
            np.testing.assert_array_equal(ca[key], cb[key])


def _incomplete_copy(src, d, keep):
    """A copy of the run ``src`` in ``d`` whose meta.json lists only its first ``keep`` cells as
    done (as an interrupted run's does); returns that meta."""
    shutil.copytree(src, d)
    meta = _meta(d)
    meta["cells_done"] = meta["cells_done"][:keep]
    meta["complete"] = False
    store.atomic_write_text(os.path.join(d, "meta.json"), json.dumps(meta))
    return meta


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean") / "run")
    assert main(["run", *SUITE, "--out", out]) == 0
    return out


def test_sigterm_then_sigkill_then_resume_equals_uninterrupted(tmp_path, uninterrupted, capsys):
    d = str(tmp_path / "run")
    # 1. SIGTERM after the first cell: an orderly stop
    p1 = _spawn([*SUITE, "--out", d], str(tmp_path))
    _wait_for(lambda: len(_meta(d)["cells_done"]) >= 1, p1, "a first finished cell")
    p1.send_signal(signal.SIGTERM)
    _, err1 = p1.communicate(timeout=120)
    assert p1.returncode == 128 + signal.SIGTERM, err1
    assert "interrupted by SIGTERM" in err1 and f"--resume {d}" in err1 and "Traceback" not in err1
    meta = _meta(d)
    k1 = len(meta["cells_done"])
    assert meta["complete"] is False and meta["interrupted"]["reason"] == "SIGTERM" and k1 == 1  # paused before its second
    assert not os.path.exists(os.path.join(d, store.LOCK_NAME))
    assert len(store.load_run(d).summary) == k1

    # 2. resume in a second process; while it holds the directory nobody else may write there
    p2 = _spawn(["--resume", d, "--quiet", "--no-plots"], str(tmp_path))
    lock = os.path.join(d, store.LOCK_NAME)
    _wait_for(lambda: store._lock_info(lock).get("pid") == p2.pid, p2, "the resumed run to take the lock")
    assert main(["run", "--resume", d]) == 2
    err = capsys.readouterr().err
    assert f"locked by optbench process {p2.pid}" in err and err.count("\n") == 1
    assert main(["run", *SUITE, "--out", d]) == 2
    assert "locked" in capsys.readouterr().err
    _wait_for(lambda: len(_meta(d)["cells_done"]) > k1, p2, "a cell finished by the resumed run")
    # 3. SIGKILL: no handler runs; the directory must still be a valid, incomplete run
    p2.kill()
    p2.communicate(timeout=60)
    k2 = len(_meta(d)["cells_done"])
    assert k2 == k1 + 1  # the resumed run was paused before its second cell
    run = store.load_run(d)
    assert run.meta["complete"] is False and len(run.summary) == k2
    assert os.path.exists(lock)  # left behind by the killed process, broken below since its owner is gone

    # 4. resume in this process: finishes the rest; equal to the run that was never interrupted
    assert main(["run", "--resume", d, "--quiet", "--no-plots"]) == 0
    meta = _meta(d)
    assert meta["complete"] is True and len(meta["cells_done"]) == 6 and "interrupted" not in meta
    assert [r["cells_before"] for r in meta["resumed"]][0] == k1
    assert not os.path.exists(lock) and _tmp_files(d) == []
    assert_same_convergence(uninterrupted, d)


def test_sigint_held_until_cell_committed_then_resume(tmp_path, monkeypatch, capsys, uninterrupted):
    """SIGINT arriving while a cell is being written waits for the commit, then stops the run."""
    d = str(tmp_path / "run")
    original = store.RunWriter.add_cell

    def add_then_interrupt(self, *a, **k):
        row = original(self, *a, **k)
        os.kill(os.getpid(), signal.SIGINT)  # delivered inside the critical section
        return row

    monkeypatch.setattr(store.RunWriter, "add_cell", add_then_interrupt)
    assert main(["run", *SUITE, "--out", d]) == 130
    assert "interrupted by SIGINT: 1 of 6 cells" in capsys.readouterr().err
    meta = _meta(d)
    assert meta["complete"] is False and len(meta["cells_done"]) == 1
    assert not os.path.exists(os.path.join(d, store.LOCK_NAME))
    monkeypatch.setattr(store.RunWriter, "add_cell", original)
    assert main(["run", "--resume", d, "--no-plots"]) == 0
    assert_same_convergence(uninterrupted, d)
    assert main(["run", "--resume", d, "--no-plots"]) == 0
    assert "already complete" in capsys.readouterr().err


def test_full_disk_keeps_finished_cells(tmp_path, monkeypatch, capsys, uninterrupted):
    d = str(tmp_path / "run")
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 6:  # meta, then 4 files per cell: the second cell's first file fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["run", *SUITE, "--out", d]) == 2
    err = capsys.readouterr().err
    assert "cannot write (No space left on device)" in err and err.count("\n") == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    run = store.load_run(d)
    assert len(run.summary) == 1 and run.meta["complete"] is False
    assert _tmp_files(d) == [] and not os.path.exists(os.path.join(d, store.LOCK_NAME))
    assert main(["run", "--resume", d, "--quiet", "--no-plots"]) == 0
    assert_same_convergence(uninterrupted, d)


@pytest.mark.parametrize("option, value, needle", [
    ("--starts", "5", "--starts 5 conflicts with the stored starts 4"),
    ("--max-iter", "1000", "--max-iter 1000 conflicts"),
    ("--seed", "0", "--seed 0 conflicts with the stored seeds [1]"),
    ("--dtype", "float32", "--dtype float32 conflicts"),
    ("--problems", "himmelblau", "--problems himmelblau conflicts"),
    ("--out", "elsewhere", "--out elsewhere conflicts"),
])
def test_resume_refuses_conflicting_settings(tmp_path, uninterrupted, capsys, option, value, needle):
    d = str(tmp_path / "copy")
    shutil.copytree(uninterrupted, d)
    meta = _meta(d)
    meta["complete"] = False
    store.atomic_write_text(os.path.join(d, "meta.json"), json.dumps(meta))
    before = sorted(os.listdir(d))
    assert main(["run", "--resume", d, option, value]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert sorted(os.listdir(d)) == before and _meta(d) == meta


def test_resume_accepts_repeated_settings(tmp_path, uninterrupted, capsys):
    d = str(tmp_path / "copy")
    _incomplete_copy(uninterrupted, d, keep=5)
    # the same settings spelled out again (a grid-free respelling of the optimizers included)
    assert main(["run", "--resume", d, "--starts", "4", "--seed", "1", "--optimizers", "bfgs,newton,gd-linesearch",
                 "--out", d, "--quiet", "--no-plots"]) == 0
    assert_same_convergence(uninterrupted, d)


def test_resume_without_plots_says_which_figures_are_stale(tmp_path, uninterrupted, capsys):
    """Figures and a report drawn from a partial run are kept, and a resume that adds cells
    without redrawing them says they predate it (they used to stay silently stale)."""
    d = str(tmp_path / "copy")
    _incomplete_copy(uninterrupted, d, keep=5)
    os.makedirs(os.path.join(d, "plots"))
    for name in ("plots/old.png", "report.html"):
        with open(os.path.join(d, name), "w") as fh:
            fh.write("drawn from 5 cells")
    capsys.readouterr()
    assert main(["run", "--resume", d, "--quiet", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"plots/ and report.html in {d} predate the cells this resume added" in err
    assert f"optbench plot {d} and optbench report {d}" in err
    for name in ("plots/old.png", "report.html"):  # kept, not deleted
        with open(os.path.join(d, name)) as fh:
            assert fh.read() == "drawn from 5 cells"
    # nothing to add: nothing is said
    assert main(["run", "--resume", d, "--quiet", "--no-plots"]) == 0
    assert "predate" not in capsys.readouterr().err


def test_resume_takes_respellings_of_the_stored_device_and_methods(tmp_path, uninterrupted, capsys, monkeypatch):
    """``--device cpu:0`` names the stored ``cpu`` on a one-device host, and ``newton`` spelled
    with its default parameter is the stored ``newton``; on a host of four CPU devices ``cpu:0``
    is not ``cpu`` (one device, not four) and is refused."""
    from bench import cmd_run
    d = str(tmp_path / "copy")
    meta = _incomplete_copy(uninterrupted, d, keep=5)
    saved = json.dumps(meta)

    class Dev:
        def __init__(self, platform, i):
            self.platform, self.id = platform, i
    real = cmd_run.resolve_devices
    monkeypatch.setattr(cmd_run, "resolve_devices",
                        lambda name: [Dev("cpu", 0)] if name == "cpu:0" else [Dev("cpu", i) for i in range(4)])
    assert main(["run", "--resume", d, "--device", "cpu:0", "--quiet", "--no-plots"]) == 2
    assert "--device cpu:0 conflicts with the stored device 'cpu'" in capsys.readouterr().err
    assert json.dumps(_meta(d)) == saved
    # a host with one CPU and one GPU: both number their device 0, and gpu is still not cpu
    monkeypatch.setattr(cmd_run, "resolve_devices",
                        lambda name: [Dev("gpu", 0)] if name.startswith("gpu") else [Dev("cpu", 0)])
    assert main(["run", "--resume", d, "--device", "gpu", "--quiet", "--no-plots"]) == 2
    assert "--device gpu conflicts with the stored device 'cpu'" in capsys.readouterr().err
    monkeypatch.setattr(cmd_run, "resolve_devices", real)   # and here, with no GPU at all: the same line
    assert main(["run", "--resume", d, "--device", "gpu", "--quiet", "--no-plots"]) == 2
    assert "--device gpu conflicts with the stored device 'cpu'" in capsys.readouterr().err
    assert json.dumps(_meta(d)) == saved
    tol = optimizers.describe("newton")["params"]
    key, default = next((k, v) for k, v in tol.items() if isinstance(v, float))
    assert main(["run", "--resume", d, "--device", "cpu:0", "--quiet", "--no-plots",
                 "--optimizers", f"gd-linesearch,bfgs,newton:{key}={default}"]) == 0
    assert_same_convergence(uninterrupted, d)


# -- the lock ------------------------------------------------------------------------------------

def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_writer_refused_while_first_holds_lock(tmp_path):
    d = str(tmp_path / "r")
    w = store.RunWriter(d, {"config": {}})
    for attempt in (lambda: store.RunWriter(d, {"config": {}}), lambda: store.RunWriter(d, resume=True)):
        with pytest.raises(OptbenchError, match=f"locked by optbench process {os.getpid()}"):
            attempt()
    w.release()
    assert not os.path.exists(os.path.join(d, store.LOCK_NAME))
    store.RunWriter(d, resume=True).release()


@pytest.mark.parametrize("content, stale", [
    (lambda pid: json.dumps({"pid": pid, "host": __import__("socket").gethostname()}), True),
    (lambda pid: str(pid), True),                                          # the older bare-pid format
    (lambda pid: json.dumps({"pid": pid, "host": "another-host.invalid"}), False),  # cannot judge: keep
    (lambda pid: json.dumps({"pid": os.getpid()}), False),                 # alive
    (lambda pid: "garbage", False),
])
def test_stale_lock_broken_only_when_owner_is_gone(tmp_path, content, stale):
    d = str(tmp_path / "r")
    store.RunWriter(d, {"config": {}}).release()
    with open(os.path.join(d, store.LOCK_NAME), "w") as fh:
        fh.write(content(_dead_pid()))
    if stale:
        store.RunWriter(d, resume=True).release()
    else:
        with pytest.raises(OptbenchError, match="locked by"):
            store.RunWriter(d, resume=True)


def test_directory_holding_only_a_stale_lock_counts_as_empty(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / store.LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": __import__("socket").gethostname()}))
    store.RunWriter(str(d), {"config": {}}).release()
    assert (d / "meta.json").exists()


# -- damaged files ---------------------------------------------------------------------------------

def _edit_text(rel, fn):
    def edit(d):
        p = os.path.join(d, rel)
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(fn(text))
    return edit


def _edit_meta(fn):
    return _edit_text("meta.json", lambda t: json.dumps(fn(json.loads(t))))


def _edit_summary(col, value):
    def fn(text):
        lines = text.splitlines()
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index(col)] = value
        return "\n".join([lines[0], ",".join(row)] + lines[2:]) + "\n"
    return _edit_text("summary.csv", fn)


def _trace_files(d):
    return sorted(os.path.join(d, "traces", n) for n in os.listdir(os.path.join(d, "traces")))


def _truncate_npz(d):
    p = _trace_files(d)[0]
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])


def _swap_npz(d):
    a, b = _trace_files(d)[:2]
    shutil.copyfile(b, a)


def _pickled_npz(d):
    p = _trace_files(d)[0]
    np.savez(p, trace_f=np.array([{"evil": 1}], dtype=object))  # only loadable by unpickling


DAMAGE = [
    ("meta.json", _edit_text("meta.json", lambda t: t[: len(t) // 2]), "corrupt or truncated JSON"),
    ("meta.json", _edit_text("meta.json", lambda t: "[1, 2]"), "expected a JSON object"),
    ("meta.json", _edit_meta(lambda m: dict(m, schema_version=99)), "unknown schema_version 99"),
    ("meta.json", _edit_meta(lambda m: dict(m, cells_done="all")), "'cells_done' must be a list"),
    ("meta.json", _edit_meta(lambda m: dict(m, complete="yes")), "'complete' must be true or false"),
    ("meta.json", lambda d: os.remove(os.path.join(d, "meta.json")), "not a run directory (no meta.json)"),
    ("summary.csv", lambda d: os.remove(os.path.join(d, "summary.csv")), "file is missing"),
    ("summary.csv", _edit_text("summary.csv", lambda t: t[: len(t) - 40]), "truncated"),
    ("summary.csv", _edit_text("summary.csv", lambda t: t.splitlines()[0] + "\n"), "lacks the cell"),
    ("summary.csv", _edit_text("summary.csv", lambda t: ""), "is empty"),
    ("summary.csv", _edit_text("summary.csv", lambda t: t.replace("nit_median", "nit_med", 1)),
     "header lacks column(s) nit_median"),
    ("summary.csv", _edit_summary("nit_median", "abc"), "column 'nit_median' holds 'abc', not a number"),
    ("summary.csv", _edit_summary("trace_file", "../../elsewhere.npz"), "is not under traces/"),
    ("summary.csv", _edit_text("summary.csv", lambda t: t.replace("\n", "\x00\n")), "summary.csv"),
    ("starts.csv", _edit_text("starts.csv", lambda t: "\n".join(t.splitlines()[:-1]) + "\n"),
     "has 3 start rows, summary.csv says 4"),
    (".npz", _truncate_npz, "unreadable trace file"),
    (".npz", lambda d: open(_trace_files(d)[0], "wb").write(b"not a zip"), "unreadable trace file"),
    (".npz", _swap_npz, "file swapped or edited"),
    (".npz", _pickled_npz, "unreadable trace file"),
]


@pytest.mark.parametrize("fname, damage, needle", DAMAGE)
def test_damaged_run_gives_one_line_naming_the_file(tmp_path, uninterrupted, capsys, fname, damage, needle):
    d = str(tmp_path / "copy")
    shutil.copytree(uninterrupted, d)
    damage(d)
    with pytest.raises(OptbenchError) as info:
        run = store.load_run(d)
        for r in run.summary:
            run.cell(r["problem"], r["optimizer"])
    msg = str(info.value)
    assert needle in msg and fname in msg and "\n" not in msg
    if fname != ".npz":  # the command line says the same in one line, exit 2
        assert main(["run", "--resume", d]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fname in err and "Traceback" not in err


def test_rows_of_an_uncommitted_cell_are_ignored(tmp_path, uninterrupted):
    """A writer killed after a cell's CSV rows but before meta.json: the cell does not exist yet."""
    d = str(tmp_path / "copy")
    shutil.copytree(uninterrupted, d)
    _edit_meta(lambda m: dict(m, cells_done=m["cells_done"][:-1], complete=False))(d)
    run = store.load_run(d)
    assert len(run.summary) == 5 and len(run.starts) == 20


@pytest.mark.parametrize("damage, needle", [
    (lambda t: t[: len(t) // 2], "corrupt or truncated JSON"),
    (lambda t: "", "corrupt or truncated JSON"),
    (lambda t: "[]", "expected a JSON object"),
    (lambda t: json.dumps(dict(json.loads(t), schema_version=99)), "schema_version 99"),
])
def test_damaged_baseline_gives_one_line_naming_the_file(tmp_path, uninterrupted, capsys, damage, needle):
    base = str(tmp_path / "baseline.json")
    assert main(["baseline", uninterrupted, "--out", base]) == 0
    text = open(base).read()
    assert main(["check", uninterrupted, "--baseline", base]) == 0  # intact: nothing regressed
    capsys.readouterr()
    open(base, "w").write(damage(text))
    assert main(["check", uninterrupted, "--baseline", base]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and base in err and needle in err and "Traceback" not in err
