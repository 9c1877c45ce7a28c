"""Numerical failure is a result: overflow in float32 and NaN starts end with a status, the run
goes on, exits 0, and the summary counts the statuses. (Failures for every registered optimizer
on one compiled problem: tests/test_properties.py.)"""
import csv
import os
import textwrap

import numpy as np

import bench
import problems
from bench.cli import main


def test_float32_overflow_is_diverged_float64_runs_out_of_iterations():
    """Gradient descent with lr = 1.5 on Σx² doubles |x| each step: x_k = (−2)^k x₀ exactly, so
    f = 4^k Σx₀² and ‖∇f‖² = 4f overflow float32 (max ≈ 2^128) at known steps while float64 is
    still finite. A start is diverged once f, ∇f or ‖∇f‖ is not finite: here ‖∇f‖ first."""
    starts = np.array([[1.0, 1.0], [0.0, 0.0], [0.5, -0.25]])
    r32 = bench.solve("sphere", "gd:lr=1.5", starts, max_iter=100, dtype="float32")
    # ‖∇f‖² = 8·4^k > 2^128 first at k = 63 (f = 2·4^k at k = 64); 1.25·4^k first at k = 64
    assert list(r32.status) == ["diverged", "converged", "diverged"]
    assert list(r32.nit) == [63, 0, 64]
    assert np.isfinite(r32.trace.f[0, 63]) and np.isinf(r32.trace.grad_norm[0, 63])
    assert np.isfinite(r32.trace.grad_norm[0, 62])
    r64 = bench.solve("sphere", "gd:lr=1.5", starts, max_iter=100, dtype="float64")
    assert list(r64.status) == ["max_iter", "converged", "max_iter"] and list(r64.nit) == [100, 0, 100]
    assert r64.fun[0] == 2.0 ** 201 and r64.fun[2] == 0.3125 * 4.0 ** 100  # exact powers of two



def test_float32_round_off_fixed_points_end_stalled_not_at_max_iter():
    """In float32 a fixed-step method reaches the point where lr·∇f rounds away at x: x (and
    the velocity) never change again, and ‖∇f‖ stays above gtol = 1e-8. Such a start ends
    ``stalled`` — a success where f* is known and reached — instead of idling to max_iter. Booth's
    minimum (1, 3) and Hessian [[10, 8], [8, 10]] (eigenvalues 2, 18) are closed forms: with
    lr = 0.01 the update rounds away once |x − x*| is a few float32 ulps."""
    starts = np.random.default_rng(0).uniform(-5, 5, (6, 2))
    for spec in ("gd:lr=0.01", "momentum", "nesterov", "optax:sgd:learning_rate=0.01"):
        r = bench.solve("booth", spec, starts, max_iter=3000, dtype="float32")
        # (a start may also land where float32's gradient is exactly 0: converged)
        assert set(r.status) <= {"stalled", "converged"} and sum(r.status == "stalled") >= 4, (spec, r.status)
        assert r.success.all() and r.nit.max() < 1500, (spec, r.nit)   # before: max_iter, unsolved
        assert np.abs(r.x - [1.0, 3.0]).max() <= 1e-5, (spec, r.x)
        stalled = r.status == "stalled"
        assert (r.grad_norm[stalled] > 1e-8).all()   # gtol was out of float32's reach there
    # in float64 the same starts meet gtol: a momentum step that turns around (v passing through
    # zero) is not taken for a fixed point
    for spec in ("momentum", "nesterov"):
        r = bench.solve("booth", spec, starts, max_iter=3000, dtype="float64")
        assert list(r.status) == ["converged"] * len(starts), (spec, r.status)


def test_float32_newton_raphson_at_a_stationary_point_ends_stalled():
    """Newton-Raphson converges quadratically to the nearest stationary point of Himmelblau's
    function (four minima, f = 0; four saddles and a maximum). In float32 ‖∇f‖ ≤ 1e-8 is out of
    reach next to values of f up to 181.6, and the full step then jitters x by an ulp: each start
    ends within a few iterations, ``converged`` or ``stalled`` (before: 7 of 10 ran 1,000), and
    exactly the starts at a minimum are solved, as in float64."""
    starts = np.random.default_rng(0).uniform(-5, 5, (10, 2))
    r32 = bench.solve("himmelblau", "newton-raphson", starts, max_iter=1000, dtype="float32")
    r64 = bench.solve("himmelblau", "newton-raphson", starts, max_iter=1000, dtype="float64")
    assert set(r32.status) <= {"converged", "stalled"} and r32.nit.max() <= 20, (r32.status, r32.nit)
    assert "stalled" in set(r32.status)
    assert list(r64.status) == ["converged"] * len(starts)
    np.testing.assert_array_equal(r32.success, r64.success)
    np.testing.assert_allclose(r32.x, r64.x, atol=1e-4)       # the same stationary points

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


def test_float32_results_are_written_with_float32_digits():
    """summary.csv/starts.csv numbers of a float32 run carry the digits float32 has: each is the
    shortest decimal that reads back as the same float32 (f = 0.0088295, not 0.00882949959486723),
    and a float64 run keeps float64's."""
    from bench import store
    starts = np.array([[-1.2, 1.0], [0.3, -0.7]])
    r32 = bench.solve("rosenbrock", "gd:lr=0.001", starts, max_iter=40, dtype="float32")
    row, rows = store.summarize(r32, 2, "t.npz")
    values = [row["f_final_median"], row["grad_norm_median"]] + [r[k] for r in rows for k in ("f_final", "grad_norm_final")]
    for v, exact in zip(values[2:], [x for i in range(2) for x in (r32.fun[i], r32.grad_norm[i])]):
        assert np.float32(v) == exact and v == float(str(np.float32(exact)))
    for v in values:
        digits = repr(v).split("e")[0].replace(".", "").replace("-", "").lstrip("0")
        assert len(digits) <= 9, repr(v)
    r64 = bench.solve("rosenbrock", "gd:lr=0.001", starts, max_iter=40, dtype="float64")
    _, rows64 = store.summarize(r64, 2, "t.npz")
    assert [r["f_final"] for r in rows64] == [float(v) for v in r64.fun]
    assert max(len(repr(r["f_final"])) for r in rows64) > 12      # float64's digits are kept


def test_float32_success_tolerance_is_relative_to_f_star_at_float32_resolution():
    """At a nonzero f*, float32 rounding of the sum of squares alone puts the best reachable f a
    few 1e-6 of f above the certified float64 value, so float64's 1e-6 relative tolerance would
    call every float32 fit unsolved; float32 uses √ε ≈ 3.5e-4 relative (the 1e-6 absolute floor
    stays, so f* = 0 problems are judged as in float64)."""
    from bench.solve import STATUS_STALLED, success_mask
    stalled = np.array([STATUS_STALLED] * 3)
    fs = 835.6528883639247
    assert list(success_mask(stalled, fs + np.array([5e-4, 1e-3, 0.3]), fs, "float64")) == [True, False, False]
    assert list(success_mask(stalled, fs + np.array([5e-4, 1e-3, 0.3]), fs, "float32")) == [True, True, False]
    assert list(success_mask(stalled, np.array([5e-7, 2e-6, 1e-4]), 0.0, "float32")) == [True, False, False]
    # the course's Gaussian fit: every Hessian method stops at the float32 minimum, 3.5e-6 of f
    # above f*; before, each of them counted as failing
    p = problems.get("gaussian-fit")
    for spec in ("newton", "gauss-newton", "levenberg-marquardt"):
        r = bench.solve(p, spec, max_iter=100, dtype="float32")
        assert r.status in ("converged", "stalled", "linesearch_failed"), (spec, r.status)
        assert 0 < r.fun - p.f_star < 1e-5 * p.f_star and r.success, (spec, r.fun, p.f_star)
