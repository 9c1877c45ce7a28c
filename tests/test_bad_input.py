"""Every kind of bad input the reliability issue lists: exit code 2, one line on stderr, no
traceback, and no run directory left behind (an existing directory is left exactly as it was)."""
import os
import textwrap

import jax
import numpy as np
import pytest

import bench
import optimizers
from bench.cli import main
from optbench_core import OptbenchError
from problems import Problem


def _has_gpu():
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def _plugin(tmp_path, name, body):
    """A plug-in file registering one problem ``name`` built from ``body`` (its f and x0)."""
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(textwrap.dedent("""\
        import numpy as np
        import jax.numpy as jnp
        import problems
        """) + textwrap.dedent(body) + f"\nproblems.register(problems.Problem(name={name!r}, f=f, x0=x0))\n")
    return str(path)


def _suite(tmp_path, text):
    path = tmp_path / "bad_suite.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


#: (id, argv builder taking tmp_path, text the one line must contain). ``OUT`` is replaced by the
#: run directory that must not appear.
CASES = [
    ("unknown problem", lambda t: ["--problems", "rosenbrok"], "did you mean: rosenbrock"),
    ("unknown optimizer", lambda t: ["--optimizers", "newtn"], "did you mean: newton"),
    ("mistyped parameter", lambda t: ["--problems", "rosenbrock:dimm=3"], "unknown parameter 'dimm'"),
    ("parameter of wrong type", lambda t: ["--problems", "rosenbrock:dim=abc"], "must be an integer"),
    ("parameter out of range", lambda t: ["--optimizers", "gd:lr=-1"], "lr"),
    ("dim below the minimum", lambda t: ["--problems", "rosenbrock:dim=1"], "dim >= 2"),
    ("NaN parameter", lambda t: ["--optimizers", "gd:lr=nan"], "must be a number, got nan"),
    ("infinite parameter", lambda t: ["--optimizers", "gd:lr=1e400"], "parameter 'lr' must be a finite number, got inf"),
    ("infinite problem parameter", lambda t: ["--problems", "quadratic:cond=inf"], "must be a finite number, got inf"),
    ("count beyond int32", lambda t: ["--optimizers", "lbfgs:max_evals=2147483648"], "magnitude below 2**31"),
    ("scipy budget of zero", lambda t: ["--optimizers", "scipy:L-BFGS-B:maxcor=0"],
     "scipy:L-BFGS-B option 'maxcor' must be a positive integer, got 0"),
    ("scipy tolerance not a number", lambda t: ["--optimizers", "scipy:Nelder-Mead:xatol=abc"],
     "option 'xatol' must be a number >= 0"),
    ("scipy NaN option", lambda t: ["--optimizers", "scipy:BFGS:gtol=nan"], "option 'gtol' must be a number, got nan"),
    ("empty --resume", lambda t: ["--resume", ""], "--resume needs a directory"),
    ("negative optax learning rate", lambda t: ["--optimizers", "optax:adam:learning_rate=-0.01"],
     "optax:adam: learning_rate must be a positive finite number, got -0.01"),
    ("zero optax learning rate", lambda t: ["--optimizers", "optax:sgd:learning_rate=0"], "learning_rate must be"),
    ("dimension too large to build", lambda t: ["--problems", "quadratic:dim=100000000"], "too large to build"),
    ("too many repeats", lambda t: ["--repeats", "100000"], "--repeats must be at most 1000, got 100000"),
    ("malformed spec", lambda t: ["--problems", "rosenbrock::dim=3"], "empty segment"),
    ("negative tolerance", lambda t: ["--gtol", "-1e-8"], "--gtol must be a finite number >= 0"),
    ("infinite tolerance", lambda t: ["--gtol", "inf"], "--gtol"),
    ("zero starts", lambda t: ["--starts", "0"], "--starts must be at least 1"),
    ("starts not a number", lambda t: ["--starts", "ten"], "invalid int value"),
    ("zero iterations", lambda t: ["--max-iter", "0"], "--max-iter must be at least 1"),
    ("zero repeats", lambda t: ["--repeats", "0"], "--repeats must be at least 1"),
    ("unknown dtype", lambda t: ["--dtype", "float16"], "invalid choice"),
    ("unknown device", lambda t: ["--device", "tpu7"], "unknown device"),
    ("unknown option", lambda t: ["--startz", "3"], "unrecognized arguments"),
    ("dense Hessian at n = 10^6", lambda t: ["--problems", "rosenbrock:dim=1000000", "--optimizers", "newton",
                                             "--starts", "1"], "TiB (a dense 1000000×1000000 matrix per start)"),
    ("history beyond memory", lambda t: ["--problems", "rosenbrock", "--optimizers", "gd", "--starts", "1000000",
                                         "--max-iter", "1000000"], "fewer starts or a smaller --max-iter"),
    ("f raises", lambda t: ["--plugin", _plugin(t, "bad-raises", """
        x0 = np.zeros(2)
        def f(x):
            raise ValueError("model exploded")
        """), "--problems", "bad-raises", "--optimizers", "newton"], "ValueError: model exploded"),
    ("f returns a vector", lambda t: ["--plugin", _plugin(t, "bad-vector", """
        x0 = np.zeros(3)
        def f(x):
            return x ** 2
        """), "--problems", "bad-vector", "--optimizers", "newton"], "f must return a scalar, got shape (3,)"),
    ("f returns nothing", lambda t: ["--plugin", _plugin(t, "bad-none", """
        x0 = np.zeros(2)
        def f(x):
            pass
        """), "--problems", "bad-none", "--optimizers", "newton"], "bad-none"),
    ("f returns an integer", lambda t: ["--plugin", _plugin(t, "bad-int", """
        x0 = np.zeros(2)
        def f(x):
            return jnp.sum(x > 0)
        """), "--problems", "bad-int", "--optimizers", "newton"], "bad-int"),
    ("x0 and f disagree on the dimension", lambda t: ["--plugin", _plugin(t, "bad-dim", """
        A = np.eye(3)
        x0 = np.zeros(2)
        def f(x):
            return x @ (A @ x)
        """), "--problems", "bad-dim", "--optimizers", "newton"], "f fails at x0 of dim 2"),
    ("plug-in file missing", lambda t: ["--plugin", str(t / "nope.py")], "not found"),
    ("plug-in with a syntax error", lambda t: ["--plugin", str((t / "syn.py").write_text("def (:\n") and t / "syn.py")],
     "syntax error"),
    ("suite file missing", lambda t: [str(t / "nope.toml")], "not found"),
    ("suite file not TOML", lambda t: [_suite(t, "problems = [rosenbrock\n")], "not valid TOML"),
    ("suite key unknown", lambda t: [_suite(t, 'problems = ["rosenbrock"]\nstrats = 3\n')], "unknown key 'strats'"),
    ("suite value of wrong type", lambda t: [_suite(t, 'problems = ["rosenbrock"]\nstarts = "ten"\n')],
     "must be an integer"),
    ("suite with zero starts", lambda t: [_suite(t, 'problems = ["rosenbrock"]\nstarts = 0\n')], "at least 1"),
    ("suite with negative gtol", lambda t: [_suite(t, 'problems = ["rosenbrock"]\ngtol = -1.0\n')], ">= 0"),
    ("resume of something not a run", lambda t: ["--resume", str(t)], "not a run directory"),
    ("resume of a missing directory", lambda t: ["--resume", str(t / "gone")], "no such run directory"),
]


@pytest.mark.parametrize("case, build, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, case, build, needle, registry_snapshot):
    out = tmp_path / "never"
    before = sorted(os.listdir(tmp_path))
    argv = build(tmp_path)
    before = sorted(os.listdir(tmp_path))  # the builder may write input files
    rc = main(["run", *argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("optbench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert needle in err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == before


def test_gpu_requested_on_machine_without_one(tmp_path, capsys, monkeypatch):
    if _has_gpu():  # exercise the same path by hiding the GPU from this process
        real = jax.devices

        def devices(backend=None):
            if backend == "gpu":
                raise RuntimeError("Unknown backend gpu")
            return real(backend)
        monkeypatch.setattr(jax, "devices", devices)
    out = tmp_path / "never"
    assert main(["run", "--device", "gpu", "--problems", "himmelblau", "--optimizers", "newton",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no gpu device is visible" in err and "--device cpu" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "not a run"])
def test_out_that_exists_is_left_alone(tmp_path, capsys, kind):
    out = tmp_path / "taken"
    if kind == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        (out / "precious.txt").write_text("precious")
    assert main(["run", "--problems", "himmelblau", "--optimizers", "newton", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("not a directory" in err if kind == "file" else "not a run" in err)
    assert (out.read_text() if kind == "file" else (out / "precious.txt").read_text()) == "precious"
    if kind != "file":
        assert os.listdir(out) == ["precious.txt"]


def test_debug_shows_the_traceback(tmp_path, capsys):
    """The traceback, then the same one line and exit code 2 (raising exited 1)."""
    assert main(["--debug", "run", "--problems", "rosenbrok", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "OptbenchError" in err and "did you mean" in err.strip().splitlines()[-1]


# -- the same mistakes through the Python API: OptbenchError, one line ---------------------------

def _plugin_opt(step, init=None):
    from optimizers import Optimizer
    from optimizers.base import initial_state
    return Optimizer(name="api-opt", init=init or (lambda o, x0: initial_state(o, x0)), step=step)


def _quadratic():
    return Problem(name="api-quadratic", f=lambda x: x @ x, x0=np.ones(3))


def _registered_factory_fails():
    from bench import plugins
    saved = plugins.snapshot_registries()
    try:
        import problems
        problems.register("api-keyerror", lambda: {}["a"])
        return bench.solve("api-keyerror", "bfgs")
    finally:
        plugins.restore_registries(saved)


API_CASES = [
    ("starts of the wrong dimension", lambda: bench.solve(_quadratic(), "newton", np.ones((4, 2))),
     "starts have dimension 2 but problem 'api-quadratic' has dim 3"),
    ("no starts", lambda: bench.solve(_quadratic(), "newton", np.ones((0, 3))), "starts must have shape"),
    ("starts that are not numbers", lambda: bench.solve(_quadratic(), "newton", [["1", "2", "x"]]),
     "starts must be an array of real numbers"),
    ("ragged starts", lambda: bench.solve(_quadratic(), "newton", [[1.0, 2.0, 3.0], [1.0]]),
     "starts must be an array of real numbers"),
    ("complex starts", lambda: bench.solve(_quadratic(), "newton", np.ones(3) * 1j), "starts must be an array of real numbers"),
    ("non-finite start", lambda: bench.solve(_quadratic(), "newton", np.array([1.0, np.nan, 0.0])), "non-finite"),
    ("negative gtol", lambda: bench.solve(_quadratic(), "newton", gtol=-1.0), "gtol"),
    ("zero max_iter", lambda: bench.solve(_quadratic(), "newton", max_iter=0), "max_iter"),
    ("f raises", lambda: bench.solve(Problem(name="api-raise", f=lambda x: 1 / 0, x0=np.ones(2)), "newton"),
     "ZeroDivisionError"),
    ("f non-scalar", lambda: bench.solve(Problem(name="api-vec", f=lambda x: x, x0=np.ones(2)), "newton"),
     "must return a scalar"),
    ("x0 and f disagree", lambda: bench.solve(Problem(name="api-dim", f=lambda x: x @ np.ones(5), x0=np.ones(2)),
                                              "newton"), "f fails at x0 of dim 2"),
    ("unknown optimizer", lambda: bench.solve(_quadratic(), "bfsg"), "did you mean: bfgs"),
    ("residual method on a plain f", lambda: bench.solve(_quadratic(), "gauss-newton"), "needs a least-squares problem"),
    ("dense Hessian too large", lambda: bench.solve(Problem(name="api-big", f=lambda x: x @ x, x0=np.ones(10 ** 6)),
                                                    "newton"), "a matrix-free method"),
    ("problem with no x0", lambda: Problem(name="api-nox0", f=lambda x: x @ x), "needs a standard start x0"),
    # a plugin optimizer that breaks the loop's contract is named, with what it broke
    ("step returns a tuple", lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: (s.x, s.f))),
     "optimizer 'api-opt': step must return an optimizers.State, got tuple"),
    ("step grows aux", lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: s._replace(aux=(s.x,)))),
     "optimizer 'api-opt': step changed the structure of State.aux"),
    ("step changes a dtype", lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: s._replace(nfev=s.nfev + 0.5))),
     "optimizer 'api-opt': step changed State.nfev from int32[] to float64[]"),
    # over a batch the driver's per-start select would have cast a float32 x back to float64
    ("step casts x to float32, several starts",
     lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: s._replace(x=s.x.astype("float32"))), np.ones((3, 3))),
     "optimizer 'api-opt': step changed State.x from float64[3] to float32[3]"),
    ("step raises", lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: 1 / 0), history=False),
     "optimizer 'api-opt': step fails: ZeroDivisionError"),
    ("init returns None", lambda: bench.solve(_quadratic(), _plugin_opt(lambda o, s: s, init=lambda o, x0: None)),
     "optimizer 'api-opt': init must return an optimizers.State, got NoneType"),
    ("max_iter beyond int32", lambda: bench.solve(_quadratic(), "newton", max_iter=2 ** 31, history=False),
     "max_iter must be a positive integer below 2**31"),
    ("start beyond float32's range", lambda: bench.solve(_quadratic(), "newton", [1e39, 0.0, 0.0], dtype="float32"),
     "beyond float32's range"),
    ("L-BFGS memory beyond memory", lambda: bench.solve(_quadratic(), "lbfgs:memory=100000", max_iter=5),
     "or a smaller memory"),
    ("data that is not numbers", lambda: Problem(name="api-data", f=lambda x, d: x @ x, x0=np.ones(2),
                                                 data={"label": "abc"}), "data['label'] must be numbers"),
    ("dim not an integer", lambda: Problem(name="api-dimstr", f=lambda x: x @ x, x0=np.ones(2), dim="2"),
     "dim must be an integer"),
    ("factory raises KeyError", lambda: _registered_factory_fails(), "failed to build: KeyError"),
    ("factory not callable", lambda: optimizers.register("api-three", 3), "the factory must be callable"),
    ("name a spec cannot select", lambda: optimizers.register("a=b", lambda: None), "a spec can select"),
    ("describe an unknown optimizer", lambda: optimizers.describe("bfsg"), "did you mean: bfgs"),
    ("select from a one-start trace", lambda: bench.solve(_quadratic(), "newton").trace.select(0),
     "this trace is of one start already"),
    ("x0 that is not numbers", lambda: Problem(name="api-x0s", f=lambda x: x @ x, x0="ab"), "x0 must be real numbers"),
    ("complex x0", lambda: Problem(name="api-x0c", f=lambda x: x @ x, x0=np.ones(2) * 1j), "x0 must be real numbers"),
    ("f_star NaN", lambda: Problem(name="api-fsn", f=lambda x: x @ x, x0=np.ones(2), f_star=float("nan")),
     "f_star must be a finite number"),
    ("f_star not a number", lambda: Problem(name="api-fss", f=lambda x: x @ x, x0=np.ones(2), f_star="low"),
     "f_star must be a finite number"),
    ("ragged bounds", lambda: Problem(name="api-bd", f=lambda x: x @ x, x0=np.ones(2), bounds=([0, 0, 0], [1, 1])),
     "bounds must be (lo, hi)"),
]


@pytest.mark.parametrize("case, call, needle", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_input_python_api(case, call, needle):
    with pytest.raises(OptbenchError) as info:
        call()
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_memory_estimate_scales_as_documented(monkeypatch):
    """The estimate that refuses requests: n² per start for dense methods, none for matrix-free ones."""
    from bench import limits
    import problems
    small, big = problems.get("rosenbrock:dim=100"), problems.get("rosenbrock:dim=1000")
    newton, lbfgs = optimizers.get("newton"), optimizers.get("lbfgs")
    r = limits.estimate(big, newton, 10, 100)["matrices"] / limits.estimate(small, newton, 10, 100)["matrices"]
    assert r == pytest.approx(100.0)
    assert limits.estimate(big, lbfgs, 10, 100)["matrices"] == 0
    assert limits.matrix_kind(optimizers.get("levenberg-marquardt")) == "jacobian"
    limits.check(big, newton, 10, 100)  # 320 MB: fits
    monkeypatch.setenv(limits.ENV_LIMIT, "1M")
    with pytest.raises(OptbenchError, match=r"needs about 3\d\d\.\d MiB .* but 1\.0 MiB is available"):
        limits.check(big, newton, 10, 100)
    monkeypatch.setenv(limits.ENV_LIMIT, "lots")
    with pytest.raises(OptbenchError, match="not a size"):
        limits.check(big, newton, 10, 100)


BROKEN_OPTIMIZER = """
import optimizers
from optimizers.base import Optimizer

def broken():
    def init(oracle, x0):
        raise ValueError("this optimizer cannot start")
    def step(oracle, s):
        return s
    return Optimizer("broken-opt", init, step)

optimizers.register("broken-opt", broken)
"""


def test_run_failing_before_its_first_cell_leaves_nothing(tmp_path, capsys, registry_snapshot):
    """Not bad input but a broken plug-in optimizer (it raises while being compiled): one line,
    a non-zero exit, and no half-made run directory."""
    plugin = tmp_path / "broken_opt.py"
    plugin.write_text(BROKEN_OPTIMIZER)
    out = tmp_path / "never"
    rc = main(["run", "--plugin", str(plugin), "--problems", "himmelblau", "--optimizers", "broken-opt",
               "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "this optimizer cannot start" in err
    assert not out.exists()


def test_residual_count_traced_once_per_problem_and_data_shape():
    """The estimate needs m (the number of residuals); it is traced once per problem and data
    shapes, not on every solve, and a problem whose data changes shape is traced again."""
    from bench import limits
    import problems
    calls = []

    def r(x, d):
        calls.append(1)
        return d["y"] - x[0] * d["t"]

    p = problems.Problem(name="count-r", residuals=r, x0=np.zeros(1), data={"t": np.arange(5.0), "y": np.ones(5)})
    assert limits._residual_count(p) == 5 and limits._residual_count(p) == 5
    assert len(calls) == 1
    p.data = {"t": np.arange(7.0), "y": np.ones(7)}
    assert limits._residual_count(p) == 7 and len(calls) == 2


def test_empty_out_is_refused_not_replaced_by_the_default_directory(capsys):
    """--out '' quietly wrote to results/runs/<timestamp> (an empty string read as "not given")."""
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--out", "", "--quiet"]) == 2
    assert "--out needs a directory, got an empty string" in capsys.readouterr().err


def test_distributed_settings_that_are_not_an_address_or_a_number(monkeypatch):
    from bench.solve import init_distributed
    with pytest.raises(OptbenchError, match="OPTBENCH_COORDINATOR must be host:port"):
        init_distributed("garbage", 1, 0)
    with pytest.raises(OptbenchError, match="OPTBENCH_PROCESS_ID must be a non-negative integer"):
        init_distributed("localhost:1234", 1, "first")
    # refused before anything waits for a coordinator: process 2 of 2 waited (for a coordinator
    # that then refuses it), and 0 processes read as "turned away ... another process running?"
    with pytest.raises(OptbenchError, match=r"OPTBENCH_PROCESS_ID must be below OPTBENCH_NUM_PROCESSES=2 "
                                            r"\(processes are numbered 0 to 1\), got 2"):
        init_distributed("localhost:1234", 2, 2)
    with pytest.raises(OptbenchError, match="OPTBENCH_NUM_PROCESSES must be at least 1, got 0"):
        init_distributed("localhost:1234", 0, 0)


@pytest.mark.parametrize("spec, needle", [
    ("rosenbrock:dim=2147483647", "dim=2147483647 is too large to build"),
    ("sphere:dim=1e9", "dim=1000000000.0 is too large to build"),
    ("mgh:extended-rosenbrock:n=200000000", "n=200000000 is too large to build"),
])
def test_huge_dimension_is_refused_before_the_factory_allocates(tmp_path, capsys, spec, needle):
    """rosenbrock:dim=2147483647 used to build a 16 GB x0 (and more) and fill the machine's memory
    before any check; the dimension parameter is now checked first, in one line, nothing written."""
    out = str(tmp_path / "run")
    assert main(["run", "--problems", spec, "--optimizers", "gd", "--starts", "1", "--out", out]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not os.path.exists(out)


@pytest.mark.parametrize("argv, needle", [
    (["perf", "--quick", "--device", ""], "--device needs cpu or gpu"),
    (["perf", "--quick", "--methods", " "], "--methods needs a value"),
    (["perf", "--quick", "--out", ""], "--out needs a directory"),
    (["report", "RUN", "--out", ""], "--out needs a file"),
    (["baseline", "RUN", "--out", ""], "--out needs a file"),
    (["compare", "RUN", "RUN", "--out", ""], "--out needs a directory"),
    (["plot", "RUN", "--work-weights", ""], "--work-weights needs a value"),
    (["--cpu-threads", "", "list", "optimizers"], "--cpu-threads needs a value"),
    (["check", "RUN", "--baseline", "B", "--tolerance", ""], "--tolerance needs a value"),
])
def test_an_empty_option_value_is_one_line_for_every_command(argv, needle, capsys):
    """Empty values meant different things per command: `perf --device ''` ran and recorded the
    device as "", `report/check/compare/perf --out ''` wrote to the default place, `--methods ''`
    timed everything, `--cpu-threads ''` and `--work-weights ''` were ignored (an unset shell
    variable, typically). Each is now refused before anything runs."""
    from bench.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("optbench: error: ") and needle in err and err.count("\n") == 1, err


def test_small_things_an_audit_of_bad_input_found(capsys):
    """`gd:lr=1_0` ran with lr = 10 (Python reads "1_0" as a number); a --tolerance key given
    twice silently took the last value; options without a command printed the usage on stdout."""
    from bench.cli import main
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "gd:lr=1_0", "--starts", "2"]) == 2
    assert "parameter 'lr' must be a number, got '1_0'" in capsys.readouterr().err
    assert main(["check", "RUN", "--baseline", "B", "--tolerance", "nit=1", "--tolerance", "nit=2"]) == 2
    assert "--tolerance: nit given twice" in capsys.readouterr().err
    assert main(["--cpu-threads", "2"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("usage: optbench")
