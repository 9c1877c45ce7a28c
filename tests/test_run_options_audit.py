"""`optbench run`'s options and terminal output, checked against what the run writes: every
setting reaches every cell (meta.json, starts.csv, the traces), --jobs does not change results,
--json/--quiet print what the README says also when there is nothing left to run, exit codes
(2 bad input, 1 internal error, 143 for SIGTERM), no control characters on a pipe, and the
progress bar never runs backwards. One tiny run (2 problems × 3 optimizers, 3 starts, 50
iterations) is shared; the other runs repeat its shapes, so they compile nothing new."""
import csv
import io
import json
import os
import signal
import sys

import numpy as np
import pytest

import problems
from bench import cmd_run, plots, progress, report, store
from bench import suite as _suite
from bench.cli import main

PROBLEMS, OPTIMIZERS = "rosenbrock,himmelblau", "gd,newton,bfgs"
STARTS, SEED, MAX_ITER, GTOL = 3, 5, 50, 1e-6
#: the settings every run here shares (same shapes: one compile per cell for the whole file)
SETTINGS = ["--problems", PROBLEMS, "--optimizers", OPTIMIZERS, "--starts", str(STARTS), "--seed", str(SEED),
            "--max-iter", str(MAX_ITER), "--gtol", str(GTOL), "--no-plots"]
#: summary columns that are measured times, the only ones allowed to differ between two runs
TIMES = ("compile_s", "run_s")


def _rows(path, name):
    with open(os.path.join(path, name), newline="") as fh:
        return list(csv.DictReader(fh))


def _meta(path):
    with open(os.path.join(path, "meta.json")) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The run with every setting given, through --json, and what it printed."""
    base = tmp_path_factory.mktemp("options")
    out = str(base / "run")
    argv = ["run", *SETTINGS, "--repeats", "2", "--jobs", "2", "--out", out, "--json"]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        rc = main(argv)
    finally:
        sys.stdout, sys.stderr = saved
    assert rc == 0, stderr.getvalue()
    return {"out": out, "argv": argv, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "base": base}


# -- every setting reaches every cell ------------------------------------------------------------
def test_every_setting_reaches_every_cell(shared):
    out = shared["out"]
    meta = _meta(out)
    cells = meta["config"]["cells"]
    assert [(c["problem"], c["optimizer"]) for c in cells] == [
        (p, o) for p in PROBLEMS.split(",") for o in OPTIMIZERS.split(",")]
    for c in cells:
        assert (c["starts"], c["seeds"], c["max_iter"], c["gtol"], c["dtype"], c["repeats"], c["pack"]) == \
            (STARTS, [SEED], MAX_ITER, GTOL, "float64", 2, False), c
    assert meta["config"]["device"] == "cpu" and meta["complete"] is True and meta["dtype"] == "float64"
    starts = _rows(out, "starts.csv")
    assert len(starts) == 6 * STARTS
    for r in starts:
        nit, gnorm = int(r["nit"]), float(r["grad_norm_final"])
        assert 0 <= nit <= MAX_ITER
        if r["status"] == "converged":
            assert gnorm <= GTOL, r          # the given gtol, not the default 1e-8 ...
        if r["status"] == "max_iter":
            assert nit == MAX_ITER, r        # ... and the given budget, not the default 1000
    # gradient descent at its default step does not reach 1e-6 in 50 iterations from any start:
    # every one of its starts ran out of the budget exactly
    gd = [r for r in starts if r["optimizer"] == "gd"]
    assert {r["status"] for r in gd} == {"max_iter"} and {r["nit"] for r in gd} == {str(MAX_ITER)}
    # Newton converges on both from these starts, at some start with a gradient above the
    # default 1e-8: the run stopped at the given, looser gtol
    newton = [r for r in starts if r["optimizer"] == "newton"]
    assert {r["status"] for r in newton} == {"converged"}
    assert max(float(r["grad_norm_final"]) for r in newton) > 1e-8
    run = store.load_run(out)
    for name in PROBLEMS.split(","):
        # the starts are the problem's x0 and its draws from --seed 5, the same for every optimizer
        want = problems.get(name).random_starts(STARTS, SEED)
        assert not np.array_equal(want, problems.get(name).random_starts(STARTS, 0))
        for opt in OPTIMIZERS.split(","):
            cell = run.cell(name, opt)
            np.testing.assert_array_equal(cell["x0"], want)
            assert cell["trace_f"].shape == (STARTS, MAX_ITER + 1)


#: Himmelblau's four minima (f = 0): (3, 2) exactly, the others to the digits given
HIMMELBLAU_MINIMA = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])


def test_converged_ends_are_the_known_minima(shared):
    """Independent of the driver's own test: a start counted as converged ends at a minimum the
    closed form gives (rosenbrock's (1, 1), one of himmelblau's four), and each cell was timed
    --repeats times."""
    run = store.load_run(shared["out"])
    for opt in ("newton", "bfgs"):
        cell = run.cell("rosenbrock", opt)
        conv = cell["status"] == "converged"
        assert conv.any()
        np.testing.assert_allclose(cell["x"][conv], 1.0, atol=1e-4)
        assert np.all(cell["fun"][conv] < 1e-10)
        cell = run.cell("himmelblau", opt)
        conv = cell["status"] == "converged"
        assert conv.any()
        for x in cell["x"][conv]:
            assert np.min(np.max(np.abs(HIMMELBLAU_MINIMA - x), axis=1)) < 1e-5, x
        assert np.all(cell["fun"][conv] < 1e-10)
    for row in run.summary:
        assert len(run.cell(row["problem"], row["optimizer"])["run_s_all"]) == 2


# -- --json ---------------------------------------------------------------------------------------
def test_json_is_the_document_alone_and_equals_summary_csv(shared):
    doc = json.loads(shared["stdout"])                      # the whole of stdout is one document
    assert list(doc) == ["run_dir", "suite", "summary"]
    assert doc["run_dir"] == shared["out"] and doc["suite"] == "default"
    csv_rows = _rows(shared["out"], "summary.csv")
    assert len(doc["summary"]) == len(csv_rows) == 6
    for row, want in zip(doc["summary"], csv_rows):
        assert list(row) == list(want) == list(store.SUMMARY_COLUMNS)
        for k, v in want.items():
            got = row[k]
            if isinstance(got, str):
                assert got == v, k
            else:
                assert got == pytest.approx(float(v), rel=0, abs=0), k
    assert "\r" not in shared["stderr"] and "\x1b" not in shared["stderr"]


# -- --jobs and --pack do not change what is computed ---------------------------------------------
@pytest.mark.parametrize("extra", [["--jobs", "1"], ["--jobs", "3", "--pack"]], ids=["jobs1", "jobs3-pack"])
def test_jobs_and_pack_give_the_same_results(shared, tmp_path, capsys, extra):
    out = str(tmp_path / "again")
    assert main(["run", *SETTINGS, "--repeats", "2", *extra, "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert _rows(out, "starts.csv") == _rows(shared["out"], "starts.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMES} for r in rows]   # noqa: E731
    assert strip(_rows(out, "summary.csv")) == strip(_rows(shared["out"], "summary.csv"))
    a, b = store.load_run(out), store.load_run(shared["out"])
    for row in a.summary:
        ca, cb = a.cell(row["problem"], row["optimizer"]), b.cell(row["problem"], row["optimizer"])
        np.testing.assert_array_equal(ca["trace_f"], cb["trace_f"])
        np.testing.assert_array_equal(ca["nit"], cb["nit"])


# -- provenance -----------------------------------------------------------------------------------
def test_meta_records_the_arguments_main_was_given(shared):
    """main(argv) from Python recorded the host process's sys.argv (here pytest's) as the run's
    command and argv."""
    meta = _meta(shared["out"])
    assert meta["argv"] == shared["argv"]
    assert meta["command"] == "optbench " + " ".join(shared["argv"])


# -- --resume of a run with nothing left ----------------------------------------------------------
def test_resume_of_a_complete_run_prints_what_the_flags_promise(shared, capsys):
    """It printed only a note on stderr: --json gave an empty stdout (json.loads failed), --quiet
    not the promised `run directory: DIR` line."""
    out = shared["out"]
    before = {n: open(os.path.join(out, n), "rb").read() for n in ("meta.json", "summary.csv", "starts.csv")}
    assert main(["run", "--resume", out, "--json"]) == 0
    cap = capsys.readouterr()
    assert "already complete" in cap.err
    assert json.loads(cap.out) == json.loads(shared["stdout"])
    assert main(["run", "--resume", out, "--quiet"]) == 0
    assert capsys.readouterr().out == f"run directory: {out}\n"
    assert main(["run", "--resume", out]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["problem", "optimizer", "solved"]
    assert len(text.splitlines()) == 2 + 6 + 2 and text.endswith(f"run directory: {out}\n")
    # nothing was rewritten
    assert before == {n: open(os.path.join(out, n), "rb").read() for n in before}


# -- exit codes -----------------------------------------------------------------------------------
def test_sigterm_while_the_report_is_written_exits_143(tmp_path, capsys, monkeypatch):
    """A SIGTERM after the last cell (while the report is written) exited 130, Ctrl-C's code,
    saying only `optbench: interrupted`."""
    monkeypatch.setattr(plots, "plot_run_index", lambda run, **k: {})   # no drawing: the report is next

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(report, "write_report", terminated)
    out = str(tmp_path / "r")
    argv = ["run", "--problems", "himmelblau", "--optimizers", "newton", "--starts", str(STARTS),
            "--max-iter", str(MAX_ITER), "--gtol", str(GTOL), "--seed", str(SEED), "--repeats", "1", "--out", out]
    assert main(argv) == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted by SIGTERM" in err and f"optbench report {out}" in err
    meta = _meta(out)
    assert meta["complete"] is True and not os.path.exists(os.path.join(out, store.LOCK_NAME))


def test_cli_reports_the_signal_of_an_interrupt_it_did_not_handle(monkeypatch, capsys):
    from bench import interrupt

    def boom(args):
        raise interrupt.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(cmd_run, "run", boom)
    assert main(["run"]) == 143
    assert capsys.readouterr().err == "optbench: interrupted by SIGTERM\n"

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_run, "run", ctrl_c)
    assert main(["run"]) == 130
    assert capsys.readouterr().err == "optbench: interrupted\n"


def test_internal_error_mid_run_exits_1_and_keeps_finished_cells(shared, tmp_path, capsys, monkeypatch):
    original, calls = _suite.Cell.run, []

    def second_fails(self, *a, **k):
        calls.append(self.key)
        if len(calls) == 2:
            raise RuntimeError("solver blew up\nsecond line")
        return original(self, *a, **k)

    monkeypatch.setattr(_suite.Cell, "run", second_fails)
    out = str(tmp_path / "r")
    assert main(["run", *SETTINGS, "--repeats", "2", "--out", out]) == 1
    err = capsys.readouterr().err
    # the line names what is kept and how to finish, as an optbench error's does
    assert err == (f"optbench: internal error: RuntimeError: solver blew up — 1 of 6 cells are kept in {out} "
                   f"(incomplete); finish with: optbench run --resume {out} (rerun with --debug for the traceback)\n")
    meta = _meta(out)
    assert meta["complete"] is False and meta["cells_done"] == [["rosenbrock", "gd"]]
    assert not os.path.exists(os.path.join(out, store.LOCK_NAME))
    monkeypatch.setattr(_suite.Cell, "run", original)
    assert main(["run", "--resume", out, "--quiet"]) == 0
    capsys.readouterr()
    assert _rows(out, "starts.csv") == _rows(shared["out"], "starts.csv")


@pytest.mark.parametrize("argv, needle", [
    (["", "--problems", "himmelblau"], "SUITE needs a suite file or shipped suite name, got an empty string"),
    (["--problems", "himmelblau", "--device", ""], "--device needs cpu, gpu, cpu:N or gpu:N, got an empty string"),
    (["--problems", "himmelblau", "--device", " "], "--device needs"),
    (["--quiet", "--json"], "argument --json: not allowed with argument --quiet"),
    (["--jobs", "-2"], "--jobs must be at least 1, got -2"),
    (["--seed", "4294967296"], "--seed must be at most 4294967295"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--max-iter", "-5"], "--max-iter must be at least 1"),
    (["--device", "cpu:7"], "device 'cpu:7' does not exist"),
], ids=["empty-suite", "empty-device", "blank-device", "quiet-json", "negative-jobs", "seed-2^32", "seed-negative",
        "max-iter-negative", "missing-device"])
def test_refused_in_one_line_exit_2_nothing_written(tmp_path, capsys, argv, needle):
    """An empty SUITE ran the default suite, an empty --device the suite's device (silently)."""
    out = str(tmp_path / "never")
    assert main(["run", *argv, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optbench: error: ") and err.count("\n") == 1 and needle in err, err
    assert not os.path.exists(out)


def test_help_after_the_command_returns_0(capsys):
    """main(["run", "--help"]) raised SystemExit out of main instead of returning 0."""
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--starts", "--seed", "--max-iter", "--gtol", "--dtype", "--device", "--repeats", "--pack",
                   "--out", "--resume", "--no-plots", "--no-report", "--jobs", "--quiet", "--json", "--plugin"):
        assert option in text
    assert "cpu:N" in text   # --device takes what the README lists


# -- the terminal ---------------------------------------------------------------------------------
class _Recorder(progress.Progress):
    """A progress bar on a fake terminal that records every (index, label) it is moved to."""

    moves: list = []

    def __init__(self, total, enabled=None, stream=None, **k):
        class TTY(io.StringIO):
            def isatty(self):
                return True
        super().__init__(total, enabled=enabled, stream=TTY(), delay_s=0.0, interval_s=60.0)

    def cell(self, index, label):
        _Recorder.moves.append((index, label))
        super().cell(index, label)


def test_progress_never_goes_back_between_compile_windows(shared, tmp_path, capsys, monkeypatch):
    """Cells compile ahead in windows of COMPILED_MAX // 2; each later window set the bar back to
    [0/N] and an empty bar while it compiled."""
    monkeypatch.setattr(sys.modules["bench.solve"], "COMPILED_MAX", 6)   # windows of 3 of the 6 cells
    monkeypatch.setattr(cmd_run, "Progress", _Recorder)
    _Recorder.moves = []
    out = str(tmp_path / "r")
    assert main(["run", *SETTINGS, "--repeats", "2", "--jobs", "2", "--out", out]) == 0
    capsys.readouterr()
    indices = [i for i, _ in _Recorder.moves]
    assert indices == sorted(indices) and indices[0] >= 1, _Recorder.moves
    compiling = [(i, label) for i, label in _Recorder.moves if label.startswith("compiling")]
    assert compiling == [(1, "compiling 3 cells, 2 at a time"), (4, "compiling 3 cells, 2 at a time")]


def test_piped_stderr_gets_no_control_characters(shared, tmp_path, capsys, monkeypatch):
    """On a pipe the bar stays silent even with no start-up delay; stdout is the plain table."""
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(cmd_run, "Progress", lambda total, **k: progress.Progress(total, delay_s=0.0, **k))
    out = str(tmp_path / "r")
    assert main(["run", *SETTINGS, "--repeats", "2", "--out", out]) == 0
    stdout = capsys.readouterr().out
    assert pipe.getvalue() == ""
    assert not any(ch in stdout for ch in "\r\x1b\b"), repr(stdout)
    lines = stdout.splitlines()
    assert len(lines) == 2 + 6 + 2 and lines[-1] == f"run directory: {out}"
    assert len({len(line) for line in lines[:8]}) == 1   # aligned


@pytest.mark.skipif(sys.platform == "win32", reason="uses a pseudo-terminal")
def test_bar_fits_the_terminal_it_draws_on_when_stdout_is_redirected(monkeypatch):
    """`optbench run > out.txt` on a 50-column terminal: the bar measured stdout (a file, so 80
    columns by shutil's fallback), drew 79-column lines on stderr's 50 columns, and each redraw
    wrapped onto a new line."""
    import fcntl
    import pty
    import struct
    import termios
    monkeypatch.delenv("COLUMNS", raising=False)
    # stdout is a file: shutil's answer is its fallback
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size(fallback))
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
        with os.fdopen(os.dup(slave), "w") as tty:
            assert tty.isatty()
            with progress.Progress(4, stream=tty, delay_s=0.0, interval_s=60.0) as bar:
                bar.cell(2, "quadratic:dim=10000:cond=1000000 × optax:adam:learning_rate=0.001")
                bar.phase("compile")
                assert len(bar.line()) <= 49 and "…" in bar.line()
        os.set_blocking(master, False)
        drawn = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    segments = [seg for seg in drawn.replace("\n", "\r").split("\r") if seg]
    assert segments and all(len(seg) <= 49 for seg in segments), segments
