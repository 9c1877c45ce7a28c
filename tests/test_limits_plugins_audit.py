"""Audit of the up-front memory check (bench/limits.py), plug-in loading (bench/plugins.py) and
the command line's listing and help.

The memory tests compare the estimate with lower bounds that follow from what a batched solve
must hold (each start evaluates f over all of a regression's samples) and with the peak memory a
small solve really takes, measured in a child process; nothing here allocates more than a few
hundred MB.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import optimizers
import problems
from bench import limits, plugins
from bench.cli import main
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the memory estimate ---------------------------------------------------------------------

def test_estimate_counts_each_starts_pass_over_a_regressions_samples():
    """A batch of B starts on logreg with m samples computes the m margins yᵢ xᵢ·w of every start
    at once (vmap over starts): at least B·m numbers, whatever the method. The estimate counted
    only the data (once) and n-vectors: 9 MiB for 200 starts × 10⁵ samples, against a B·m floor
    of 153 MiB (measured peak 320 MiB), so `logreg:n=1000000 × newton --starts 1000` passed the
    check and was killed for memory."""
    m, b = 100_000, 200
    p = problems.get(f"logreg:n={m}:d=5")
    floor = b * m * 8
    for name in ("gd", "lbfgs", "bfgs", "newton", "newton-cg", "trust-region"):
        est = limits.estimate(p, optimizers.get(name), b, 5)
        assert est["total"] >= floor, (name, est["total"], floor)
    # Newton's Hessian by forward-over-reverse carries d tangents through those m margins
    est = limits.estimate(p, optimizers.get("newton"), b, 5)
    assert est["total"] >= 5 * floor


def test_an_mlp_counts_its_hidden_activations_per_start():
    """mlp:hidden=h:n=N evaluates N·h hidden activations per start; Newton pushes its n = 3h + 1
    tangents through them. The estimate said 1.3 MiB for 10 Newton starts (measured 430 MiB)."""
    h, n_samples, b = 20, 2000, 10
    p = problems.get(f"mlp:hidden={h}:n={n_samples}")
    assert p.dim == 3 * h + 1
    gd = limits.estimate(p, optimizers.get("gd"), 200, 5)
    assert gd["total"] >= 200 * n_samples * h * 8
    newton = limits.estimate(p, optimizers.get("newton"), b, 5)
    assert newton["total"] >= b * p.dim * n_samples * h * 8


def test_platform_dependent_branches_are_read_for_the_device():
    """linreg's f is ``lax.platform_dependent``: a blocked loop on the CPU (its data sliced
    block by block, a loop constant, not a per-start array), the plain X·b elsewhere: the
    per-start array is at most the m residuals on either."""
    m, d = 20_000, 50
    p = problems.get(f"linreg:n={m}:d={d}")
    for platform in ("cpu", "gpu"):
        big = limits._largest_array(p, "float64", platform)
        assert d <= big <= m + d, (platform, big)


def _peak_mib(spec, opt, starts, max_iter):
    """Peak resident memory a solve adds, measured in a child process (MiB)."""
    code = f"""
import importlib, resource, json, numpy as np, bench, problems, optimizers
# no untimed first execution inside the compile: it would touch the solve's memory before the
# high-water mark is reset, and the solve measured below would add next to nothing
importlib.import_module("bench.solve")._warm_up = lambda *a, **k: 0.0
p, o = problems.get({spec!r}), optimizers.get({opt!r})
x0s = np.asarray(p.x0)[None, :] * (1 + 0.01 * np.random.default_rng(0).standard_normal(({starts}, p.dim)))
bench.precompile(p, o, x0s, max_iter={max_iter})
def status(key):
    with open("/proc/self/status") as fh:
        return [int(l.split()[1]) for l in fh if l.startswith(key)][0]
try:   # reset the high-water mark, so that the compile's own peak is not counted
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    peak = lambda: status("VmHWM")
except OSError:
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cur = status("VmRSS")
r = bench.solve(p, o, x0s, max_iter={max_iter})
r.trace.arrays()
print(json.dumps((peak() - cur) / 1024))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_estimate_brackets_the_measured_peak_of_a_data_heavy_solve():
    """Measured, not modelled: 200 gd starts on an MLP with 2000 samples × 20 hidden units peak at
    ~135 MiB; the estimate must not fall below the peak (the check exists to refuse what would
    be killed) nor lie far above it (it would refuse runs that fit)."""
    spec, opt, b, it = "mlp:hidden=20:n=2000", "gd", 200, 5
    real = _peak_mib(spec, opt, b, it)
    est = limits.estimate(problems.get(spec), optimizers.get(opt), b, it)["total"] / 2 ** 20
    # (resident-set peaks vary by some 10 % with the allocator and thread start-up: 0.8 leaves room)
    assert real * 0.8 <= est <= real * 2.5, (est, real)


def test_a_single_large_newton_start_counts_the_factorisations_workspace():
    """One Newton start at n = 2000 measured 6.9 n² numbers (trust-region 7.9 n²): the Hessian,
    its eigendecomposition's workspace and the tangents' output, beyond the 4 n² per start the
    estimate allowed; so at n ≈ 2·10⁴ a run the check let through needed twice the memory."""
    n = 2000
    p = problems.get(f"rosenbrock:dim={n}")
    for name, measured in (("newton", 6.9), ("trust-region", 7.9)):
        est = limits.estimate(p, optimizers.get(name), 1, 3)
        assert est["total"] >= measured * n * n * 8, (name, est["total"] / (n * n * 8))
    # and per start it stays the dense count: 200 starts at n = 200 measured 3.1 n² each
    est = limits.estimate(problems.get("rosenbrock:dim=200"), optimizers.get("newton"), 200, 3)
    assert est["total"] <= 2 * 200 * 3.1 * 200 * 200 * 8 + est["history"] + est["state"]


def test_refusal_of_a_data_heavy_cell_is_one_line_naming_it_and_what_to_change(tmp_path, capsys, monkeypatch):
    """A cell that fits the data but not B copies of its per-start arrays is refused before
    anything is compiled or written (before, it ran: 320 MiB against a 200 MiB budget)."""
    monkeypatch.setenv(limits.ENV_LIMIT, "200M")
    out = tmp_path / "never"
    rc = main(["run", "--problems", "logreg:n=100000", "--optimizers", "gd", "--starts", "200",
               "--max-iter", "5", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "logreg:n=100000 × gd with 200 start(s)" in err and "fewer starts" in err and "200.0 MiB" in err
    assert not out.exists()


def test_refusal_python_api_for_a_large_regression(monkeypatch):
    """The documented failure: 1000 Newton starts on 10⁶ samples need ~100 GiB (5·10⁹ numbers
    for the d = 5 tangents alone); the check let it through with an estimate of 0.2 GiB."""
    monkeypatch.setenv(limits.ENV_LIMIT, "20G")
    p = problems.get("logreg:n=1000000")
    with pytest.raises(OptbenchError, match=r"logreg:n=1000000 × newton with 1000 start\(s\).*needs about"):
        limits.check(p, optimizers.get("newton"), 1000, 100)


def test_every_refusal_carries_a_hint_even_when_no_part_dominates(monkeypatch):
    """A hint was given only for a part above half of the total; parts of a third each left the
    message without any advice."""
    monkeypatch.setenv(limits.ENV_LIMIT, "1K")
    p = problems.get("rosenbrock:dim=9")
    opt = optimizers.get("newton")
    est = limits.estimate(p, opt, 10, 20)
    assert max(est.get(k, 0) for k in ("history", "state", "eval", "matrices", "data")) <= est["total"] / 2
    with pytest.raises(OptbenchError) as info:
        limits.check(p, opt, 10, 20)
    msg = str(info.value)
    assert "fewer starts" in msg or "matrix-free" in msg, msg


# -- plug-ins --------------------------------------------------------------------------------

def test_plugin_with_a_null_byte_has_no_line_none(tmp_path, capsys):
    """Python's syntax error for a null byte has no line number: the message said '(line None)'."""
    bad = tmp_path / "nul.py"
    bad.write_bytes(b"x = 1\n\x00\n")
    rc = main(["list", "problems", "--plugin", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "line None" not in err and "syntax error" in err


def test_a_failed_plugin_does_not_leave_its_folder_importable(tmp_path):
    folder = tmp_path / "plugdir"
    folder.mkdir()
    (folder / "fails.py").write_text("raise RuntimeError('no')\n")
    with pytest.raises(OptbenchError, match="RuntimeError: no"):
        plugins.load_plugin(str(folder / "fails.py"))
    assert os.path.realpath(str(folder)) not in sys.path


PLUGIN = """
import numpy as np, jax.numpy as jnp, problems
problems.register(problems.Problem(name="{name}", f=lambda x: jnp.sum(x * x), x0=np.ones(2), f_star=0.0))
"""


def test_plugin_paths_relative_to_cwd_and_to_the_suite_file(tmp_path, monkeypatch, capsys, registry_snapshot):
    """--plugin resolves against the working directory, a suite's ``plugins`` against the
    suite file's folder (README: "relative to this file"), also under a name with spaces and
    non-ASCII letters. The memory limit stops each run right after the names resolve, so the
    plug-in's problem named in the refusal proves it was loaded."""
    monkeypatch.setenv(limits.ENV_LIMIT, "1")
    sub = tmp_path / "süite dir"
    sub.mkdir()
    (sub / "plüg in.py").write_text(PLUGIN.format(name="audit-suite-p"))
    (sub / "s.toml").write_text('problems = ["audit-suite-p"]\noptimizers = ["gd"]\nplugins = ["plüg in.py"]\n')
    (tmp_path / "cli plug.py").write_text(PLUGIN.format(name="audit-cli-p"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", os.path.join("..", "süite dir", "s.toml"), "--out", "o", "--quiet"]) == 2
    assert "audit-suite-p × gd" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--plugin", "cli plug.py", "--problems", "audit-cli-p", "--optimizers", "gd",
                 "--out", "o", "--quiet"]) == 2
    assert "audit-cli-p × gd" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (elsewhere / "o").exists()


# -- listing and help ------------------------------------------------------------------------

def test_list_optimizers_descriptions_are_whole_sentences(capsys):
    """The description column printed the docstring's first *line*, cut mid-sentence
    ('BFGS with the inverse-Hessian update (Broyden, Fletcher, Goldfarb, Shanno 1970; N&W')."""
    assert main(["list", "optimizers"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0]
    for line in table.splitlines():
        name = line.split()[0]
        if name.endswith(":"):
            continue
        doc = line.rstrip()
        assert doc.endswith((".", ")", "…")), (name, doc[-60:])


def test_help_of_every_subcommand_is_exit_0_with_nothing_on_stderr():
    for cmd in ([], ["--help"], ["list", "--help"], ["run", "--help"], ["check", "--help"], ["perf", "--help"]):
        out = subprocess.run([sys.executable, "-m", "bench", *cmd], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
        assert out.returncode == 0 and out.stderr == "" and "usage:" in out.stdout, (cmd, out.stderr)


def test_a_cuda_branch_is_the_one_a_gpu_device_runs():
    """lax.platform_dependent names its branches by lowering platform ("cuda"), a device by
    "gpu": a GPU's estimate follows the cuda branch, not the default one."""
    import jax
    import jax.numpy as jnp

    def f(x):
        small = lambda x: jnp.sum(x * x)                             # noqa: E731
        big = lambda x: jnp.sum(jnp.outer(x, jnp.ones(5000)) ** 2)   # noqa: E731
        return jax.lax.platform_dependent(x, cpu=small, cuda=big, default=small)

    p = problems.Problem(name="plat", f=f, x0=[1.0, 1.0, 1.0])
    assert limits._largest_array(p, "float64", "cpu") < 5000
    assert limits._largest_array(p, "float64", "gpu") >= 3 * 5000
