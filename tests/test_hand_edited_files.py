"""Hand-edited baselines and run directories, and output paths onto a run's own files.

Every case is bad input: exit code 2 and one line naming the file and the fault — never an
internal error, never a check that passes over a regression because a baseline metric reads NaN,
and never a run destroyed by ``--out RUN/meta.json``. All tests share one tiny run
(``tiny_run`` in conftest: himmelblau × newton, four starts), copied before anything is edited.
"""
import json
import os
import shutil

import pytest

from bench import check, store
from bench.cli import main
from optbench_core import OptbenchError
from conftest import dir_snapshot


@pytest.fixture(scope="module")
def made(tiny_run, tmp_path_factory):
    """A copy of the tiny run and its baseline; tests edit copies of these, never these."""
    d = tmp_path_factory.mktemp("hand_edited")
    run = str(d / "run")
    shutil.copytree(tiny_run, run)
    base = str(d / "base.json")
    assert main(["baseline", run, "--out", base]) == 0
    return {"run": run, "base": base}


def _one_line_error(capsys, rc, code=2):
    """The command's stderr, after asserting the exit code and that it is one plain line."""
    captured = capsys.readouterr()
    err = captured.err
    assert rc == code, err
    assert err.startswith("optbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return err


def _baseline(made, tmp_path, edit, name="edited.json"):
    """A copy of the baseline changed by ``edit(doc)``; a returned string is the file's text."""
    with open(made["base"]) as fh:
        doc = json.load(fh)
    text = edit(doc)
    path = str(tmp_path / name)
    with open(path, "w") as fh:
        fh.write(text if isinstance(text, str) else json.dumps(doc))   # json.dumps writes NaN as NaN
    return path


def _metric(name, value):
    def edit(doc):
        for c in doc["cells"]:
            c["metrics"][name] = value
    return edit


def _setting(name, value):
    def edit(doc):
        doc["cells"][0]["settings"][name] = value
    return edit


_snapshot = dir_snapshot


# -- baseline values a run never produces ----------------------------------------------------------

@pytest.mark.parametrize("edit, needle", [
    (_metric("nit_median", float("nan")), "metric nit_median must be a finite number >= 0, got nan"),
    (_metric("nit_median", "nan"), "metric nit_median must be a finite number >= 0, got nan"),
    (_metric("nfev_p90", "inf"), "metric nfev_p90 must be a finite number >= 0, got inf"),
    (_metric("nhev_median", -1), "metric nhev_median must be a finite number >= 0"),
    (_metric("success_rate", -5), "metric success_rate must be a fraction between 0 and 1, got -5"),
    (_metric("success_rate", "inf"), "metric success_rate must be a fraction between 0 and 1, got inf"),
    (_metric("success_rate", 1.5), "metric success_rate must be a fraction between 0 and 1"),
    (_metric("log10_subopt_median", "nan"), "metric log10_subopt_median must be a finite number, \"inf\" or null"),
    (_metric("run_s", -1.0), "metric run_s must be a finite number >= 0 or null"),
    (lambda d: d["cells"][0].update(run_s_all=["nan"]), "run_s_all must hold finite times >= 0"),
    (lambda d: d.update(schema_version=True), "unknown baseline schema_version True"),
    (lambda d: d.update(schema_version=1.0), "unknown baseline schema_version 1.0"),
], ids=["nit-NaN", "nit-nan-string", "nfev-inf", "negative-count", "success--5", "success-inf", "success-1.5",
        "subopt-nan", "run_s-negative", "run_s_all-nan", "version-true", "version-1.0"])
def test_baseline_metric_out_of_range_is_bad_input(made, tmp_path, capsys, edit, needle):
    path = _baseline(made, tmp_path, edit)
    err = _one_line_error(capsys, main(["check", made["run"], "--baseline", path]))
    assert path in err and needle in err


def test_nan_baseline_metric_cannot_hide_a_regression(made, tmp_path, capsys):
    # a baseline that says one iteration fails against the run's real count ...
    low = _baseline(made, tmp_path, _metric("nit_median", 1), "low.json")
    assert main(["check", made["run"], "--baseline", low]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    # ... and one that says NaN must not pass (compare() takes NaN as "not comparable")
    nan = _baseline(made, tmp_path, _metric("nit_median", float("nan")), "nan.json")
    assert "nit_median" in _one_line_error(capsys, main(["check", made["run"], "--baseline", nan]))


# -- baseline fields of the wrong type -------------------------------------------------------------

@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(source="abc"), "'source' must be an object, got 'abc'"),
    (lambda d: d.update(source=[1, 2]), "'source' must be an object, got [1, 2]"),
    (lambda d: d["source"].update(versions="abc"), "source: 'versions' must be an object"),
    (lambda d: d["source"].update(git_commit=12345), "source: 'git_commit' must be a string, got 12345"),
    (lambda d: d.update(settings="abc"), "'settings' must be an object"),
    (_setting("max_iter", "x"), "setting 'max_iter' must be an integer >= 1, got 'x'"),
    (_setting("max_iter", 200.5), "setting 'max_iter' must be an integer >= 1, got 200.5"),
    (_setting("starts", float("nan")), "setting 'starts' must be an integer >= 1, got nan"),
    (_setting("seeds", "abc"), "setting 'seeds' must be an integer >= 0 or a non-empty list of them, got 'abc'"),
    (_setting("seeds", [[0]]), "setting 'seeds' must be an integer >= 0 or a non-empty list of them, got [[0]]"),
    (_setting("seeds", [True]), "setting 'seeds' must be an integer >= 0"),
    (_setting("gtol", "x"), "setting 'gtol' must be a finite number >= 0, got 'x'"),
    (_setting("dtype", 64), "setting 'dtype' must be one of float64, float32, got 64"),
    (lambda d: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (lambda d: '{"kind": "optbench-baseline", "schema_version": ' + "9" * 5000 + "}", "unreadable JSON"),
], ids=["source-str", "source-list", "versions-str", "commit-int", "settings-str", "max_iter-str",
        "max_iter-float", "starts-nan", "seeds-str", "seeds-nested", "seeds-bool", "gtol-str", "dtype-int",
        "deep", "huge-int"])
def test_hand_edited_baseline_is_one_line(made, tmp_path, capsys, edit, needle):
    path = _baseline(made, tmp_path, edit)
    err = _one_line_error(capsys, main(["check", made["run"], "--baseline", path]))
    assert path in err and needle in err
    assert len(err) < 400   # a bad value is quoted, not pasted whole


def test_null_provenance_is_not_recorded_not_a_crash(made, tmp_path, capsys):
    """A run whose meta.json lacks versions writes "versions": null into its baseline; the
    reports must read that as unknown."""
    path = _baseline(made, tmp_path, lambda d: d.update(source=dict(d["source"], versions=None, git_commit=None)))
    assert main(["check", made["run"], "--baseline", path, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "commit unknown" in out and "jax None in the baseline" in out


def test_nan_in_free_form_provenance_still_gives_strict_json(made, tmp_path, capsys):
    path = _baseline(made, tmp_path, lambda d: d["source"].update(cpu_threads=float("nan")))
    assert main(["check", made["run"], "--baseline", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert data["verdict"] == "pass" and data["baseline"]["cpu_threads"] == "nan"


# -- hand-edited meta.json of a run ----------------------------------------------------------------

def _meta_edit(fn):
    def edit(run):
        path = os.path.join(run, "meta.json")
        with open(path) as fh:
            meta = json.load(fh)
        text = fn(meta)
        with open(path, "w") as fh:
            fh.write(text if isinstance(text, str) else json.dumps(meta))
    return edit


def _config(**kw):
    def fn(meta):
        meta["config"].update(kw)
        for c in meta["config"]["cells"]:   # each cell records the settings too: drop them, or they win
            for k in kw:
                c.pop(k, None)
    return _meta_edit(fn)


@pytest.mark.parametrize("edit, needle", [
    (_config(max_iter="x"), "config: setting 'max_iter' must be an integer >= 1, got 'x'"),
    (_config(starts=float("nan")), "config: setting 'starts' must be an integer >= 1, got nan"),
    (_config(seeds="x"), "config: setting 'seeds' must be an integer >= 0 or a non-empty list of them, got 'x'"),
    (_config(gtol=[1e-8]), "config: setting 'gtol' must be a finite number >= 0"),
    (_config(dtype="float16"), "config: setting 'dtype' must be one of float64, float32"),
    (_meta_edit(lambda m: m["config"]["cells"][0].update(max_iter="x")), "config cells[1]: setting 'max_iter'"),
    (_meta_edit(lambda m: m["config"]["cells"][0].update(problem=["himmelblau"])),
     "config cells[1]: problem and optimizer must be strings"),
    (_meta_edit(lambda m: m["config"].update(cells=5)), "config 'cells' must be a list, got 5"),
    (_meta_edit(lambda m: m.update(versions="x")), "'versions' must be an object, got 'x'"),
    (_meta_edit(lambda m: m.update(git_commit=5)), "'git_commit' must be a string, got 5"),
    (_meta_edit(lambda m: m.update(schema_version=True)), "unknown schema_version True"),
    (_meta_edit(lambda m: m.update(kind="optbench-baseline")), 'not a run\'s meta.json (it has "kind": '
                                                                '"optbench-baseline"'),
    (_meta_edit(lambda m: m.pop("cells_done") and None), "not a run's meta.json (lacks 'cells_done')"),
    (_meta_edit(lambda m: "[" * 100_000 + "]" * 100_000), "nested too deeply"),
], ids=["max_iter-str", "starts-nan", "seeds-str", "gtol-list", "dtype-float16", "cell-max_iter",
        "cell-problem-list", "cells-int", "versions-str", "commit-int", "version-true", "kind-baseline",
        "no-cells_done", "deep"])
def test_hand_edited_meta_json_is_one_line(made, tmp_path, capsys, edit, needle):
    run = str(tmp_path / "run")
    shutil.copytree(made["run"], run)
    edit(run)
    out = str(tmp_path / "b.json")
    err = _one_line_error(capsys, main(["baseline", run, "--out", out]))
    assert os.path.join(run, "meta.json") in err and needle in err
    assert not os.path.exists(out)
    err = _one_line_error(capsys, main(["check", run, "--baseline", made["base"]]))
    assert os.path.join(run, "meta.json") in err and needle in err


def test_baseline_copied_over_meta_json_is_not_a_run(made, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(made["run"], run)
    shutil.copyfile(made["base"], os.path.join(run, "meta.json"))
    with pytest.raises(OptbenchError, match="meta.json: not a run's meta.json .*optbench-baseline"):
        store.load_meta(run)
    # without its kind it still lacks what every run's meta.json holds
    _meta_edit(lambda m: m.pop("kind") and None)(run)
    with pytest.raises(OptbenchError, match="lacks 'complete', 'cells_done'"):
        store.load_meta(run)


# -- output paths onto the run's own files -----------------------------------------------------------

def _targets(run):
    trace = os.path.join("traces", sorted(os.listdir(os.path.join(run, "traces")))[0])
    return ["meta.json", "summary.csv", "starts.csv", trace, os.path.join("traces", "new.json"),
            os.path.join("traces", "..", "meta.json"), "traces"]


@pytest.mark.parametrize("command", ["baseline", "check"])
def test_out_onto_the_runs_files_is_refused_and_the_run_kept(made, tmp_path, capsys, command):
    run = str(tmp_path / "run")
    shutil.copytree(made["run"], run)
    before = _snapshot(run)
    link = str(tmp_path / "link.json")
    os.symlink(os.path.join(run, "meta.json"), link)
    hard = str(tmp_path / "hard.csv")
    os.link(os.path.join(run, "summary.csv"), hard)
    extra = [] if command == "baseline" else ["--baseline", made["base"]]
    for target in [os.path.join(run, t) for t in _targets(run)] + [link, hard]:
        err = _one_line_error(capsys, main([command, run, *extra, "--out", target]))
        assert target in err and "would overwrite the data of the run" in err
        assert _snapshot(run) == before, target
    # a file beside the run's data is fine
    assert main([command, run, *extra, "--out", os.path.join(run, "mine.json")]) == 0
    capsys.readouterr()


def test_report_out_onto_the_runs_files_is_refused_and_the_run_kept(made, tmp_path, capsys):
    """`optbench report RUN --out RUN/summary.csv` replaced the run's summary with HTML."""
    run = str(tmp_path / "run")
    shutil.copytree(made["run"], run)
    before = _snapshot(run)
    for target in ("summary.csv", "meta.json", "starts.csv"):
        err = _one_line_error(capsys, main(["report", run, "--out", os.path.join(run, target)]))
        assert "would overwrite the data of the run" in err
        assert _snapshot(run) == before, target


def test_write_baseline_from_python_refuses_the_runs_files(made, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(made["run"], run)
    before = _snapshot(run)
    with pytest.raises(OptbenchError, match="would overwrite the data of the run"):
        check.write_baseline(run, os.path.join(run, "meta.json"))
    assert _snapshot(run) == before


def test_check_out_onto_its_baseline_is_refused(made, tmp_path, capsys):
    base = str(tmp_path / "copy.json")
    shutil.copyfile(made["base"], base)
    with open(base, "rb") as fh:
        before = fh.read()
    err = _one_line_error(capsys, main(["check", made["run"], "--baseline", base, "--out", base]))
    assert "is the baseline file itself" in err
    with open(base, "rb") as fh:
        assert fh.read() == before


def test_check_out_creates_parent_directories_like_baseline(made, tmp_path, capsys):
    report = str(tmp_path / "new" / "deeper" / "check.md")
    assert main(["check", made["run"], "--baseline", made["base"], "--format", "markdown", "--out", report]) == 0
    assert "PASS" in capsys.readouterr().out
    with open(report) as fh:
        assert fh.read().startswith("### optbench check")
    again = str(tmp_path / "other" / "sub" / "base.json")
    assert main(["baseline", made["run"], "--out", again]) == 0
    assert os.path.isfile(again)
    capsys.readouterr()
