"""optbench baseline / check: the statistics against scipy, the comparison rules on synthetic
metrics, and end to end on real runs (identical runs pass, a weakened optimizer fails with exit 1
naming the metric, bad or mismatched baselines exit 2 with one line)."""
import itertools
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy import stats

from bench import check
from bench.cli import main
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ARGS = ["--problems", "himmelblau,rosenbrock", "--optimizers", "newton,gd-linesearch", "--starts", "4",
            "--seed", "0", "--max-iter", "200", "--repeats", "2", "--quiet", "--no-plots"]


# -- Mann-Whitney U against scipy and brute force --------------------------------------------------

@pytest.mark.parametrize("n1, n2", [(1, 1), (2, 3), (3, 3), (4, 4), (5, 7), (8, 6)])
def test_u_distribution_matches_enumeration(n1, n2):
    counts = [0] * (n1 * n2 + 1)
    for pos in itertools.combinations(range(n1 + n2), n1):
        # x occupies ranks `pos`; U counts (x, y) pairs with x above y
        u = sum(p - i for i, p in enumerate(pos))
        counts[u] += 1
    assert check._u_distribution(n1, n2) == counts
    assert sum(counts) == math.comb(n1 + n2, n1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_mann_whitney_exact_matches_scipy(seed, alternative):
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(2, 9, size=2)
    x = rng.normal(0.5 * (seed % 3), 1.0, n1)
    y = rng.normal(0.0, 1.0, n2)
    u, p = check.mann_whitney_u(x, y, alternative)
    ref = stats.mannwhitneyu(x, y, alternative=alternative, method="exact")
    assert u == pytest.approx(ref.statistic, abs=0)
    assert p == pytest.approx(ref.pvalue, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_mann_whitney_ties_match_scipy_asymptotic(seed, alternative):
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(0, 5, size=9).astype(float)  # many ties: the normal approximation applies
    y = rng.integers(1, 6, size=11).astype(float)
    u, p = check.mann_whitney_u(x, y, alternative)
    ref = stats.mannwhitneyu(x, y, alternative=alternative, method="asymptotic", use_continuity=True)
    assert u == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)


def test_mann_whitney_large_samples_use_normal_approximation_like_scipy():
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.2, 1, 30), rng.normal(0, 1, 25)
    _, p = check.mann_whitney_u(x, y)
    assert p == pytest.approx(stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue, rel=1e-10)


def test_min_attainable_p():
    assert check.min_attainable_p(3, 3) == pytest.approx(0.05)
    # the most extreme arrangement reaches it
    assert check.mann_whitney_u([4, 5, 6], [1, 2, 3])[1] == pytest.approx(0.05)
    assert check.min_attainable_p(1, 1) == 0.5


# -- comparison rules on synthetic metrics ----------------------------------------------------------

SETTINGS = {"dtype": "float64", "starts": 8, "seeds": [0], "max_iter": 100, "gtol": 1e-8}


def _cell(problem="p", optimizer="o", times=(1.0, 1.0, 1.0), **metrics):
    m = {k: 10.0 for k in check.METRICS}
    m.update(success_rate=1.0, log10_subopt_median=-12.0, run_s=float(np.median(times)))
    m.update(metrics)
    return {"problem": problem, "optimizer": optimizer, "settings": dict(SETTINGS), "metrics": m,
            "run_s_all": list(times)}


def _doc(*cells, backend="cpu"):
    return {"schema_version": 1, "kind": check.BASELINE_KIND, "settings": dict(SETTINGS),
            "source": {"backend": backend, "device_kind": "cpu", "versions": {"jax": "x"}}, "cells": list(cells)}


def _verdicts(cmp):
    return {(c.problem, c.optimizer, r.metric): r.verdict for c in cmp.cells for r in c.rows
            if r.verdict not in ("same", "n/a")}


def test_identical_metrics_pass():
    cmp = check.compare(_doc(_cell(), _cell("q")), _doc(_cell(), _cell("q")), check.Tolerances())
    assert cmp.exit_code == 0 and not _verdicts(cmp) and cmp.verdict == "pass"


@pytest.mark.parametrize("metric, base, cur, verdict", [
    ("nit_median", 20.0, 22.0, "same"),            # +10 % exactly is allowed
    ("nit_median", 20.0, 22.5, "regression"),      # +12.5 %
    ("nit_p90", 20.0, 23.0, "regression"),
    ("nfev_median", 40.0, 30.0, "improvement"),
    ("nhev_median", 0.0, 1.0, "regression"),       # a method that starts evaluating Hessians
    ("success_rate", 1.0, 0.875, "regression"),    # one start of eight lost
    ("success_rate", 0.5, 0.625, "improvement"),
    ("log10_subopt_median", -12.0, -11.2, "same"),
    ("log10_subopt_median", -12.0, -10.5, "regression"),
    ("log10_subopt_median", -3.0, math.inf, "regression"),  # diverged
    ("log10_subopt_median", math.inf, math.inf, "same"),
    ("log10_subopt_median", -3.0, -6.0, "improvement"),
    ("run_s", 1.0, 100.0, None),                   # time is off by default
])
def test_metric_rules(metric, base, cur, verdict):
    cmp = check.compare(_doc(_cell(**{metric: base})), _doc(_cell(**{metric: cur})), check.Tolerances())
    got = {r.metric: r.verdict for r in cmp.cells[0].rows}[metric]
    assert got == (verdict or "n/a")
    assert cmp.exit_code == (1 if verdict == "regression" else 0)


def test_tolerances_override_families_and_single_metrics():
    tol = check.parse_tolerances(["nit=25%", "nfev_median=0.5,success=0.2"])
    assert tol.of("nit_median") == tol.of("nit_p90") == 0.25 and tol.of("nfev_median") == 0.5
    assert tol.of("nfev_p90") == 0.10 and tol.of("success_rate") == 0.2 and not tol.time
    cmp = check.compare(_doc(_cell(nit_median=20.0, success_rate=1.0)), _doc(_cell(nit_median=24.0, success_rate=0.875)),
                        tol)
    assert cmp.exit_code == 0
    assert check.parse_tolerances(["time=1.2"]).time  # a time tolerance turns the time check on


@pytest.mark.parametrize("item, needle", [("nitt=0.1", "did you mean: nit"), ("nit", "KEY=VALUE"),
                                          ("nit=abc", "needs a number"), ("time=0.9", "factor > 1"),
                                          ("success=2", "between 0 and 1"), ("evals=-1", ">= 0")])
def test_bad_tolerances_are_one_line_errors(item, needle):
    with pytest.raises(OptbenchError, match=needle):
        check.parse_tolerances([item])


def test_time_needs_factor_and_significance():
    fast = (1.00, 1.02, 0.99, 1.01, 1.03)
    tol = check.Tolerances(time=True)
    # twice as slow in every repeat: beyond the factor and significant (exact p = 1/252)
    slow = tuple(2 * t for t in fast)
    cmp = check.compare(_doc(_cell(times=fast)), _doc(_cell(times=slow)), tol)
    row = [r for r in cmp.cells[0].rows if r.metric == "run_s"][0]
    assert row.verdict == "regression" and "p=0.00397" in row.detail and cmp.exit_code == 1
    # same median ratio but the repeats overlap: not significant, so not a failure
    noisy = (0.5, 2.0, 2.0, 0.9, 3.0)
    cmp = check.compare(_doc(_cell(times=fast)), _doc(_cell(times=noisy)), tol)
    assert _verdicts(cmp) == {("p", "o", "run_s"): "inconclusive"} and cmp.exit_code == 0
    # significant but within the factor: the same
    cmp = check.compare(_doc(_cell(times=fast)), _doc(_cell(times=tuple(1.2 * t for t in fast))), tol)
    assert not _verdicts(cmp)
    # faster beyond the factor and significant: an improvement
    cmp = check.compare(_doc(_cell(times=slow)), _doc(_cell(times=fast)), tol)
    assert _verdicts(cmp) == {("p", "o", "run_s"): "improvement"}


def test_time_with_too_few_repeats_is_inconclusive_and_says_so():
    tol = check.Tolerances(time=True)
    cmp = check.compare(_doc(_cell(times=(1.0, 1.1))), _doc(_cell(times=(3.0, 3.1))), tol)
    row = [r for r in cmp.cells[0].rows if r.metric == "run_s"][0]
    assert row.verdict == "inconclusive" and "cannot reach" in row.detail  # best p with 2+2 repeats is 1/6


def test_noise_is_reported():
    cmp = check.compare(_doc(_cell(times=(1.0, 1.5, 2.0))), _doc(_cell(times=(1.0, 1.1, 1.2, 9.0))),
                        check.Tolerances(time=True))
    assert cmp.noise["baseline"]["median_spread"] == pytest.approx(0.5 / 1.5)
    # median 1.15, deviations .15 .05 .05 7.85: one outlier does not swamp the figure
    assert cmp.noise["run"]["max_spread"] == pytest.approx(0.1 / 1.15)
    assert "repeats vary by 33.3%" in check.format_text(cmp)
    assert check.repeat_spread([2.0]) is None
    one = check.compare(_doc(_cell(times=(1.0,))), _doc(_cell(times=(1.0,))), check.Tolerances(time=True))
    assert any("fewer than two repeats" in n for n in one.notes)


def test_new_cells_pass_missing_cells_fail():
    base, cur = _doc(_cell("a"), _cell("b")), _doc(_cell("a"), _cell("c"))
    cmp = check.compare(base, cur, check.Tolerances())
    status = {c.problem: c.status for c in cmp.cells}
    assert status == {"a": "ok", "b": "missing", "c": "new"} and cmp.exit_code == 1
    cmp = check.compare(_doc(_cell("a")), cur, check.Tolerances())
    assert cmp.exit_code == 0 and "not checked" in check.format_text(cmp)


@pytest.mark.parametrize("key, value", [("gtol", 1e-6), ("dtype", "float32"), ("starts", 5), ("seeds", [1]),
                                        ("max_iter", 50)])
def test_different_settings_are_bad_input_naming_the_setting(key, value):
    cur = _doc(_cell())
    cur["cells"][0]["settings"][key] = value
    with pytest.raises(OptbenchError, match=f"different settings: {key} ") as exc:
        check.compare(_doc(_cell()), cur, check.Tolerances())
    assert "\n" not in str(exc.value)


def test_time_across_devices_is_refused_convergence_is_not():
    with pytest.raises(OptbenchError, match="across devices"):
        check.compare(_doc(_cell()), _doc(_cell(), backend="gpu"), check.Tolerances(time=True))
    cmp = check.compare(_doc(_cell()), _doc(_cell(), backend="gpu"), check.Tolerances())
    assert cmp.exit_code == 0 and any("run on gpu" in n for n in cmp.notes)


def test_time_across_thread_pools_is_noted():
    base, run = _doc(_cell()), _doc(_cell())
    base["source"]["cpu_threads"], run["source"]["cpu_threads"] = 2, 1
    assert any("2 CPU thread(s), the run on 1" in n for n in check.compare(base, run, check.Tolerances(time=True)).notes)
    run["source"]["cpu_threads"] = 2
    assert not any("thread" in n for n in check.compare(base, run, check.Tolerances(time=True)).notes)


def test_reports_in_every_format_are_well_formed():
    base = _doc(_cell("a"), _cell("b"), _cell("m"))
    cur = _doc(_cell("a", nit_median=20.0), _cell("b", nfev_median=5.0), _cell("n:dim=2"))
    cmp = check.compare(base, cur, check.Tolerances())
    text = check.format_text(cmp)
    assert "FAIL" in text and "nit_median" in text and "REGRESSION" in text and "MISSING" in text
    md = check.format_markdown(cmp)
    assert "| problem | optimizer | metric |" in md and "**REGRESSION" in md
    data = json.loads(check.format_json(cmp))
    assert data["verdict"] == "regression" and data["exit_code"] == 1
    assert data["counts"] == {"cells": 4, "regressions": 1, "improvements": 1, "ok": 1, "regression": 1, "new": 1,
                              "missing": 1}
    root = ET.fromstring(check.format_junit(cmp))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 == int(suite.get("tests"))
    assert int(suite.get("failures")) == 2 == sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("skipped")) == 1 == sum(c.find("skipped") is not None for c in cases)
    failed = {c.get("classname"): c.find("failure").get("message") for c in cases if c.find("failure") is not None}
    assert "nit_median" in failed["optbench.a"] and "optbench.m" in failed
    assert {c.get("classname") for c in cases} == {"optbench.a", "optbench.b", "optbench.m", "optbench.n:dim=2"}


# -- end to end -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    run_dir, weak_dir, base = str(d / "run"), str(d / "weak"), str(d / "base.json")
    assert main(["run"] + RUN_ARGS + ["--out", run_dir]) == 0
    assert main(["baseline", run_dir, "--out", base]) == 0
    # the same code with one optimizer weakened, in a fresh process (fresh compilation):
    # Armijo's sufficient-decrease constant c1 raised from 1e-4 to 0.45 forces shorter steps
    script = ("import functools, sys; import optimizers; from optimizers import gradient; "
              "optimizers.register('gd-linesearch', functools.partial(gradient.gd_linesearch, c1=0.45), overwrite=True); "
              "from bench.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-c", script, "run"] + RUN_ARGS + ["--out", weak_dir], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return {"dir": d, "run": run_dir, "weak": weak_dir, "base": base}


def test_identical_run_passes_in_every_format(runs, capsys, tmp_path):
    assert main(["check", runs["run"], "--baseline", runs["base"]]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "no metric changed" in out
    assert main(["check", runs["run"], "--baseline", runs["base"], "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "pass" and data["counts"]["ok"] == 4
    assert data["settings"] == {"dtype": "float64", "starts": 4, "seeds": [0], "max_iter": 200, "gtol": 1e-8}
    report = str(tmp_path / "check.xml")
    assert main(["check", runs["run"], "--baseline", runs["base"], "--format", "junit", "--out", report]) == 0
    assert "PASS" in capsys.readouterr().out
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"


def test_baseline_file_holds_metrics_settings_and_provenance(runs):
    doc = json.load(open(runs["base"]))
    assert doc["schema_version"] == check.BASELINE_SCHEMA_VERSION and doc["kind"] == check.BASELINE_KIND
    for key in ("git_commit", "created", "versions", "backend", "device_kind", "host", "command"):
        assert key in doc["source"]
    assert not any(os.path.isabs(t) for t in doc["source"]["command"].split())
    assert len(doc["cells"]) == 4
    for c in doc["cells"]:
        assert set(check.METRICS) <= set(c["metrics"]) and len(c["run_s_all"]) == 2
    # the numbers are the run's: recompute one cell from its stored per-start values
    from bench import store
    run = store.load_run(runs["run"])
    cell = next(c for c in doc["cells"] if c["problem"] == "rosenbrock" and c["optimizer"] == "newton")
    arrays = run.cell("rosenbrock", "newton")
    assert cell["metrics"]["nit_median"] == float(np.median(arrays["nit"]))
    assert cell["metrics"]["nfev_p90"] == float(np.sort(arrays["nfev"])[math.ceil(0.9 * len(arrays["nfev"])) - 1])
    assert cell["metrics"]["success_rate"] == float(np.mean(arrays["success"]))
    assert cell["run_s_all"] == [float(t) for t in arrays["run_s_all"]]


def test_weakened_optimizer_fails_with_exit_1_naming_the_metric(runs, capsys):
    assert main(["check", runs["weak"], "--baseline", runs["base"]]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "REGRESSION" in out and "gd-linesearch" in out
    assert main(["check", runs["weak"], "--baseline", runs["base"], "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    status = {(c["problem"], c["optimizer"]): c["status"] for c in data["cells"]}
    # only the weakened optimizer regressed; the unchanged one, run in another process, matched
    # its baseline bit for bit (deterministic convergence metrics)
    assert status[("himmelblau", "gd-linesearch")] == "regression"
    assert status[("rosenbrock", "newton")] == status[("himmelblau", "newton")] == "ok"
    regressed = {m["metric"] for c in data["cells"] for m in c["metrics"] if m["verdict"] == "regression"}
    assert "nit_median" in regressed and "nfev_median" in regressed
    assert "nit_median" in out and "nfev_median" in out
    for c in data["cells"]:
        if c["optimizer"] == "newton":
            assert all(m["baseline"] == m["current"] for m in c["metrics"] if m["metric"] != "run_s")
    assert main(["check", runs["weak"], "--baseline", runs["base"], "--format", "junit"]) == 1
    root = ET.fromstring(capsys.readouterr().out)
    failures = {tc.get("classname") + "/" + tc.get("name"): tc.find("failure").get("message")
                for tc in root.iter("testcase") if tc.find("failure") is not None}
    assert "nit_median" in failures["optbench.himmelblau/gd-linesearch"]
    assert not any(k.endswith("/newton") for k in failures)


def test_loose_tolerance_lets_the_weakened_run_pass(runs):
    assert main(["check", runs["weak"], "--baseline", runs["base"], "--tolerance", "nit=1,evals=1,subopt=3"]) == 0


def test_exact_fails_on_any_change_better_or_worse():
    """--exact: a change that must move no result fails on an improvement too; identical metrics
    pass, and times stay unchecked unless asked for."""
    tol = check.parse_tolerances([], exact=True)
    same = check.compare(_doc(_cell(run_s=1.0)), _doc(_cell(run_s=3.0)), tol)
    assert same.exit_code == 0 and not _verdicts(same)
    better = check.compare(_doc(_cell(nfev_median=40.0)), _doc(_cell(nfev_median=39.0)), tol)
    assert _verdicts(better) == {("p", "o", "nfev_median"): "regression"} and better.exit_code == 1
    row = next(r for r in better.cells[0].rows if r.metric == "nfev_median")
    assert row.change == "-2.5%" and "--exact" in row.detail
    # the default rules call the same change an improvement and pass
    assert check.compare(_doc(_cell(nfev_median=40.0)), _doc(_cell(nfev_median=39.0)), check.Tolerances()).exit_code == 0
    assert "any change" in tol.describe()
    assert check.parse_tolerances(["time=1.3"], exact=True).time
    with pytest.raises(OptbenchError, match="--exact allows no change"):
        check.parse_tolerances(["nit=0.2"], exact=True)


def test_exact_on_real_runs(runs, capsys):
    # a run checked against its own baseline: nothing changed
    assert main(["check", runs["run"], "--baseline", runs["base"], "--exact"]) == 0
    assert "any change, better or worse" in capsys.readouterr().out
    # a baseline that took one iteration more somewhere: the run is "better", and --exact fails it
    def one_more(doc):
        doc["cells"][0]["metrics"]["nit_median"] += 1

    path = _bad_baseline(runs, "one_more.json", one_more)
    assert main(["check", runs["run"], "--baseline", path]) == 0
    capsys.readouterr()
    assert main(["check", runs["run"], "--baseline", path, "--exact"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "nit_median" in out


def _bad_baseline(runs, name, edit):
    doc = json.load(open(runs["base"]))
    text = edit(doc)
    path = str(runs["dir"] / name)
    with open(path, "w") as fh:
        fh.write(text if isinstance(text, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize("name, edit, needle", [
    ("truncated.json", lambda d: json.dumps(d)[:200], "corrupt or truncated JSON"),
    ("binary.json", lambda d: "\udcff", "corrupt or truncated JSON"),
    ("version.json", lambda d: d.update(schema_version=99), "unknown baseline schema_version 99"),
    ("notbaseline.json", lambda d: d.pop("kind") and None, "not an optbench baseline"),
    ("nocells.json", lambda d: d.update(cells=[]), "has no cells"),
    ("nometric.json", lambda d: d["cells"][0]["metrics"].pop("nit_p90") and None, "metrics lack nit_p90"),
    ("gtol.json", lambda d: [c["settings"].update(gtol=1e-6) for c in d["cells"]], "different settings: gtol 1e-06"),
    ("two.json", lambda d: [c["settings"].update(dtype="float32", max_iter=500) for c in d["cells"]],
     "dtype 'float32' in the baseline vs 'float64' in the run; max_iter 500"),
])
def test_bad_baseline_exits_2_with_one_line(runs, capsys, name, edit, needle):
    if name == "binary.json":
        path = str(runs["dir"] / name)
        with open(path, "wb") as fh:
            fh.write(b"\xff\xfe{not json")
    else:
        path = _bad_baseline(runs, name, edit)
    assert main(["check", runs["run"], "--baseline", path]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_missing_files_exit_2(runs, capsys, tmp_path):
    assert main(["check", runs["run"], "--baseline", str(tmp_path / "nope.json")]) == 2
    assert "baseline file is missing" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "norun"), "--baseline", runs["base"]]) == 2
    err = capsys.readouterr().err
    assert "norun" in err and err.count("\n") == 1
    assert main(["baseline", str(tmp_path / "norun"), "--out", str(tmp_path / "b.json")]) == 2
    assert not os.path.exists(tmp_path / "b.json")


def test_incomplete_run_is_bad_input(runs, capsys, tmp_path):
    import shutil
    partial = str(tmp_path / "partial")
    shutil.copytree(runs["run"], partial)
    meta_path = os.path.join(partial, "meta.json")
    meta = json.load(open(meta_path))
    meta["complete"] = False
    json.dump(meta, open(meta_path, "w"))
    assert main(["check", partial, "--baseline", runs["base"]]) == 2
    assert "incomplete" in capsys.readouterr().err


def test_cli_subprocess_exit_codes(runs):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "bench", "check", runs["weak"], "--baseline", runs["base"],
                        "--format", "markdown"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 1 and "### optbench check" in p.stdout and "nit_median" in p.stdout
