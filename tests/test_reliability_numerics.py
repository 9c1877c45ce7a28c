"""Numerical failure is a result: overflow in float32 and NaN starts end with a status, the run
goes on, exits 0, and the summary counts the statuses. (Failures for every registered optimizer
on one compiled problem: tests/test_properties.py.)"""
import csv
import os
import textwrap

import numpy as np
import pytest

import bench
import problems
from bench.cli import main


def test_float32_overflow_is_diverged_float64_runs_out_of_iterations():
    """Gradient descent with lr = 1.5 on Σx² doubles |x| each step: x_k = (−2)^k x₀ exactly, so
    f = 4^k Σx₀² overflows float32 (max ≈ 2^128) at a known step while float64 is still finite."""
    starts = np.array([[1.0, 1.0], [0.0, 0.0], [0.5, -0.25]])
    r32 = bench.solve("sphere", "gd:lr=1.5", starts, max_iter=100, dtype="float32")
    # f = 2·4^k > 2^128 first at k = 64; f = 0.3125·4^k > 2^128 first at k = 65
    assert list(r32.status) == ["diverged", "converged", "diverged"]
    assert list(r32.nit) == [64, 0, 65]
    assert np.isfinite(r32.trace.f[0, 63]) and np.isinf(r32.trace.f[0, 64])
    r64 = bench.solve("sphere", "gd:lr=1.5", starts, max_iter=100, dtype="float64")
    assert list(r64.status) == ["max_iter", "converged", "max_iter"] and list(r64.nit) == [100, 0, 100]
    assert r64.fun[0] == 2.0 ** 201 and r64.fun[2] == 0.3125 * 4.0 ** 100  # exact powers of two


PLUGIN = """
import jax.numpy as jnp
import numpy as np
import problems

def f(x):
    # a bowl around (0.5, 0.5) behind a wall: f is NaN wherever x[0] > 1
    return jnp.sum((x - 0.5) ** 2) + jnp.where(x[0] > 1.0, jnp.nan, 0.0)

problems.register(problems.Problem(name="nan-wall", f=f, x0=np.zeros(2), f_star=0.0,
                                   x_star=np.full(2, 0.5), bounds=(-2.0 * np.ones(2), 2.0 * np.ones(2))))
"""


@pytest.fixture
def registry_snapshot():
    """Undo what the plug-in registers, so later tests see the registries as they were."""
    from problems import registry as preg
    saved = dict(preg._REGISTRY._factories)
    yield
    preg._REGISTRY._factories.clear()
    preg._REGISTRY._factories.update(saved)


def test_run_with_failing_starts_finishes_and_counts_statuses(tmp_path, capsys, registry_snapshot):
    plugin = tmp_path / "nan_wall.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    out = str(tmp_path / "run")
    rc = main(["run", "--plugin", str(plugin), "--problems", "nan-wall", "--optimizers", "newton,gd-linesearch",
               "--starts", "12", "--seed", "0", "--max-iter", "100", "--repeats", "1", "--out", out, "--quiet", "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    behind_wall = int(np.sum(problems.get("nan-wall").random_starts(12, 0)[:, 0] > 1.0))
    assert 0 < behind_wall < 12
    rows = list(csv.DictReader(open(os.path.join(out, "summary.csv"))))
    assert [r["optimizer"] for r in rows] == ["newton", "gd-linesearch"]
    for r in rows:
        assert r["statuses"] == f"converged={12 - behind_wall};diverged={behind_wall}"
        assert float(r["success_rate"]) == (12 - behind_wall) / 12
    # medians of f are over the finite values: the diverged starts do not turn them into NaN
    assert float(rows[0]["subopt_median"]) < 1e-20 and np.isfinite(float(rows[1]["f_final_median"]))
    starts = list(csv.DictReader(open(os.path.join(out, "starts.csv"))))
    assert sum(s["status"] == "diverged" for s in starts) == 2 * behind_wall
    assert all(s["success"] == "false" for s in starts if s["status"] == "diverged")
