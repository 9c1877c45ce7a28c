"""Audit of the CI regression gate (optbench baseline / check / compare) on hand-written run
directories and baselines: no solver runs, so every case is a few milliseconds.

Each test states the rule from the README ("Regression checks in CI") it holds the gate to; the
expected verdicts are worked out by hand from the numbers written here.
"""
import io
import json
import os

import numpy as np
import pytest

from bench import check, store
from bench.cli import main
from optbench_core import OptbenchError

SETTINGS = {"dtype": "float64", "starts": 5, "seeds": [0], "max_iter": 100, "gtol": 1e-8}


def _cell(problem="p", optimizer="o", n=5, **arrays):
    """One cell's per-start arrays: by default every start converged to f* = 0 in 10 iterations."""
    a = {"nit": [10] * n, "nfev": [12] * n, "njev": [12] * n, "nhev": [0] * n, "nhvp": [0] * n,
         "success": [True] * n, "status": ["converged"] * n, "fun": [0.0] * n, "f_star": 0.0,
         "run_s_all": [1.0, 1.0, 1.0]}
    a.update(arrays)
    return problem, optimizer, a


def _write_run(path, cells, settings=SETTINGS, source=None, drop=(), summary_starts=None):
    """A complete run directory in the store's format (meta.json, summary.csv, starts.csv,
    traces/*.npz), written by hand."""
    os.makedirs(os.path.join(path, "traces"), exist_ok=True)
    summary, starts = [], []
    for problem, optimizer, a in cells:
        arr = {}
        for k, v in a.items():
            if k == "f_star":
                arr[k] = np.array(np.nan if v is None else v, dtype=np.float64)
            elif k == "status":
                arr[k] = np.asarray(v).astype(str)
            elif k == "success":
                arr[k] = np.asarray(v, dtype=bool)
            elif k in ("fun", "run_s_all"):
                arr[k] = np.asarray(v, dtype=np.float64)
            else:
                arr[k] = np.asarray(v)
        arr["problem"], arr["optimizer"] = np.array(problem), np.array(optimizer)
        for k in drop:
            arr.pop(k)
        fname = store.cell_file_name(problem, optimizer)
        buf = io.BytesIO()
        np.savez(buf, **arr)
        with open(os.path.join(path, "traces", fname), "wb") as fh:
            fh.write(buf.getvalue())
        n = len(a["status"]) if summary_starts is None else summary_starts
        summary.append({"problem": problem, "optimizer": optimizer, "dim": 2, "starts": n, "success_rate": 1.0,
                        "nit_median": 10, "nfev_median": 12, "njev_median": 12, "nhev_median": 0, "nhvp_median": 0,
                        "f_final_median": 0.0, "subopt_median": 0.0, "grad_norm_median": 0.0, "f_star": 0.0,
                        "statuses": "converged=5", "compile_s": 0.1, "run_s": 1.0, "dtype": settings["dtype"],
                        "trace_file": "traces/" + fname})
        for i in range(n):
            starts.append({"problem": problem, "optimizer": optimizer, "start": i, "status": "converged",
                           "success": True, "nit": 10, "nfev": 12, "njev": 12, "nhev": 0, "nhvp": 0,
                           "f_final": 0.0, "grad_norm_final": 0.0, "subopt": 0.0})
    with open(os.path.join(path, "summary.csv"), "w") as fh:
        fh.write(store._csv_text(store.SUMMARY_COLUMNS, summary))
    with open(os.path.join(path, "starts.csv"), "w") as fh:
        fh.write(store._csv_text(store.STARTS_COLUMNS, starts))
    meta = {"schema_version": 1, "complete": True, "cells_done": [[p, o] for p, o, _ in cells],
            "config": dict(settings), "backend": "cpu", "device_kind": "cpu",
            "versions": {"jax": "1.0", "jaxlib": "1.0"}}
    meta.update(source or {})
    with open(os.path.join(path, "meta.json"), "w") as fh:
        json.dump(meta, fh)
    return path


def _gate(tmp_path, base_cells, run_cells, *options, base_source=None, run_source=None):
    """Baseline from one hand-written run, check of another: (exit code, stdout, stderr)."""
    base_run = _write_run(str(tmp_path / "base_run"), base_cells, source=base_source)
    run = _write_run(str(tmp_path / "run"), run_cells, source=run_source)
    base = str(tmp_path / "base.json")
    assert main(["baseline", base_run, "--out", base]) == 0
    return base, run


def _check(capsys, run, base, *options):
    capsys.readouterr()
    rc = main(["check", run, "--baseline", base, *options])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_bad_input(rc, err):
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("optbench: error: ") and "internal error" not in err


# -- rules that hold (guards for the audit) --------------------------------------------------------

def test_one_lost_start_fails_though_every_median_is_unchanged(tmp_path, capsys):
    """README: success rate, "any drop" is a regression. One start of five no longer solves
    (its f − f* = 1, status stalled): medians of iterations, evaluations and log10(f − f*) are
    those of the other four, so only the rate (1 → 0.8) can see it."""
    lost = _cell(success=[True] * 4 + [False], status=["converged"] * 4 + ["stalled"], fun=[0.0] * 4 + [1.0])
    base, run = _gate(tmp_path, [_cell()], [lost])
    rc, out, _ = _check(capsys, run, base)
    assert rc == 1 and "success_rate" in out and "-20.0 pts" in out


def test_zero_baseline_count_is_not_given_a_relative_pass(tmp_path, capsys):
    """nhev 0 in the baseline: a relative tolerance of 10 % of zero allows nothing, so one
    Hessian per start is a regression (not 0 × 1.1 = 0 compared loosely, nor a division by 0)."""
    base, run = _gate(tmp_path, [_cell()], [_cell(nhev=[1] * 5)])
    rc, out, _ = _check(capsys, run, base)
    assert rc == 1 and "nhev_median" in out and "nhev_p90" in out


# -- defects: run files that cannot be a run's must be bad input, never a pass ------------------------

def test_nan_iteration_count_in_the_run_is_bad_input_not_a_pass(tmp_path, capsys):
    """A NaN count makes the median NaN, which compare() takes as "not comparable": the gate
    passed whatever the baseline said. The same NaN in a baseline is an error; so in the run."""
    nan = _cell(nit=[np.nan, 500.0, 500.0, 500.0, np.nan])   # 50× the baseline's 10 iterations
    base, run = _gate(tmp_path, [_cell()], [nan])
    rc, out, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert "'nit'" in err and "traces" in err and out == ""


def test_cell_with_no_starts_is_bad_input(tmp_path, capsys):
    empty = _cell(n=0, run_s_all=[1.0])
    base, run = _gate(tmp_path, [_cell()], [empty])
    rc, _, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert "no starts" in err


def test_trace_lacking_an_array_is_bad_input(tmp_path, capsys):
    base_run = _write_run(str(tmp_path / "b"), [_cell()])
    base = str(tmp_path / "base.json")
    assert main(["baseline", base_run, "--out", base]) == 0
    run = _write_run(str(tmp_path / "r"), [_cell()], drop=("success",))
    rc, _, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert "lacks the array(s) success" in err


def test_trace_with_fewer_starts_than_the_run_recorded_is_bad_input(tmp_path, capsys):
    """summary.csv and starts.csv say 5 starts; the trace file holds 4 (swapped or edited): the
    metrics of 4 starts must not be checked as the cell's."""
    base_run = _write_run(str(tmp_path / "b"), [_cell()])
    base = str(tmp_path / "base.json")
    assert main(["baseline", base_run, "--out", base]) == 0
    run = _write_run(str(tmp_path / "r"), [_cell(n=4)], summary_starts=5)
    rc, _, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert "holds 4 starts, summary.csv says 5" in err


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["cells"][0]["metrics"].update(nit_median=10 ** 400), "number too large"),
    (lambda d: d["cells"][0].update(run_s_all=[10 ** 400]), "number too large"),
    (lambda d: d["cells"][0]["settings"].update(gtol=10 ** 400), "setting 'gtol' must be a finite number"),
    (lambda d: d["cells"][0].update(statuses={"converged": -1}), "'statuses' must be an object"),
    (lambda d: d["cells"][0].update(statuses=["converged"]), "'statuses' must be an object"),
], ids=["huge-metric", "huge-time", "huge-gtol", "negative-status-count", "statuses-list"])
def test_hand_edited_baseline_numbers_are_one_line(tmp_path, capsys, edit, needle):
    """JSON integers beyond a float's range made float() raise OverflowError: an "internal
    error" with exit 1 — the exit code of a regression — instead of bad input."""
    base, run = _gate(tmp_path, [_cell()], [_cell()])
    doc = json.load(open(base))
    edit(doc)
    with open(base, "w") as fh:
        fh.write(json.dumps(doc))
    rc, _, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert needle in err and len(err) < 400


def test_huge_gtol_in_the_runs_meta_is_one_line(tmp_path, capsys):
    base, _ = _gate(tmp_path, [_cell()], [_cell()])
    run = _write_run(str(tmp_path / "r2"), [_cell()], settings=dict(SETTINGS, gtol=10 ** 400))
    rc, _, err = _check(capsys, run, base)
    _one_line_bad_input(rc, err)
    assert "setting 'gtol'" in err


# -- defects: how the starts ended ---------------------------------------------------------------------

def test_start_that_now_runs_out_of_iterations_is_a_regression(tmp_path, capsys):
    """Start 5 stops by itself at a local minimum (f − f* = 5: unsuccessful) in the baseline and
    runs to max_iter = 100 from iteration 90 on in the run. Success rate 0.8 both; the iteration
    p90 (nearest rank, the 5th of 5) 90 → 99 is within +10 %; every median is that of the
    converged four. Only the status counts show that the start no longer finishes."""
    nit_b, nit_r = [10, 10, 10, 10, 90], [10, 10, 10, 10, 99]
    ok = [True] * 4 + [False]
    fun = [0.0] * 4 + [5.0]
    before = _cell(nit=nit_b, nfev=nit_b, njev=nit_b, success=ok, status=["converged"] * 5, fun=fun)
    after = _cell(nit=nit_r, nfev=nit_r, njev=nit_r, success=ok, status=["converged"] * 4 + ["max_iter"], fun=fun)
    base, run = _gate(tmp_path, [before], [after])
    rc, out, _ = _check(capsys, run, base)
    assert rc == 1 and "failed_starts" in out and "max_iter=1" in out
    rc, out, _ = _check(capsys, run, base, "--format", "json")
    rows = {m["metric"]: m for c in json.loads(out)["cells"] for m in c["metrics"]}
    assert rows["failed_starts"]["verdict"] == "regression"
    assert (rows["failed_starts"]["baseline"], rows["failed_starts"]["current"]) == (0, 1)
    assert all(r["verdict"] in ("same", "n/a") for k, r in rows.items() if k != "failed_starts")
    # the reverse is an improvement, and passes
    rc, out, _ = _check(capsys, str(tmp_path / "base_run"), _baseline_of(tmp_path, str(tmp_path / "run")))
    assert rc == 0 and "failed_starts" in out and "improvement" in out


def _baseline_of(tmp_path, run_dir, name="other.json"):
    path = str(tmp_path / name)
    assert main(["baseline", run_dir, "--out", path]) == 0
    return path


def test_start_that_now_diverges_is_a_regression(tmp_path, capsys):
    """An unsuccessful start (stalled at f = 5) that now diverges (f = inf): one of five, so the
    median of log10(f − f*) does not move; success and counts are the same."""
    ok = [True] * 4 + [False]
    before = _cell(success=ok, status=["converged"] * 4 + ["stalled"], fun=[0.0] * 4 + [5.0])
    after = _cell(success=ok, status=["converged"] * 4 + ["diverged"], fun=[0.0] * 4 + [np.inf])
    base, run = _gate(tmp_path, [before], [after])
    rc, out, _ = _check(capsys, run, base)
    assert rc == 1 and "failed_starts" in out and "diverged=1" in out
    # a tolerance of one start lets it through
    assert _check(capsys, run, base, "--tolerance", "failed=1")[0] == 0


def test_exact_fails_on_a_status_change_that_moves_no_number(tmp_path, capsys):
    """--exact: "any change of a convergence metric, better or worse" fails. A start that
    converged now reports stalled at the same point (f* reached: still a success), with the same
    counts: every metric is equal, the statuses are not. The default gate lets a relabelled
    status through (README), --exact must not."""
    relabel = _cell(status=["converged"] * 4 + ["stalled"])
    base, run = _gate(tmp_path, [_cell()], [relabel])
    assert _check(capsys, run, base)[0] == 0
    rc, out, _ = _check(capsys, run, base, "--exact")
    assert rc == 1 and "failed_starts" in out and "stalled=1" in out


def test_exact_fails_when_f_star_becomes_known(tmp_path, capsys):
    """The baseline's problem had no f* (log10(f − f*) null); the run's has one: a result that
    moved, which --exact must report rather than skip as "not comparable"."""
    base, run = _gate(tmp_path, [_cell(f_star=None)], [_cell()])
    assert _check(capsys, run, base)[0] == 0
    rc, out, _ = _check(capsys, run, base, "--exact")
    assert rc == 1 and "log10_subopt_median" in out


# -- defect: a rise of exactly the tolerance ----------------------------------------------------------

@pytest.mark.parametrize("tolerance", ["nit=15%", "nit=0.15"])
def test_rise_of_exactly_the_tolerance_passes(tmp_path, capsys, tolerance):
    """README: a regression is "a rise of more than" the tolerance. 100 → 115 is +15 % exactly;
    in floats 100 × 1.15 = 114.99999999999999, and the gate failed it."""
    base, run = _gate(tmp_path, [_cell(nit=[100] * 5)], [_cell(nit=[115] * 5)])
    assert _check(capsys, run, base, "--tolerance", tolerance)[0] == 0
    run2 = _write_run(str(tmp_path / "run2"), [_cell(nit=[116] * 5)])
    rc, out, _ = _check(capsys, run2, base, "--tolerance", tolerance)
    assert rc == 1 and "nit_median" in out and "+16.0%" in out


def test_fall_of_exactly_the_tolerance_is_no_improvement():
    """The mirror rule: c · (1 + t) < b is an improvement; 100 · 1.15 = 115 exactly is not."""
    row = check._compare_metric("nit_median", 115.0, 100.0, check.Tolerances(family=dict(
        check.Tolerances().family, nit=0.15)), (), ())
    assert row.verdict == "same"


# -- defect: provenance that makes convergence metrics differ ----------------------------------------

def test_jaxlib_and_xla_option_changes_are_noted(tmp_path, capsys):
    """README: the metrics match to the bit only for the same jax/jaxlib versions; XLA options
    change compiled code too. A jaxlib upgrade with jax unchanged was not mentioned."""
    base, run = _gate(tmp_path, [_cell()], [_cell()],
                      base_source={"xla_options": "xla defaults"},
                      run_source={"versions": {"jax": "1.0", "jaxlib": "1.1"},
                                  "xla_options": {"options": {"xla_disable_hlo_passes": "x"}}})
    rc, out, _ = _check(capsys, run, base)
    assert rc == 0
    assert "jaxlib 1.0 in the baseline, 1.1 in the run" in out
    assert "different XLA options" in out
    assert "fuse_loops" not in out   # neither run fused its loops: nothing to say


def test_fuse_loops_difference_is_noted(tmp_path, capsys):
    """A run with fuse_loops (loops compiled as one function) against a baseline without: compiled
    code differs, so the gate says why the counts may move; a baseline from before the setting
    existed counts as without."""
    base, run = _gate(tmp_path, [_cell()], [_cell()], run_source={"config": dict(SETTINGS, fuse_loops=True)})
    rc, out, _ = _check(capsys, run, base)
    assert rc == 0 and "fuse_loops false in the baseline, true in the run" in out


# -- defects: files the gate writes -------------------------------------------------------------------

def test_baseline_never_replaces_a_file_that_is_not_a_baseline(tmp_path, capsys):
    run = _write_run(str(tmp_path / "run"), [_cell()])
    suite = tmp_path / "quick.toml"
    suite.write_text('name = "mine"\nproblems = ["rosenbrock"]\n')
    capsys.readouterr()
    rc = main(["baseline", run, "--out", str(suite)])
    err = capsys.readouterr().err
    _one_line_bad_input(rc, err)
    assert "not an optbench baseline" in err
    assert suite.read_text() == 'name = "mine"\nproblems = ["rosenbrock"]\n'
    # an existing baseline is replaced, and the output says so; an empty file is taken
    base = _baseline_of(tmp_path, run, "b.json")
    assert main(["baseline", run, "--out", base]) == 0
    assert "replaced the previous baseline" in capsys.readouterr().out
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["baseline", run, "--out", str(empty)]) == 0
    assert check.load_baseline(str(empty))["cells"][0]["metrics"]["nit_median"] == 10.0


def test_check_report_never_replaces_another_baseline(tmp_path, capsys):
    base, run = _gate(tmp_path, [_cell()], [_cell()])
    other = _baseline_of(tmp_path, run, "other.json")
    before = open(other).read()
    rc, _, err = _check(capsys, run, base, "--out", other)
    _one_line_bad_input(rc, err)
    assert "is an optbench baseline" in err and open(other).read() == before


def _traced_cell():
    """A cell with the history arrays the figures draw (11 iterations of f = 10^-k, k = 0..10)."""
    hist = np.tile(10.0 ** -np.arange(11.0), (5, 1))
    x = np.zeros((5, 11, 2))
    counts = np.tile(np.arange(11.0), (5, 1))
    return _cell(trace_f=hist, trace_grad_norm=hist, trace_nfev=counts, trace_njev=counts, trace_nhev=0 * counts,
                 trace_nhvp=0 * counts, trace_rho=np.full((5, 11), np.nan), trace_step=hist, trace_x=x,
                 x=np.zeros((5, 2)), x0=np.ones((5, 2)), grad_norm=np.zeros(5), compile_s=0.1)


def test_compare_never_writes_into_a_runs_traces(tmp_path, capsys):
    a = _write_run(str(tmp_path / "a"), [_traced_cell()])
    b = _write_run(str(tmp_path / "b"), [_traced_cell()])
    traces = os.path.join(a, "traces")
    before = sorted(os.listdir(traces))
    capsys.readouterr()
    rc = main(["compare", a, b, "--out", traces, "--formats", "svg"])
    err = capsys.readouterr().err
    _one_line_bad_input(rc, err)
    assert "would overwrite the data of the run" in err and sorted(os.listdir(traces)) == before


@pytest.mark.parametrize("text", ["failed=10%", "failed=0.5", "failed_starts=1.5"])
def test_failed_tolerance_is_a_whole_number_of_starts(text):
    """failed counts starts: a percentage or a fraction used to act silently as 'any rise'."""
    with pytest.raises(OptbenchError) as info:
        check.parse_tolerances([text])
    assert "a number of starts, a whole number" in str(info.value)
    assert check.parse_tolerances(["failed=2"]).family["failed"] == 2.0


# -- defects found by a second audit of the gate -------------------------------------------------------

def test_a_percentage_tolerance_is_the_decimal_written(tmp_path, capsys):
    """`nit=0.7%` read as float("0.7") / 100 = 0.006999…, so 1000 → 1007 (+0.7 % exactly) failed
    where `nit=0.007` passed, and the message rounded the tolerance to "+1%"."""
    base, run = _gate(tmp_path, [_cell(nit=[1000] * 5)], [_cell(nit=[1007] * 5)])
    for tol in ("nit=0.7%", "nit=0.70%", "nit=0.007"):
        assert _check(capsys, run, base, "--tolerance", tol)[0] == 0, tol
    run2 = _write_run(str(tmp_path / "run2"), [_cell(nit=[1008] * 5)])
    rc, out, _ = _check(capsys, run2, base, "--tolerance", "nit=0.7%")
    assert rc == 1 and "tolerance: +0.7%" in out
    assert "iterations: +12.5%" in check.parse_tolerances(["nit=12.5%"]).describe()


def test_a_subopt_rise_of_exactly_the_tolerance_passes():
    """-13.953559774527022 → -13.653559774527022 is a rise of 0.3 in decimals, 0.3000000000000007
    in floats: it failed `subopt=0.3`, against the README's rule that exactly the tolerance passes."""
    tol = check.Tolerances(family=dict(check.Tolerances().family, subopt=0.3))
    row = check._compare_metric("log10_subopt_median", -13.953559774527022, -13.653559774527022, tol, (), ())
    assert row.verdict == "same", row
    row = check._compare_metric("log10_subopt_median", -13.953559774527022, -13.65355977452702, tol, (), ())
    assert row.verdict == "regression", row
    assert check._compare_metric("log10_subopt_median", -3.0, float("inf"), tol, (), ()).verdict == "regression"


def test_a_diverged_start_counts_as_inf_in_the_subopt_median():
    """README: "a diverged start counts as +inf". A start ended diverged by a non-finite gradient
    or x keeps a finite f, which counted as it was."""
    _, _, a = _cell(n=3, status=["diverged", "diverged", "converged"], success=[False, False, True],
                    fun=[1.0, 2.0, 0.0])
    arrays = {k: (np.asarray(v).astype(str) if k == "status" else np.asarray(v)) for k, v in a.items()}
    metrics, _ = check.cell_metrics(arrays, "float64")
    assert metrics["log10_subopt_median"] == float("inf")


def test_starts_that_stop_failing_without_converging_are_no_improvement():
    """Three starts that ran out of iterations now give up early (linesearch_failed) short of f*:
    the failed_starts row read "3 → 0, improvement". Only starts that now converge make it one."""
    tol = check.Tolerances()
    row = check._compare_statuses({"max_iter": 3}, {"linesearch_failed": 3}, tol)
    assert row.verdict == "same" and "no more converge" in row.detail
    assert check._compare_statuses({"max_iter": 3}, {"converged": 3}, tol).verdict == "improvement"
