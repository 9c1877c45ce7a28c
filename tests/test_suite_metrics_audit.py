"""Audit of suite files, the shipped suites, the measures of ``bench.metrics`` and ``optbench list``.

Suites: what the README's schema documents against what the parser accepts, one-line errors for
mistakes a file can make (a cell given twice with other settings, a group's ``exclude`` against a
list, seeds past 32 bits, a malformed device), what the shipped suites hold (cells, problems,
starts), and random starts that depend only on the problem and the seed.

Metrics: every measure recomputed by hand — plain loops and numpy written out here, never
``bench.metrics`` itself — on small traces with ties, all-failed cells, NaN/inf values, f*
unknown, one start, and even/odd counts for medians; and the work measure checked against the
counts of one real solve (the only compilation in this file).

List: every registered name listed with its parameters, whole first sentences as descriptions,
one-line errors for bad arguments.
"""
import fnmatch
import math
import os
import re

import numpy as np
import pytest

import optimizers
import problems
from bench import metrics, suite
from bench.cli import main
from bench.metrics import WorkWeights
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INF = np.inf


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def _one_line_error(text, path="a.toml", overrides=None):
    with pytest.raises(OptbenchError) as ei:
        suite.expand(suite.parse(text, path=path), overrides)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    return msg


# ===================================================================================================
# suite files: mistakes the parser used to let through
# ===================================================================================================

def test_same_cell_in_two_groups_with_other_settings_is_an_error(tmp_path, capsys):
    """rosenbrock × newton in two groups with other max_iter/starts: a run holds a cell once, so the
    second group's settings were dropped without a word (the run used max_iter 10, 10 starts)."""
    text = ('problems = ["rosenbrock"]\noptimizers = ["newton"]\n'
            '[[group]]\nmax_iter = 10\n'
            '[[group]]\nmax_iter = 500\nstarts = 3\n')
    msg = _one_line_error(text)
    assert msg.startswith("a.toml [group 2]: rosenbrock × newton is also in a.toml [group 1] with other settings")
    assert "max_iter 500 here, 10 there" in msg and "starts 3 here, 10 there" in msg
    # through the command line: exit 2, one line, nothing written
    path = tmp_path / "two.toml"
    path.write_text(text)
    out = str(tmp_path / "never")
    assert main(["run", str(path), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "[group 2]: rosenbrock × newton is also in" in err and err.count("\n") == 1 and not os.path.exists(out)
    # a respelling of the same setting (gd:lr=0.001 is gd's default) is the same cell
    lr = optimizers.describe("gd")["params"]["lr"]
    msg = _one_line_error(f'[[group]]\nproblems = ["rosenbrock"]\noptimizers = ["gd"]\n'
                          f'[[group]]\nproblems = ["rosenbrock"]\noptimizers = ["gd:lr={lr}"]\nseeds = [1]\n')
    assert "rosenbrock × gd is also in" in msg and "seeds [1] here, [0] there" in msg
    # the same settings twice are one cell, as before
    cells = suite.expand(suite.parse('problems = ["rosenbrock"]\noptimizers = ["newton"]\n[[group]]\n[[group]]\n',
                                     path="a.toml"))
    assert [c.key for c in cells] == [("rosenbrock", "newton")]
    # the command line's --problems/--optimizers replace every group's selection: the groups then
    # collapse onto one cell under the first group's settings (not the file's mistake)
    cells = suite.expand(suite.parse(text, path="a.toml"), {"problems": ["himmelblau"]})
    assert [(c.key, c.max_iter, c.starts) for c in cells] == [(("himmelblau", "newton"), 10, 10)]


def test_group_exclude_against_an_inherited_list_is_an_error():
    """A group's ``exclude`` under a top-level optimizer *list* was ignored: gd still ran."""
    msg = _one_line_error('problems = ["rosenbrock"]\noptimizers = ["newton", "gd"]\n[[group]]\nexclude = ["gd"]\n')
    assert msg == "a.toml [group 1]: key 'exclude' applies only to optimizers = \"all\""
    # under "all" (given or the default) it removes the names it lists
    cells = suite.expand(suite.parse('problems = ["rosenbrock"]\n[[group]]\nexclude = ["gd"]\n', path="a.toml"))
    assert {c.optimizer.spec for c in cells} == set(suite.all_optimizers()) - {"gd"}


@pytest.mark.parametrize("seeds", ["seed = 4294967296", "seeds = [0, 4294967296]", "seed = 9223372036854775807"])
def test_seeds_past_32_bits_are_refused(seeds):
    """Random starts are drawn from the seed's low 32 bits, so seed 2³² repeated seed 0's starts:
    ``seeds = [0, 4294967296]`` pooled the same random starts twice."""
    p = problems.get("rosenbrock")
    with pytest.raises(OptbenchError, match="seed must be an integer from 0 to 4294967295"):
        p.random_starts(3, 2 ** 32)   # it drew seed 0's starts (the low 32 bits): why the bound exists
    msg = _one_line_error(f'problems = ["rosenbrock"]\noptimizers = ["newton"]\n{seeds}\n')
    key = seeds.split()[0]
    assert re.fullmatch(rf"a\.toml: key '{key}' must be at most 4294967295, got \d+", msg), msg
    # the largest allowed seed is fine, and the command line's --seed is held to the same bound
    cells = suite.expand(suite.parse('problems = ["rosenbrock"]\noptimizers = ["newton"]\nseed = 4294967295\n'
                                     'starts = 3\n', path="a.toml"))
    assert cells[0].seeds == (2 ** 32 - 1,) and len(np.unique(cells[0].x0s(), axis=0)) == 3
    with pytest.raises(OptbenchError, match=r"^--seed must be at most 4294967295, got 4294967296$"):
        suite._check_value("cli", "seed", 2 ** 32)


def test_cli_seed_past_32_bits_exit_2_nothing_written(tmp_path, capsys):
    out = str(tmp_path / "never")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--seed", str(2 ** 32),
                 "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == "optbench: error: --seed must be at most 4294967295, got 4294967296\n"
    assert not os.path.exists(out)


@pytest.mark.parametrize("device, ok", [("cpu", True), ("gpu", True), ("cpu:0", True), ("GPU:1", True),
                                        ("tpu", False), ("cpu:x", False), ("gpu0", False), ("cuda", False),
                                        ("cpu:", False), ("cpu:\u00b2", False)])
def test_suite_device_is_checked_where_the_file_says_it(device, ok):
    """``device = "tpu"`` parsed and failed later as "unknown device 'tpu'", naming neither the
    file nor the key. (Whether a well-formed device exists is decided when the run starts.)"""
    text = f'problems = ["rosenbrock"]\noptimizers = ["newton"]\ndevice = "{device}"\n'
    if ok:
        assert suite.parse(text, path="a.toml").device == device
    else:
        msg = _one_line_error(text)
        assert msg == f"a.toml: key 'device' must be cpu, gpu, cpu:N or gpu:N, got '{device}'"


def test_cli_problems_are_not_blamed_on_the_suite_file():
    """--problems replaces a suite's selection: a pattern that matches nothing named the suite
    file, and the scaling suite's own dims refused --problems rosenbrock:dim=10 as the file's
    mistake ("key 'dims' given but no problem of the group has a free dimension parameter")."""
    s = suite.load("scaling")
    with pytest.raises(OptbenchError) as ei:
        suite.expand(s, {"problems": ["nosuch:*"], "optimizers": ["lbfgs"]})
    assert str(ei.value) == "--problems: no registered problem matches 'nosuch:*'"
    cells = suite.expand(s, {"problems": ["rosenbrock:dim=10"], "optimizers": ["lbfgs"]})
    assert [c.key for c in cells] == [("rosenbrock:dim=10", "lbfgs")]
    # a problem with a free dimension still takes the groups' dims
    cells = suite.expand(s, {"problems": ["rosenbrock"], "optimizers": ["lbfgs"]})
    assert [c.problem.dim for c in cells] == [10, 100, 1000, 10 ** 4, 10 ** 5, 10 ** 6]
    # and a suite file's own mistake is still the file's
    msg = _one_line_error('problems = ["himmelblau"]\noptimizers = ["newton"]\ndims = [3]\n')
    assert msg.startswith("a.toml: key 'dims' given but no problem")


# ===================================================================================================
# suite files: the documented schema against the parser
# ===================================================================================================

def test_readme_schema_names_exactly_the_keys_the_parser_accepts():
    readme = _readme()
    section = readme.split("## Suites", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    documented = set()
    for b in blocks:
        documented |= set(re.findall(r"^(?:\[\[)?([a-z_]+)(?:\]\])?\s*(?:=|$)", b, re.M))
    # keys named in the prose and comments: seeds (in seed's comment), exclude (in a bullet)
    documented |= {k for k in ("seeds", "exclude") if f"`{k} = " in section or f"{k} = [" in section}
    assert documented == set(suite.GROUP_KEYS) | set(suite.TOP_KEYS)
    # the comments' claims: starts = x0 + starts−1 random; each seed adds starts−1, pooled; repeats 1 to 1,000
    assert suite.MAX_REPEATS == 1000 and "(1 to 1,000)" in section
    s = suite.parse('problems = ["rosenbrock"]\noptimizers = ["newton"]\nstarts = 10\nseeds = [0, 1, 2]\n',
                    path="a.toml")
    x = suite.expand(s)[0].x0s()
    assert x.shape == (1 + 3 * 9, 2) and len(np.unique(x, axis=0)) == 28


@pytest.mark.parametrize("line, needle", [
    ("seeds = 3", "key 'seeds' must be a non-empty list of integers, got 3"),
    ("seeds = [0, 1.5]", "key 'seeds' must be an integer, got 1.5"),
    ("seed = true", "key 'seed' must be an integer, got True"),
    ("dims = 2", "key 'dims' must be a non-empty list of integers, got 2"),
    ("dims = []", "key 'dims' must be a non-empty list of integers, got []"),
    ('dims = ["2"]', "key 'dims' must be an integer, got '2'"),
    ('gtol = "1e-8"', "key 'gtol' must be a finite number >= 0, got '1e-8'"),
    ("gtol = nan", "key 'gtol' must be a finite number >= 0, got nan"),
    ("gtol = inf", "key 'gtol' must be a finite number >= 0, got inf"),
    ("repeats = 1001", "key 'repeats' must be at most 1000, got 1001"),
    ("repeats = 0", "key 'repeats' must be at least 1, got 0"),
    ("max_iter = 0", "key 'max_iter' must be at least 1, got 0"),
    ("starts = 0", "key 'starts' must be at least 1, got 0"),
    ("dtype = 64", "key 'dtype' must be one of float64, float32, got 64"),
    ("pack = 1", "key 'pack' must be true or false, got 1"),
    ('plugins = [""]', "key 'plugins' must be a list of file paths"),
    ("name = 3", "key 'name' must be a string, got 3"),
    ("optimizers = 3", "key 'optimizers' must be a non-empty list of names or \"all\", got 3"),
    ('optimizers = ["newton", 3]', "key 'optimizers': entries must be spec strings, got 3"),
    ('optimizers = ["newton", ""]', "key 'optimizers': entries must be spec strings, got ''"),
    ('exclude = []', "key 'exclude' must be a non-empty list of names, got []"),
    ("[[group]]\nplugins = []", "a.toml [group 1]: unknown key 'plugins'"),
    ("[[group]]\ndevice = \"cpu\"", "a.toml [group 1]: unknown key 'device'"),
    ("Problems = []", "unknown key 'Problems' (did you mean: problems?)"),
])
def test_wrong_types_and_values_are_one_line_naming_file_and_key(line, needle):
    msg = _one_line_error('problems = ["rosenbrock"]\n' + line + "\n")
    assert needle in msg and msg.startswith("a.toml"), msg


# ===================================================================================================
# the shipped suites against the README's table
# ===================================================================================================

def _shipped(name):
    cells = suite.expand(suite.load(name))
    probs = list(dict.fromkeys(c.problem.spec for c in cells))
    opts = list(dict.fromkeys(c.optimizer.spec for c in cells))
    return cells, probs, opts


def _pairs(probs, opts):
    """Every problem × optimizer pair that fits (least-squares methods need residuals)."""
    return {(p, o) for p in probs for o in opts
            if not (optimizers.get(o).needs_residuals and not problems.get(p).has_residuals)}


def test_shipped_suites_hold_what_the_readme_table_says():
    section = _readme().split("## Suites", 1)[1].split("```toml", 1)[0]
    table = dict(re.findall(r"^\| `(\w+)` \| (.*?) \|$", section, re.M))
    assert set(table) == set(suite.shipped())
    every = suite.all_optimizers()

    # quick: rosenbrock, himmelblau, an ill-conditioned quadratic (n = 10) × every optimizer, 5 starts, fixed seed
    cells, probs, opts = _shipped("quick")
    assert probs[:2] == ["rosenbrock", "himmelblau"] and len(probs) == 3
    q = problems.get(probs[2])
    assert q.spec.startswith("quadratic") and q.dim == 10
    assert set(opts) == set(every) and {c.key for c in cells} == _pairs(probs, opts)
    assert {c.x0s().shape[0] for c in cells} == {5} and {c.seeds for c in cells} == {(0,)}

    # default: one method of each kind on two 2-D classics, 10 starts
    cells, probs, opts = _shipped("default")
    assert probs == ["rosenbrock", "himmelblau"] and all(problems.get(p).dim == 2 for p in probs)
    assert len(set(opts)) == len(opts) == 10 and {c.x0s().shape[0] for c in cells} == {10}

    # classic: 2-D test functions with known minima
    cells, probs, opts = _shipped("classic")
    for p in probs:
        prob = problems.get(p)
        assert prob.dim == 2 and prob.f_star is not None and math.isfinite(prob.f_star), p
    assert set(opts) == set(every) and {c.key for c in cells} == _pairs(probs, opts)

    # mgh: every mgh:* problem, standard start + 3 random starts, × every optimizer
    cells, probs, opts = _shipped("mgh")
    assert "`mgh:*`" in table["mgh"] and "3 random starts" in table["mgh"]
    assert set(probs) == set(fnmatch.filter(problems.names(), "mgh:*")) and len(probs) == 35   # MGH's 35
    assert set(opts) == set(every) and {c.key for c in cells} == _pairs(probs, opts)
    for c in cells[:: len(opts)]:
        x = c.x0s()
        assert x.shape[0] == 4 and np.array_equal(x[0], c.problem.x0)

    # nist: the 27 NIST StRD nonlinear regressions from both certified starts
    cells, probs, opts = _shipped("nist")
    assert "27" in table["nist"]
    members = problems.describe("nist:")["members"]
    assert len(members) == 27
    assert sorted(probs) == sorted(f"nist:{m}:start={s}" for m in members for s in (1, 2))
    assert {c.x0s().shape[0] for c in cells} == {1} and len(cells) == len(probs) * len(opts)
    kinds = {o: optimizers.get(o) for o in opts}
    assert any(k.needs_residuals for k in kinds.values())                       # least squares
    assert {"bfgs", "trust-region"} <= set(opts)                               # quasi-Newton, trust region
    for p in probs[:2] + probs[27:29]:   # NIST's starts are the x0s
        prob = problems.get(p)
        assert prob.f_star is not None

    # scaling: extended Rosenbrock (MGH 21) from the standard start, n = 10 … 10⁶;
    # dense methods to 10³, matrix-free ones to 10⁶
    cells, probs, opts = _shipped("scaling")
    assert {c.x0s().shape[0] for c in cells} == {1}
    assert sorted({c.problem.dim for c in cells}) == [10 ** k for k in range(1, 7)]
    assert all(c.problem.spec.startswith("mgh:extended-rosenbrock:") for c in cells)
    dense = {"newton", "trust-region", "bfgs"}
    assert max(c.problem.dim for c in cells if c.optimizer.spec in dense) == 1000
    assert {c.optimizer.spec for c in cells if c.problem.dim == 10 ** 6} == {"lbfgs", "newton-cg", "trust-ncg"}

    # course: GD with a learning-rate grid and Newton-Raphson on simple functions, linear
    # regression, the Gaussian fit, a small neural net
    cells, probs, opts = _shipped("course")
    assert {"linreg", "gaussian-fit", "mlp"} <= set(probs) and "newton-raphson" in opts
    assert len([o for o in opts if o.startswith("gd:lr=")]) >= 3


def test_random_starts_depend_only_on_problem_and_seed():
    """The same problem gets the same starts whatever else a suite selects and in whatever order;
    the standard x0 first, then starts−1 uniform draws in the box; another seed, other draws."""
    def starts(problem_list, seeds="seed = 7"):
        s = suite.parse(f"problems = {problem_list!r}\noptimizers = [\"newton\"]\nstarts = 6\n{seeds}\n"
                        .replace("'", '"'), path="a.toml")
        return {c.problem.spec: c.x0s() for c in suite.expand(s)}
    a = starts(["rosenbrock", "himmelblau", "beale"])
    b = starts(["beale", "mgh:wood", "himmelblau", "rosenbrock"])
    for p in a:
        np.testing.assert_array_equal(a[p], b[p])
        prob = problems.get(p)
        lo, hi = prob.bounds
        assert np.array_equal(a[p][0], prob.x0)
        assert np.all((a[p][1:] >= lo) & (a[p][1:] <= hi)) and len(np.unique(a[p], axis=0)) == 6
    c = starts(["rosenbrock"], "seed = 8")["rosenbrock"]
    assert np.array_equal(c[0], a["rosenbrock"][0]) and not np.any(np.all(c[1:, None] == a["rosenbrock"][None, 1:], -1))
    # pooled seeds: seed 7's block, then seed 8's random starts
    d = starts(["rosenbrock"], "seeds = [7, 8]")["rosenbrock"]
    np.testing.assert_array_equal(d, np.vstack([a["rosenbrock"], c[1:]]))


# ===================================================================================================
# metrics: recomputed by hand
# ===================================================================================================

def _cell(f, nit, f_star=0.0, grad_norm=None, nfev=None, njev=None, nhev=None, nhvp=None, success=None,
          run_s_all=(1.0,), **extra):
    f = np.asarray(f, float)
    b, t = f.shape
    cnt = lambda a: np.zeros((b, t), int) if a is None else np.asarray(a)  # noqa: E731
    out = {"trace_f": f, "trace_grad_norm": f if grad_norm is None else np.asarray(grad_norm, float),
           "trace_nfev": cnt(nfev), "trace_njev": cnt(njev), "trace_nhev": cnt(nhev), "trace_nhvp": cnt(nhvp),
           "nit": np.asarray(nit), "f_star": np.array(np.nan if f_star is None else f_star),
           "success": np.ones(b, bool) if success is None else np.asarray(success, bool),
           "run_s_all": np.asarray(run_s_all, float)}
    out.update(extra)
    return out


def _lerp_quantile(values, q):
    """Quantile by linear interpolation between order statistics, written out: NaN ignored,
    ±inf kept (an interpolation between two equal infinities is that infinity)."""
    v = sorted(x for x in values if not math.isnan(x))
    if not v:
        return math.nan
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    frac = pos - lo
    if frac == 0 or v[lo] == v[hi]:
        return v[lo]
    return v[lo] + (v[hi] - v[lo]) * frac


def test_nan_quantiles_keep_equal_infinite_endpoints():
    """The upper quartile of [1, 2, inf, inf] is inf (between two infinities); it came out NaN,
    below a median of inf. Same for −inf at the low end."""
    cols = [[1.0, 2.0, INF, INF], [-INF, -INF, 1.0, np.nan], [INF, INF, INF, INF], [3.0, np.nan, 1.0, 2.0],
            [-INF, 0.0, 1.0, INF], [np.nan] * 4, [5.0, 5.0, 5.0, 5.0]]
    v = np.array(cols).T
    qs = (0.0, 0.25, 0.5, 0.75, 1.0)
    got = metrics.nan_quantiles(v, qs)
    for i, q in enumerate(qs):
        want = [_lerp_quantile(c, q) for c in cols]
        np.testing.assert_array_equal(got[i], want, err_msg=f"q={q}")
    assert got[3][0] == INF and got[1][1] == -INF


@pytest.mark.parametrize("b", [1, 2, 3, 4, 7])
def test_median_band_even_odd_counts_ignore_non_finite(b):
    rng = np.random.default_rng(b)
    v = rng.normal(size=(b, 6))
    v[rng.random(v.shape) < 0.25] = np.nan
    if b > 1:
        v[0, 1], v[-1, 2] = INF, -INF          # non-finite values leave the band
    med, q25, q75 = metrics.median_band(v)
    for j in range(v.shape[1]):
        col = [x for x in v[:, j] if math.isfinite(x)]
        assert _same(med[j], _lerp_quantile(col, 0.5)) and _same(q25[j], _lerp_quantile(col, 0.25))
        assert _same(q75[j], _lerp_quantile(col, 0.75))
        if len(col) == 2:   # even count: the mean of the two middle values
            assert med[j] == pytest.approx((col[0] + col[1]) / 2)
    # a floor lifts values, never NaNs
    med, _, _ = metrics.median_band(np.array([[1e-30, np.nan], [1e-25, np.nan], [1.0, np.nan]]), floor=1e-20)
    assert med[0] == 1e-20 and np.isnan(med[1])


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_work_weights_formula_and_duplicates():
    """work = nfev + g·njev + h·nhev + hvp·nhvp (h = 2n by default); "h=2n,h=5" kept only the last."""
    nfev, njev, nhev, nhvp = ([[1, 3, 6]], [[1, 2, 4]], [[0, 1, 2]], [[0, 5, 9]])
    c = _cell([[3.0, 2.0, 1.0]], [2], nfev=nfev, njev=njev, nhev=nhev, nhvp=nhvp)
    for text, n, (g, h, hvp) in (("", 3, (1, 6, 2)), ("g=0.5,h=5,hvp=3", 3, (0.5, 5, 3)), ("h=3n", 4, (1, 12, 2)),
                                 ("h=n", 7, (1, 7, 2)), ("hvp=0", 2, (1, 4, 0))):
        w = metrics.work(c, n, WorkWeights.parse(text))
        for k in range(3):
            assert w[0, k] == nfev[0][k] + g * njev[0][k] + h * nhev[0][k] + hvp * nhvp[0][k], (text, k)
    assert WorkWeights.parse("h=5").label() == "nfev + 1·njev + 5·nhev + 2·nhvp"
    assert WorkWeights().label() == "nfev + 1·njev + 2n·nhev + 2·nhvp"
    # a cell without Hessian counts (e.g. written by an older version) counts them as zero
    c2 = {k: v for k, v in c.items() if k not in ("trace_nhev", "trace_nhvp")}
    np.testing.assert_array_equal(metrics.work(c2, 3), np.array(nfev) + np.array(njev))
    for text in ("h=2n,h=5", "g=1,hvp=3,g=1"):
        with pytest.raises(OptbenchError, match="given twice"):
            WorkWeights.parse(text)


def test_time_run_seconds_and_iterations_fallbacks():
    # run_s from the summary when finite, else the median of run_s_all (even count: mean of the middle two)
    c = _cell([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]], [2, 1], run_s_all=(4.0, 1.0, 3.0, 2.0))
    assert metrics.run_seconds(c) == 2.5 and metrics.run_seconds(c, float("nan")) == 2.5
    assert metrics.run_seconds(c, 6.0) == 6.0 and metrics.run_seconds(c, 0.0) == 0.0
    assert metrics.iterations_run(c) == 2                      # the slowest start
    assert metrics.iterations_run(dict(c, iterations_run=np.array(5))) == 5
    assert metrics.time_per_iteration(c) == 1.25
    # every start done at x0: one iteration's worth, not a division by zero
    c0 = _cell([[0.0, 0.0]], [0], run_s_all=(0.3,))
    assert metrics.time_per_iteration(c0) == 0.3
    assert math.isnan(metrics.run_seconds(_cell([[0.0]], [0], run_s_all=())))
    # time to target = iteration at target × time per iteration
    np.testing.assert_array_equal(metrics.target_costs(c, 0.5, "time", 1), [1.25, INF])


def test_costs_with_unknown_f_star_ties_nan_and_all_failed():
    """f* unknown: targets on ‖∇f‖; NaN values never count as reaching a target; a start that
    reaches the target but did not succeed has an infinite success cost; a cell where every start
    failed is a row of +inf and solves nothing in the profile; ties share the best ratio."""
    g = [[10.0, 1e-2, np.nan, 1e-9], [10.0, np.nan, 1e-3, 1e-3], [10.0, 10.0, 10.0, 10.0]]
    f = [[5.0, -1.0, -2.0, -3.0]] * 3
    nfev = [[1, 2, 3, 4]] * 3
    c = _cell(f, [3, 2, 3], f_star=None, grad_norm=g, nfev=nfev, success=[True, False, False])
    vals, label = metrics.convergence_values(c)
    assert label == "‖∇f‖" and np.array_equal(vals, np.asarray(g), equal_nan=True)
    # first k ≤ nit with ‖∇f‖ ≤ target, by hand: start 0 at k=1 (1e-2), start 1 at k=2 (NaN at 1 skipped)
    np.testing.assert_array_equal(metrics.target_costs(c, 1e-2, "iterations", 2), [1, 2, INF])
    np.testing.assert_array_equal(metrics.target_costs(c, 1e-3, "work", 2, WorkWeights(g=0)), [4, 3, INF])
    np.testing.assert_array_equal(metrics.target_costs(c, 1e-2, "iterations", 2), [1, 2, INF])
    # a target met exactly counts (≤)
    np.testing.assert_array_equal(metrics.target_costs(c, 10.0, "iterations", 2), [0, 0, 0])
    # success cost: where it stopped (nit), only for successful starts
    np.testing.assert_array_equal(metrics.success_costs(c, "iterations", 2), [3, INF, INF])
    np.testing.assert_array_equal(metrics.success_costs(c, "work", 2, WorkWeights(g=0)), [4, INF, INF])
    # ECDF on the gradient targets: start 0 reaches 1e-1 and 1e-2 at work 2, 1e-3 … 1e-8 at 4
    rt = metrics.ecdf_runtimes(c, 2, metrics.ECDF_TARGETS, WorkWeights(g=0), per_dim=False)
    np.testing.assert_array_equal(rt[0], [2, 2, 4, 4, 4, 4, 4, 4])
    np.testing.assert_array_equal(rt[1], [3, 3, 3, INF, INF, INF, INF, INF])
    assert np.all(np.isinf(rt[2]))
    # performance profile: ties, an all-failed solver, one instance nobody solves
    costs = np.array([[3.0, 3.0, INF], [2.0, 4.0, INF], [INF, INF, INF], [5.0, np.nan, INF]])
    taus, rho = metrics.performance_profile(costs, [1.0, 2.0, 1e6])
    by_hand = np.zeros((3, 3))
    for i, tau in enumerate([1.0, 2.0, 1e6]):
        for s in range(3):
            n = 0
            for p in range(4):
                row = [x for x in costs[p] if math.isfinite(x)]
                n += bool(row) and math.isfinite(costs[p, s]) and costs[p, s] <= tau * min(row)
            by_hand[i, s] = n / 4
    np.testing.assert_array_equal(rho, by_hand)
    assert rho[0].tolist() == [0.75, 0.25, 0.0]


def test_one_start_and_data_profile_edges():
    """One start; a start already at the best value (f(x0) = f_L: solved at x0); f_L per instance
    over every solver up to each one's nit; NaN in a trace never passes the test."""
    a = _cell([[4.0, 2.0, 1.0, 1.0]], [2], nfev=[[1, 2, 3, 3]])
    b = _cell([[4.0, np.nan, 0.0, -5.0]], [2], nfev=[[1, 2, 4, 5]])     # −5 is after b stopped
    f_low = metrics.best_values([a["trace_f"], b["trace_f"]], [a["nit"], b["nit"]])
    assert f_low.tolist() == [0.0]
    for tau, want_a, want_b in ((0.75, 1, 2), (0.5, 1, 2), (0.25, 2, 2), (1e-3, -1, 2)):
        # f(x0) − f ≥ (1 − τ)(f(x0) − f_L), k ≤ nit, by hand: need f ≤ 4 − (1 − τ)·4 (3, 2, 1, 0.004)
        assert metrics.data_profile_test(a["trace_f"], f_low, tau, a["nit"]).tolist() == [want_a]
        assert metrics.data_profile_test(b["trace_f"], f_low, tau, b["nit"]).tolist() == [want_b]
    # nothing to gain from x0: solved at k = 0, at the cost of the first evaluation
    flat = np.array([[2.0, 2.0, 2.0]])
    assert metrics.data_profile_test(flat, 2.0, 1e-7, np.array([2])).tolist() == [0]
    # d_s(κ) by hand: costs t over n + 1 against κ
    t = np.array([[3.0, 8.0], [INF, 2.0]])
    d = metrics.data_profile(t, np.array([1, 3]), [1.0, 1.5, 2.0, 4.0])
    want = [[sum(1 for p in range(2) if t[p, s] / ([1, 3][p] + 1) <= k) / 2 for s in range(2)]
            for k in [1.0, 1.5, 2.0, 4.0]]
    np.testing.assert_array_equal(d, want)
    # runtime ECDF: NaN counts as never; the plateau is the fraction ever reached
    np.testing.assert_array_equal(metrics.runtime_ecdf(np.array([1.0, 2.0, np.nan, INF, 2.0]), [0.5, 2.0, 1e9]),
                                  [0.0, 0.6, 0.6])


def test_work_of_a_real_solve_is_the_readme_formula():
    """The counts a solve records are what the work axis weighs: the trace's column at nit is the
    result's counts, later columns repeat it, and work = nfev + njev + 2n·nhev + 2·nhvp there
    (newton forms Hessians, trust-ncg uses Hessian-vector products)."""
    import bench
    p = problems.get("rosenbrock")
    x0s = p.random_starts(3, 0)
    for name in ("newton", "trust-ncg"):
        r = bench.solve(p, optimizers.get(name), x0s, max_iter=60)
        tr = r.trace.arrays()
        cell = {f"trace_{k}": v for k, v in tr.items()}
        rows = np.arange(3)
        for k in ("nfev", "njev", "nhev", "nhvp"):
            np.testing.assert_array_equal(cell[f"trace_{k}"][rows, r.nit], getattr(r, k))
            for i in rows:
                assert np.all(cell[f"trace_{k}"][i, r.nit[i]:] == getattr(r, k)[i])
        w = metrics.work(cell, 2)[rows, r.nit]
        np.testing.assert_array_equal(w, r.nfev + r.njev + 2 * 2 * r.nhev + 2 * r.nhvp)
        assert (r.nhev > 0).all() if name == "newton" else (r.nhvp > 0).all()
        # column 0 is x0's f and gradient: one evaluation each
        assert cell["trace_nfev"][:, 0].tolist() == [1, 1, 1] and cell["trace_njev"][:, 0].tolist() == [1, 1, 1]


# ===================================================================================================
# optbench list
# ===================================================================================================

def test_list_names_every_registered_problem_and_optimizer_with_its_defaults(capsys):
    assert main(["list", "problems"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): line for line in out.splitlines() for m in [re.match(r"^  (\S+)\s", line)] if m}
    assert set(rows) == set(problems.names())
    for name in problems.names():
        d = problems.describe(name)
        for k, v in d["params"].items():
            assert f"{k}={v}" in rows[name], (name, k)
        assert d["doc"] in rows[name]
    fam = problems.describe("nist:")
    assert f"nist: members: {', '.join(fam['members'])}" in out
    assert main(["list", "optimizers"]) == 0
    out = capsys.readouterr().out
    table, scipy_part = out.split("\n\n", 1)
    names = [line.split()[0] for line in table.splitlines()]
    assert names == optimizers.names()
    for line in table.splitlines():
        name = line.split()[0]
        for k, v in optimizers.describe(name)["params"].items():
            assert f"{k}={v}" in line, (name, k)
    from bench import scipy_runner
    assert ", ".join(scipy_runner.method_names()) in scipy_part
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    for name in suite.shipped():
        line = next(l for l in out.splitlines() if l.split()[:1] == [name])
        assert line.split(None, 1)[1] == suite.load(name).description


def test_list_descriptions_end_at_the_first_sentence(capsys):
    """gauss-newton's description ran into its next sentence ('… ‖r + Jp‖². ``linesearch`` …'):
    a sentence after a period may open with inline code, not only a capital."""
    assert main(["list", "optimizers"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.split()[:1] == ["gauss-newton"])
    assert line.endswith("the minimum-norm minimiser of ‖r + Jp‖².") and "linesearch``" not in line
    from bench import cmd_list
    assert cmd_list._first_sentence("One thing. *Two* things.") == "One thing."
    assert cmd_list._first_sentence("See N&W Alg. 3.1 for it. Then more.") == "See N&W Alg. 3.1 for it."


def test_list_problems_shows_a_wrapped_plugin_docstring_whole(tmp_path, capsys, registry_snapshot):
    """A plug-in problem whose docstring wraps showed its first line, cut mid-sentence."""
    plug = tmp_path / "audit_wrapped_doc_plugin.py"
    plug.write_text(
        "import jax.numpy as jnp\nimport numpy as np\nimport problems\n\n"
        "@problems.register('audit-wrapped-bowl')\n"
        "def bowl(dim: int = 2):\n"
        "    \"\"\"A bowl whose one-sentence description is long enough that its docstring\n"
        "    wraps onto a second line. Details follow.\"\"\"\n"
        "    return problems.Problem(name='audit-wrapped-bowl', f=lambda x: jnp.sum(x * x), x0=np.ones(dim))\n")
    assert main(["list", "problems", "--plugin", str(plug)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.split()[:1] == ["audit-wrapped-bowl"])
    assert line.endswith("is long enough that its docstring wraps onto a second line."), line


@pytest.mark.parametrize("argv, needle", [
    (["list", "problem"], "can list problems or optimizers or suites, not 'problem' (did you mean: problems?)"),
    (["list", "Suites"], "not 'Suites' (did you mean: suites?)"),
    (["list", "things"], "can list problems or optimizers or suites, not 'things'"),
    (["list"], "the following arguments are required: what"),
    (["list", "problems", "extra"], "unrecognized arguments: extra"),
    (["list", "problems", "--plugin"], "expected one argument"),
])
def test_list_bad_arguments_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert needle in cap.err and cap.err.count("\n") == 1 and not cap.out


def test_random_starts_refuse_seeds_that_alias_others():
    """Problem.random_starts draws from a 32-bit seed: 2³² and −1 aliased seeds 0 and 2³²−1."""
    p = problems.get("rosenbrock")
    np.testing.assert_array_equal(p.random_starts(3, 2 ** 32 - 1), p.random_starts(3, np.uint32(2 ** 32 - 1)))
    for bad in (2 ** 32, -1, 1.5, True):
        with pytest.raises(OptbenchError, match="seed must be an integer from 0 to 4294967295"):
            p.random_starts(3, bad)
