"""Suite files: every shipped suite parses and resolves, grids expand, mistakes are one line naming
the file and the key, and the quick (CI) suite runs end to end through ``optbench run``."""
import csv
import fnmatch
import json
import os

import numpy as np
import pytest

import optimizers
import problems
from bench import suite
from bench.cli import main
from optbench_core import OptbenchError, parse_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ["classic", "course", "default", "mgh", "nist", "quick", "scaling"]


def test_shipped_suites_are_listed_and_parse():
    assert set(SHIPPED) <= set(suite.shipped())
    for name in SHIPPED:
        s = suite.load(name)
        assert s.name == name and s.description and s.groups
        for g in s.groups:
            assert g["problems"] and g["optimizers"]
    # the repo path, the bare name and the file name find the same shipped file
    assert os.path.samefile(suite.find("suites/quick.toml"), os.path.join(ROOT, "suites", "quick.toml"))
    assert os.path.samefile(suite.find("quick"), suite.find("quick.toml"))


def _missing_names(s):
    """Base names a suite uses that are not registered (yet) in this checkout."""
    pnames, onames = set(problems.names()), set(optimizers.names())
    missing = []
    for g in s.groups:
        for spec in g["problems"]:
            name = parse_spec(spec)[0]
            head = name.split(":")[0]
            if "*" in name:
                if not (fnmatch.filter(pnames, name) or head + ":" in pnames):
                    missing.append(name)
            elif name not in pnames and head + ":" not in pnames:
                missing.append(name)
        if g["optimizers"] != suite.ALL:
            for spec in g["optimizers"]:
                name = parse_spec(spec)[0]
                if spec.startswith(suite.SCIPY_PREFIX):
                    continue
                if name not in onames and name.split(":")[0] + ":" not in onames:
                    missing.append(name)
    return sorted(set(missing))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_names_resolve(name):
    s = suite.load(name)
    missing = _missing_names(s)
    if missing:
        pytest.skip(f"suite {name} names problems/optimizers not registered in this checkout: {missing}")
    cells = suite.expand(s)
    assert cells and len({c.key for c in cells}) == len(cells)
    for c in cells:
        assert not (getattr(c.optimizer, "needs_residuals", False) and not c.problem.has_residuals)


def test_default_and_quick_resolve_now():
    # these two must always work: `optbench run` and CI use them; quick covers every optimizer
    cells = suite.expand(suite.load("quick"))
    assert {c.optimizer.spec for c in cells} == set(suite.all_optimizers())
    cells = suite.expand(suite.load("default"))
    assert len(cells) >= 10 and {c.problem.spec for c in cells} >= {"rosenbrock", "himmelblau"}


def test_scaling_suite_is_the_separable_extended_rosenbrock():
    # the suite says MGH 21 (independent pairs, iteration counts flat in n); it once ran the
    # chained form, whose iterations grow with n and which has a second local minimum
    cells = suite.expand(suite.load("scaling"))
    assert sorted({c.problem.x0.shape[0] for c in cells}) == [10, 100, 1000, 10**4, 10**5, 10**6]
    p = next(c.problem for c in cells if c.problem.x0.shape[0] == 10)
    # five 2-D Rosenbrock pairs at (−1.2, 1): 5 × 24.2; the chained form gives 2,057 there
    assert float(p.objective(p.x0)) == pytest.approx(5 * 24.2)


def test_grid_expansion():
    assert suite.expand_grid("gd:lr=[1e-3,1e-2,1e-1]") == ["gd:lr=1e-3", "gd:lr=1e-2", "gd:lr=1e-1"]
    assert suite.expand_grid("gd:lr=[1,2]:x=3:y=[a,b]") == ["gd:lr=1:x=3:y=a", "gd:lr=1:x=3:y=b",
                                                           "gd:lr=2:x=3:y=a", "gd:lr=2:x=3:y=b"]
    assert suite.expand_grid("newton") == ["newton"]
    assert suite.split_specs("gd:lr=[1e-3,1e-2], newton ,rosenbrock:dim=[2,3]") == [
        "gd:lr=[1e-3,1e-2]", "newton", "rosenbrock:dim=[2,3]"]
    s = suite.parse('problems = ["rosenbrock:dim=[2,3]", "himmelblau"]\n'
                    'optimizers = ["gd:lr=[1e-3,1e-2,1e-1]", {name = "newton"}, {name = "gd", lr = [0.5, 0.25]}]\n',
                    path="g.toml")
    cells = suite.expand(s)
    assert [c.key for c in cells] == [(p, o) for p in ("rosenbrock:dim=2", "rosenbrock:dim=3", "himmelblau")
                                      for o in ("gd:lr=0.001", "gd:lr=0.01", "gd:lr=0.1", "newton",
                                                "gd:lr=0.5", "gd:lr=0.25")]
    # the built optimizers really carry the grid's values
    assert [c.optimizer.params.get("lr") for c in cells[:3]] == [1e-3, 1e-2, 1e-1]


def test_one_setting_spelled_twice_is_one_cell():
    """``gd`` and ``gd:lr=0.001`` (its default) are the same method, and ``rosenbrock`` and
    ``rosenbrock:dim=2`` the same problem: one cell each, under the first spelling, also when
    the spellings are in different groups (a run must not hold one setting under two names,
    each with only some of the problems)."""
    lr = optimizers.describe("gd")["params"]["lr"]
    dim = problems.describe("rosenbrock")["params"]["dim"]
    s = suite.parse(f'problems = ["rosenbrock", "rosenbrock:dim={dim}", "himmelblau"]\n'
                    f'optimizers = ["gd", "gd:lr={lr}", "gd:lr={lr * 10}", "lbfgs:memory=10.0", "lbfgs"]\n',
                    path="d.toml")
    keys = [c.key for c in suite.expand(s)]
    assert keys == [(p, o) for p in ("rosenbrock", "himmelblau")
                    for o in ("gd", f"gd:lr={lr * 10}", "lbfgs:memory=10.0")]
    # across groups: the second group's respelling takes the first group's name
    s = suite.parse(f'[[group]]\nproblems = ["rosenbrock"]\noptimizers = ["gd"]\n'
                    f'[[group]]\nproblems = ["rosenbrock:dim={dim}", "himmelblau"]\noptimizers = ["gd:lr={lr}"]\n',
                    path="g.toml")
    assert [c.key for c in suite.expand(s)] == [("rosenbrock", "gd"), ("himmelblau", "gd")]


def test_dims_seeds_groups_and_overrides():
    text = """
name = "t"
starts = 3
seeds = [0, 1]
max_iter = 50
problems = ["rosenbrock", "himmelblau"]
dims = [2, 4]
optimizers = "all"
exclude = ["gd"]

[[group]]
gtol = 1e-4

[[group]]
problems = ["quadratic:dim=3"]
optimizers = ["gd:lr=[0.1,0.2]"]
starts = 2
"""
    s = suite.parse(text, path="t.toml")
    cells = suite.expand(s)
    keys = [c.key for c in cells]
    others = [o for o in suite.all_optimizers() if o != "gd"]
    lsq = {o for o in others if optimizers.get(o).needs_residuals}
    # dims apply to problems with a free dimension parameter only; himmelblau stays as it is;
    # least-squares optimizers pair only with problems that have residuals
    expected = [(p, o) for p in ("rosenbrock:dim=2", "rosenbrock:dim=4", "himmelblau") for o in others
                if problems.get(p).has_residuals or o not in lsq]
    assert keys[:len(expected)] == expected
    # a spec that fixes dim keeps it; the group's own settings win over the top level's
    tail = cells[len(expected):]
    assert [c.key for c in tail] == [("quadratic:dim=3", "gd:lr=0.1"), ("quadratic:dim=3", "gd:lr=0.2")]
    assert tail[0].starts == 2 and tail[0].seeds == (0, 1) and tail[0].max_iter == 50 and tail[0].gtol == 1e-8
    assert cells[0].gtol == 1e-4
    # pooled seeds: x0 once, then starts−1 random starts per seed, identical for every optimizer
    x = cells[0].x0s()
    p = cells[0].problem
    assert x.shape == (1 + 2 * 2, 2)
    np.testing.assert_array_equal(x[:3], p.random_starts(3, 0))
    np.testing.assert_array_equal(x[3:], p.random_starts(3, 1)[1:])
    # command-line overrides replace values in every group; duplicates collapse
    cells = suite.expand(s, {"problems": ["himmelblau"], "optimizers": ["newton"], "starts": 7})
    assert [c.key for c in cells] == [("himmelblau", "newton")] and cells[0].starts == 7
    cfg = suite.config(s, cells)
    assert cfg["suite"] == "t" and cfg["starts"] == 7 and cfg["cells"][0]["optimizer"] == "newton"


@pytest.mark.parametrize("text, needle", [
    ('problems = ["rosenbrock"]\nmax_iters = 5\n', "bad.toml: unknown key 'max_iters' (did you mean: max_iter"),
    ('problems = ["rosenbrock"]\nmax_iter = -5\n', "bad.toml: key 'max_iter' must be at least 1, got -5"),
    ('problems = ["rosenbrock"]\nstarts = 2.5\n', "bad.toml: key 'starts' must be an integer"),
    ('problems = ["rosenbrock"]\nstarts = true\n', "bad.toml: key 'starts' must be an integer"),
    ('problems = ["rosenbrock"]\ngtol = -1e-3\n', "bad.toml: key 'gtol' must be a finite number >= 0"),
    ('problems = ["rosenbrock"]\ndtype = "float16"\n', "bad.toml: key 'dtype' must be one of float64, float32"),
    ('problems = ["rosenbrock"]\nseed = 1\nseeds = [2]\n', "bad.toml: give 'seed' or 'seeds', not both"),
    ('problems = ["rosenbrock"]\nseeds = [1, 1]\n', "bad.toml: key 'seeds' repeats a seed"),
    ('problems = []\n', "bad.toml: key 'problems' must be a non-empty list"),
    ('problems = "rosenbrock"\noptimizers = ["gd:lr=[1e-3,1e-2"]\n', "bad.toml: key 'optimizers': unbalanced brackets"),
    ('problems = ["rosenbrock"]\noptimizers = ["gd:lr=[1e-3,,1]"]\n', "empty value in grid"),
    ('problems = ["rosenbrock"]\noptimizers = ["newton"]\nexclude = ["gd"]\n', "'exclude' applies only to"),
    ('optimizers = ["newton"]\n', "bad.toml: no 'problems' given"),
    ('problems = ["rosenbrock"\n', "bad.toml: not valid TOML"),
    ('problems = ["rosenbrock"]\n[[group]]\noptimizer = ["newton"]\n',
     "bad.toml [group 1]: unknown key 'optimizer' (did you mean: optimizers"),
    ('problems = ["rosenbrock"]\n[[group]]\nname = "x"\n', "bad.toml [group 1]: unknown key 'name'"),
    ('problems = ["rosenbrock"]\ngroup = 3\n', "'group' must be an array of tables"),
    ('problems = ["rosenbrock"]\ndims = [0]\n', "bad.toml: key 'dims' must be at least 1"),
    ('problems = ["rosenbrock"]\npack = "yes"\n', "bad.toml: key 'pack' must be true or false"),
    ('problems = ["rosenbrock"]\nfuse_loops = 1\n', "bad.toml: key 'fuse_loops' must be true or false"),
])
def test_bad_suite_files_one_line(tmp_path, text, needle):
    with pytest.raises(OptbenchError) as ei:
        suite.parse(text, path="bad.toml")
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize("text, needle", [
    ('problems = ["rosenbrok"]\n', "bad.toml: unknown problem 'rosenbrok' (did you mean: rosenbrock"),
    ('problems = ["rosenbrock"]\noptimizers = ["newtn"]\n', "bad.toml: unknown optimizer 'newtn'"),
    ('problems = ["rosenbrock:dimm=3"]\n', "bad.toml: unknown parameter 'dimm'"),
    ('problems = ["himmelblau"]\ndims = [3]\n', "bad.toml: key 'dims' given but no problem"),
    ('problems = ["rosenbrock"]\noptimizers = "all"\nexclude = ["nope"]\n', "cannot exclude unknown optimizer 'nope'"),
])
def test_bad_names_name_the_file(text, needle):
    with pytest.raises(OptbenchError) as ei:
        suite.expand(suite.parse(text, path="bad.toml"))
    assert needle in str(ei.value) and "\n" not in str(ei.value)


def test_cli_bad_suite_exit_2_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('problems = ["rosenbrock"]\nstarts = 0\n')
    out = str(tmp_path / "never")
    assert main(["run", str(bad), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: key 'starts' must be at least 1, got 0" in err and err.count("\n") == 1
    assert not os.path.exists(out)
    assert main(["run", str(tmp_path / "nosuch.toml"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "nosuch.toml not found" in err and "quick" in err
    assert main(["run", "quick", "--starts", "0", "--out", out]) == 2
    assert "--starts must be at least 1" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_list_suites(capsys):
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert any(line.startswith(name + " ") for line in out.splitlines())


def test_quick_suite_runs(tmp_path, capsys):
    """The CI suite, exactly as shipped, through the command line."""
    out = str(tmp_path / "quick")
    args = ["run", "suites/quick.toml", "--out", out, "--no-plots", "--json"]
    if "--no-report" in _run_options():
        args.append("--no-report")
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == out and printed["suite"] == "quick"
    s = suite.load("quick")
    expected = [c.key for c in suite.expand(s)]
    rows = list(csv.DictReader(open(os.path.join(out, "summary.csv"))))
    assert [(r["problem"], r["optimizer"]) for r in rows] == expected
    assert [(r["problem"], r["optimizer"]) for r in printed["summary"]] == expected
    g = s.groups[0]
    assert all(int(r["starts"]) == g["starts"] for r in rows)
    meta = json.load(open(os.path.join(out, "meta.json")))
    assert meta["complete"] and meta["config"]["suite"] == "quick" and meta["config"]["max_iter"] == g["max_iter"]
    # Newton from the standard starts solves these small smooth problems: a real convergence check
    by = {(r["problem"], r["optimizer"]): r for r in rows}
    for p in g["problems"]:
        assert float(by[(p, "newton")]["success_rate"]) == 1.0


def _run_options():
    from bench import cmd_run
    import argparse
    p = argparse.ArgumentParser()
    cmd_run.add_arguments(p)
    return {a for act in p._actions for a in act.option_strings}


def test_readme_suite_example_parses():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Suites", 1)[1]
    text = section.split("```toml\n", 1)[1].split("```", 1)[0]
    s = suite.parse(text, path="README.md")
    assert s.name == "mine" and len(s.groups) == 1
    g = s.groups[0]
    assert g["optimizers"][:3] == ["gd:lr=1e-3", "gd:lr=1e-2", "gd:lr=1e-1"]
    assert g["optimizers"][4:6] == ["lbfgs:memory=5", "lbfgs:memory=20"]
    assert g["problems"][:3] == ["rosenbrock", "quadratic:cond=1e2", "quadratic:cond=1e4"]
    # names resolve too (without the plug-in file, which the example only names)
    s.plugins = []
    cells = suite.expand(s)
    keys = {c.key for c in cells}
    assert ("himmelblau", "lbfgs:memory=20") in keys and ("rosenbrock:dim=10", "bfgs") in keys
    assert ("quadratic:cond=10000.0:dim=2", "gd:lr=0.1") in keys   # dims applied after the grid
    text = section.split("```toml\n", 2)[2].split("```", 1)[0]
    s = suite.parse(text, path="README.md")
    assert [g["dims"] for g in s.groups] == [(10, 100, 1000), (100000, 1000000)]
    assert [c.key for c in suite.expand(s)][-1] == ("mgh:extended-rosenbrock:n=1000000", "newton-cg")


def test_cli_grids_and_overrides_build_the_plan():
    """`--optimizers 'gd:lr=[0.1,0.2],newton'` is three optimizers; options override the suite's."""
    import argparse
    from bench import cmd_run
    p = argparse.ArgumentParser()
    cmd_run.add_arguments(p)
    plan = cmd_run.build_plan(p.parse_args(["quick", "--problems", "rosenbrock:dim=[2,3]",
                                            "--optimizers", "gd:lr=[0.1,0.2],newton", "--max-iter", "7"]))
    assert [c.key for c in plan.cells] == [(pr, o) for pr in ("rosenbrock:dim=2", "rosenbrock:dim=3")
                                           for o in ("gd:lr=0.1", "gd:lr=0.2", "newton")]
    quick = suite.load("quick").groups[0]
    assert all(c.max_iter == 7 and c.starts == quick["starts"] and c.repeats == quick["repeats"] for c in plan.cells)
    cfg = plan.config()
    assert cfg["suite"] == "quick" and cfg["max_iter"] == 7 and cfg["device"] == "cpu"
    assert cfg["pack"] is False and not any(c.pack for c in plan.cells)
    # --pack reaches every cell (bench.solve(pack=True)) and the stored configuration
    plan = cmd_run.build_plan(p.parse_args(["quick", "--problems", "rosenbrock", "--optimizers", "newton", "--pack"]))
    assert [c.pack for c in plan.cells] == [True] and plan.config()["cells"][0]["pack"] is True
    # --fuse-loops likewise (bench.solve(fuse_loops=True)); a suite's fuse_loops = true too
    assert cfg["fuse_loops"] is False
    plan = cmd_run.build_plan(p.parse_args(["quick", "--problems", "rosenbrock", "--optimizers", "newton",
                                            "--fuse-loops"]))
    assert [c.fuse_loops for c in plan.cells] == [True] and plan.config()["cells"][0]["fuse_loops"] is True
    assert plan.config()["fuse_loops"] is True
    s = suite.parse('problems = ["rosenbrock"]\noptimizers = ["newton"]\nfuse_loops = true\n', path="f.toml")
    assert [c.fuse_loops for c in suite.expand(s)] == [True]


def test_exclude_and_plugin_mistakes_name_the_file_and_key(tmp_path, capsys):
    """An unknown name in `exclude` and a missing plug-in file were one line, but named neither
    the suite file nor the key, as every other mistake in a suite does."""
    from bench.cli import main
    x = tmp_path / "x.toml"
    x.write_text('problems = ["rosenbrock"]\nexclude = ["bfgss"]\n')
    assert main(["run", str(x), "--starts", "2"]) == 2
    assert f"{x}: key 'exclude': cannot exclude unknown optimizer 'bfgss'" in capsys.readouterr().err
    y = tmp_path / "y.toml"
    y.write_text('problems = ["rosenbrock"]\nplugins = ["nope.py"]\n')
    assert main(["run", str(y), "--starts", "2"]) == 2
    assert f"{y}: key 'plugins': plugin file" in capsys.readouterr().err
