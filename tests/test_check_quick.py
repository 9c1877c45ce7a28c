"""The committed quick-suite baseline that .ci/run gates with, and the determinism it relies on."""
import os
import re
import subprocess
import sys

import pytest

from bench import check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "results", "baselines", "quick.json")
CI_RUN = os.path.join(ROOT, ".ci", "run")
QUICK_SUITE = os.path.join(ROOT, "suites", "quick.toml")
QUICK_ARGS = [QUICK_SUITE, "--quiet", "--no-plots"]


def _quick_cells():
    """(problem, optimizer) → settings of every cell of the quick suite, as ``optbench run`` expands it."""
    from bench import suite
    cells = suite.expand(suite.load(QUICK_SUITE))
    return {c.key: {"dtype": c.dtype, "starts": c.starts, "seeds": list(c.seeds), "max_iter": c.max_iter,
                    "gtol": c.gtol} for c in cells}


def test_ci_runs_the_quick_suite_against_the_committed_baseline():
    text = open(CI_RUN).read()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    code = "\n".join(lines)
    assert re.search(r"optbench run suites/quick\.toml ", code)
    assert re.search(r"optbench check \S+ --baseline results/baselines/quick\.json", code)
    # the README's test command comes first, unchanged
    assert code.index("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest") \
        < code.index("optbench run")


def test_committed_baseline_is_valid_and_matches_the_quick_suite():
    doc = check.load_baseline(BASELINE)
    quick = _quick_cells()
    for c in doc["cells"]:
        key = (c["problem"], c["optimizer"])
        # a baseline cell the suite no longer runs would fail CI as "missing": catch it here first
        assert key in quick, f"baseline cell {key} is not in the quick suite any more: regenerate the baseline"
        assert c["settings"] == quick[key], f"baseline cell {key} was made with other settings"
    assert {c["problem"] for c in doc["cells"]} == {k[0] for k in quick}
    # provenance of the run that made it, without paths of the machine that made it
    src = doc["source"]
    assert src["backend"] == "cpu" and src["git_commit"] and src["versions"]["jax"]
    assert not any(os.path.isabs(t) for t in src["command"].split())


def test_committed_baseline_covers_registered_optimizers_or_says_they_are_new():
    """Optimizers registered after the baseline was made are reported as new cells, never failed."""
    doc = check.load_baseline(BASELINE)
    quick = _quick_cells()
    missing = sorted(set(quick) - {(c["problem"], c["optimizer"]) for c in doc["cells"]})
    fake_run = {"settings": doc["settings"], "source": doc["source"],
                "cells": [dict(c) for c in doc["cells"]] + [
                    {"problem": k[0], "optimizer": k[1], "settings": quick[k], "metrics": doc["cells"][0]["metrics"],
                     "run_s_all": []} for k in missing]}
    cmp = check.compare(doc, fake_run, check.Tolerances())
    assert cmp.exit_code == 0 and cmp.count("new") == len(missing)


@pytest.mark.slow
def test_two_runs_of_the_quick_suite_have_identical_convergence_metrics(tmp_path):
    """Two separate processes (separate compilations) give bit-identical convergence metrics."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    docs = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        p = subprocess.run([sys.executable, "-m", "bench", "run"] + QUICK_ARGS + ["--out", out], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, p.stderr
        docs.append(check.run_metrics(out))
    a = {(c["problem"], c["optimizer"]): c["metrics"] for c in docs[0]["cells"]}
    b = {(c["problem"], c["optimizer"]): c["metrics"] for c in docs[1]["cells"]}
    assert a.keys() == b.keys() == set(_quick_cells())
    for key in a:
        for m in check.METRICS:
            if m != "run_s":
                assert a[key][m] == b[key][m], (key, m)
    cmp = check.compare(docs[0], docs[1], check.Tolerances())
    assert cmp.exit_code == 0 and not cmp.regressions and not cmp.improvements
