"""The terminal side of a run: progress bar only on a TTY, --json and --quiet for scripts, and the
summary as an aligned table."""
import functools
import io
import json
import os

import pytest

from bench import cmd_run, progress
from bench.cli import main


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_cell_and_phase_on_a_tty():
    tty = FakeTTY()
    with progress.Progress(3, stream=tty, delay_s=0.0, interval_s=60.0) as bar:
        bar.cell(1, "rosenbrock × bfgs")
        bar.phase("compile")
        bar.cell(2, "rosenbrock × newton")
        bar.phase("run")
    text = tty.getvalue()
    assert "\r[1/3] " in text and "rosenbrock × bfgs" in text and "compile" in text
    assert "\r[2/3] " in text and "rosenbrock × newton" in text
    # one cell of three done: a third of the bar filled
    line2 = [seg for seg in text.split("\r") if seg.startswith("[2/3]")][-1]
    assert "######" in line2 and "#######-" not in line2.replace("######-", "")
    # closing erases the line so what follows starts at column 0
    assert text.endswith("\r") and text.rsplit("\r", 2)[-2].strip() == ""


def test_progress_silent_when_not_a_tty_or_short():
    pipe = io.StringIO()
    with progress.Progress(2, stream=pipe, delay_s=0.0) as bar:
        bar.cell(1, "a × b")
        bar.phase("run")
    assert pipe.getvalue() == ""
    tty = FakeTTY()
    with progress.Progress(2, stream=tty, delay_s=30.0) as bar:   # a run shorter than the delay
        bar.cell(1, "a × b")
    assert tty.getvalue() == ""


def test_progress_line_fits_the_terminal(monkeypatch):
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((50, 20)))
    bar = progress.Progress(12, stream=FakeTTY(), delay_s=0.0)
    bar.cell(7, "quadratic:dim=10000:cond=1000000 × optax:adam:learning_rate=0.001")
    bar.phase("compile")
    line = bar.line()
    assert len(line) <= 49 and line.startswith("[7/12] ") and "…" in line and "compile" in line


def test_run_shows_progress_on_a_tty(monkeypatch, tmp_path, capsys):
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setattr(cmd_run, "Progress", functools.partial(progress.Progress, delay_s=0.0))
    out = str(tmp_path / "r")
    rc = main(["run", "--problems", "himmelblau", "--optimizers", "newton", "--starts", "4", "--max-iter", "200",
               "--repeats", "1", "--out", out, "--no-plots"])
    assert rc == 0
    err = tty.getvalue()
    assert "[1/1] " in err and "himmelblau × newton" in err and ("compile" in err or "run" in err)
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].split()[:3] == ["problem", "optimizer", "solved"]
    assert stdout.strip().endswith(f"run directory: {out}")
    # --quiet: only the run directory; --json: only JSON; neither draws a bar
    tty.truncate(0)
    tty.seek(0)
    for flag in ("--quiet", "--json"):
        out2 = str(tmp_path / flag.strip("-"))
        assert main(["run", "--problems", "himmelblau", "--optimizers", "newton", "--starts", "4", "--max-iter", "200",
                     "--repeats", "1", "--out", out2, "--no-plots", flag]) == 0
        stdout = capsys.readouterr().out
        if flag == "--quiet":
            assert stdout == f"run directory: {out2}\n"
        else:
            doc = json.loads(stdout)
            assert doc["run_dir"] == out2 and doc["summary"][0]["optimizer"] == "newton"
            assert doc["summary"][0]["success_rate"] == 1.0
    assert "[1/1]" not in tty.getvalue()


def test_summary_table_is_aligned():
    rows = [{"problem": "rosenbrock", "optimizer": "bfgs", "success_rate": 1.0, "nit_median": 24.5,
             "nfev_median": 35.5, "njev_median": 35.5, "nhev_median": 0, "nhvp_median": 0, "subopt_median": 6.7e-21,
             "compile_s": 1.7, "run_s": 0.0052},
            {"problem": "quadratic:dim=10:cond=1000", "optimizer": "scipy:least_squares:method=lm",
             "success_rate": 0.4, "nit_median": 1000, "nfev_median": 12001, "njev_median": 1000, "nhev_median": 0,
             "nhvp_median": 0, "subopt_median": None, "compile_s": 0.3, "run_s": 1.25}]
    lines = cmd_run.format_table(rows).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[3].startswith("quadratic:dim=10:cond=1000  scipy:least_squares:method=lm")
    assert " 40% " in lines[3] and " - " in lines[3] and lines[3].endswith("1250.00")
    # numbers are right-aligned under their headers
    head = lines[0]
    assert head.index("run_ms") + len("run_ms") == len(head)


def test_json_is_strict(tmp_path, capsys):
    """NaN and inf are not JSON: a diverged cell's non-finite medians come out as null."""
    out = str(tmp_path / "r")
    assert main(["run", "--problems", "himmelblau", "--optimizers", "gd:lr=10", "--starts", "2", "--max-iter", "50",
                 "--repeats", "1", "--out", out, "--no-plots", "--json"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    row = doc["summary"][0]
    assert row["statuses"] == "diverged=2" and row["success_rate"] == 0.0
    assert row["f_final_median"] is None
