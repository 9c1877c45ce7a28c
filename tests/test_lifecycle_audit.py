"""The life of a run directory, at its edges: a stale lock broken by two processes at once, another
command's temporary beside a resumed run, a writer killed before its first meta.json, a suite
nested too deeply to parse, a second signal while the first is being handled."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from bench import interrupt, store, suite
from bench.cli import main
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stale_lock(d):
    with open(os.path.join(d, store.LOCK_NAME), "w") as fh:
        fh.write(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))


def test_two_processes_breaking_one_stale_lock_never_both_hold_it(tmp_path, monkeypatch):
    """Both judge the dead owner's lock stale; the one that breaks it second must not remove the
    lock the first has just taken (the judgement is slowed down to make the race certain)."""
    d = str(tmp_path / "run")
    store.RunWriter(d, {"config": {}}).release()
    _stale_lock(d)
    real = store._lock_is_stale
    monkeypatch.setattr(store, "_lock_is_stale", lambda path: (real(path), time.sleep(0.3))[0])
    outcomes, writers = [], []

    def resume():
        try:
            writers.append(store.RunWriter(d, resume=True))
            outcomes.append("held")
        except OptbenchError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.release()
    assert outcomes.count("held") == 1, outcomes
    assert any("is locked by" in o for o in outcomes), outcomes
    assert not os.path.exists(os.path.join(d, store.LOCK_NAME))


def test_resume_keeps_the_temporary_of_a_live_writer(tmp_path):
    """Resuming removes what killed writers left, not the file another command is writing now
    (``optbench report`` writes ``.report.html.tmp<pid>`` into the run directory)."""
    d = str(tmp_path / "run")
    store.RunWriter(d, {"config": {}}).release()
    live = os.path.join(d, f".report.html.tmp{os.getppid()}")
    dead = os.path.join(d, f".summary.csv.tmp{_dead_pid()}")
    for p in (live, dead):
        with open(p, "w") as fh:
            fh.write("partial")
    store.RunWriter(d, resume=True).release()
    assert os.path.exists(live) and not os.path.exists(dead)


@pytest.mark.parametrize("lock_text", ["stale", ""])
def test_directory_of_a_writer_killed_before_its_first_meta_is_reusable(tmp_path, lock_text):
    """SIGKILL between creating the lock and committing meta.json leaves the lock (with or without
    its pid) and maybe meta's temporary: nothing was recorded, so the same --out starts afresh."""
    d = tmp_path / "run"
    d.mkdir()
    if lock_text:
        _stale_lock(str(d))
    else:
        (d / store.LOCK_NAME).write_text("")
    (d / f".meta.json.tmp{_dead_pid()}").write_text('{"half')
    w = store.RunWriter(str(d), {"config": {}})
    w.release()
    assert sorted(os.listdir(d)) == ["meta.json", "traces"]
    assert store.load_run(str(d)).meta["cells_done"] == []


def test_directory_with_a_live_owners_empty_lock_is_refused(tmp_path):
    """An empty lock whose owner is alive (it holds the file, and writes its pid next) is not free."""
    d = str(tmp_path / "run")
    w = store.RunWriter(d, {"config": {}})
    try:
        os.truncate(os.path.join(d, store.LOCK_NAME), 0)
        with pytest.raises(OptbenchError, match="is locked by"):
            store.RunWriter(d, resume=True)
    finally:
        w.release()


def test_suite_nested_too_deeply_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("problems = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(OptbenchError, match="nested too deeply"):
        suite.load(str(path))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optbench: error:") and "nested too deeply" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_second_signal_while_the_first_unwinds_does_not_replace_it():
    """A second SIGTERM/SIGINT arriving while the first Interrupted unwinds (through threading's
    lock ``finally`` blocks, the writer's cleanup) used to raise into that cleanup: a
    'release unlocked lock' RuntimeError, and a new run deleted as failed."""
    cleaned = False
    with interrupt.Guard():
        try:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                cleaned = True
        except interrupt.Interrupted as exc:
            caught = exc.signum
    assert cleaned and caught == signal.SIGINT


#: a run whose parallel compiles take 30 s each (stand-ins for XLA compiles, which cannot stop)
_SLOW_COMPILES = """
import time
from bench import suite
suite.Cell.precompile = lambda self, device=None: time.sleep(30)
from bench.cli import entry
entry()
"""


def test_second_interrupt_while_compiles_finish_quits_at_once_without_traceback(tmp_path):
    d = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=ROOT, OPTBENCH_CACHE_DIR="off")
    p = subprocess.Popen([sys.executable, "-c", _SLOW_COMPILES, "run", "--problems", "rosenbrock,himmelblau",
                          "--optimizers", "gd", "--starts", "2", "--max-iter", "5", "--repeats", "1", "--jobs", "2",
                          "--no-plots", "--quiet", "--out", d], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not os.path.exists(os.path.join(d, "meta.json")):   # the writer exists: compiles start
            assert p.poll() is None and time.time() - t0 < 120, p.communicate()[1][-2000:]
            time.sleep(0.05)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        lines = []
        for line in p.stderr:
            lines.append(line)
            if "interrupted by SIGINT" in line:
                break
        time.sleep(0.5)
        t1 = time.time()
        p.send_signal(signal.SIGINT)
        _, rest = p.communicate(timeout=25)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    err = "".join(lines) + rest
    assert time.time() - t1 < 10, err
    assert p.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    meta = json.load(open(os.path.join(d, "meta.json")))
    assert meta["complete"] is False and meta["interrupted"]["reason"] == "SIGINT"
    assert not os.path.exists(os.path.join(d, store.LOCK_NAME))
