"""The batched-small-problem fast paths agree with their general counterparts.

Speed work replaced general forms by special ones (a 2×2 modified-Newton direction without
eigenvectors, multiply-and-sum products, an ordered L-BFGS memory, L-BFGS's matrix formed for a
few variables, a branch for one start's accept-or-keep, compiler options). Each is checked here
against an independent reference: numpy's eigendecomposition, the general code path forced on,
or the same run compiled with XLA's defaults.
"""
import collections
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optimizers.quasi_newton as qn
from optbench_core import OptbenchError
from optimizers import dense

solve_mod = importlib.import_module("bench.solve")


def _reference_direction(h, g, rel_floor=dense.EIG_FLOOR, abs_floor=1e-12):
    lam, v = np.linalg.eigh(h)
    delta = max(rel_floor * np.max(np.abs(lam)), abs_floor)
    return -(v @ ((v.T @ g) / np.maximum(np.abs(lam), delta)))


def test_two_by_two_modified_newton_direction_matches_the_eigendecomposition():
    rng = np.random.default_rng(3)
    cases = [np.diag([2.0, 5.0]), np.diag([-3.0, 1.0]), np.eye(2) * 4.0, np.array([[1.0, 1.0], [1.0, 1.0]]),
             np.array([[1e-20, 0.0], [0.0, 1.0]]), np.array([[802.0, -400.0], [-400.0, 200.0]])]
    cases += [(lambda a: a + a.T)(rng.standard_normal((2, 2))) for _ in range(40)]
    hs = np.array(cases)
    gs = rng.standard_normal((len(cases), 2))
    d, modified = jax.jit(jax.vmap(dense.modified_newton_direction))(jnp.asarray(hs), jnp.asarray(gs))
    for h, g, di, mi in zip(hs, gs, np.asarray(d), np.asarray(modified)):
        ref = _reference_direction(h, g)
        np.testing.assert_allclose(di, ref, rtol=1e-9, atol=1e-12 * np.linalg.norm(ref))
        lam = np.linalg.eigvalsh(h)
        assert bool(mi) == bool(lam[0] < max(dense.EIG_FLOOR * np.max(np.abs(lam)), 1e-12))
        assert g @ di < 0   # always a descent direction


def test_two_by_two_least_squares_model_matches_numpy():
    """The projector form of the Gauss-Newton model for n = 2 (no eigenvectors) against numpy:
    eigenvalues of JᵀJ, |Vᵀ Jᵀr|, damped steps −(JᵀJ + λI)⁻¹Jᵀr, and at λ = 0 the minimum-norm
    least-squares step; rank-one, diagonal, JᵀJ = mI, zero and huge (entries of JᵀJ ~1e200)
    Jacobians included."""
    rng = np.random.default_rng(5)
    jacs = [np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]),
            np.array([[3.0, 0.0], [0.0, 1e-3], [0.0, 0.0]]), np.array([[-20.0, 10.0], [-1.0, 0.0], [0.0, 0.0]]),
            np.zeros((3, 2)), np.array([[1e100, 2e99], [3e99, 1e100], [0.0, 1e99]])]   # (JᵀJ)² overflows
    jacs += [rng.standard_normal((3, 2)) * 10.0 ** rng.uniform(-2, 2) for _ in range(40)]
    rs = rng.standard_normal((len(jacs), 3))

    def one(j, r, lam):
        mu, b, floor, step = dense.least_squares_model(j, r)
        return mu, b, floor, step(lam), step(0.0)
    model = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    for lam in (1e-3, 1.0, 50.0):
        mu, b, floor, q, q0 = (np.asarray(a) for a in model(jnp.asarray(np.array(jacs)), jnp.asarray(rs), lam))
        for k, (j, r) in enumerate(zip(jacs, rs)):
            w, v = np.linalg.eigh(j.T @ j)
            scale = max(1.0, w[1])
            np.testing.assert_allclose(mu[k], w, rtol=1e-10, atol=1e-12 * scale)
            g = j.T @ r
            if w[1] - w[0] > 1e-9 * scale:   # the split of Jᵀr is defined only where they differ
                np.testing.assert_allclose(b[k], np.abs(v.T @ g), rtol=1e-8, atol=1e-12 * np.linalg.norm(g))
            np.testing.assert_allclose(np.linalg.norm(b[k]), np.linalg.norm(g), rtol=1e-10, atol=1e-300)
            ref = -np.linalg.solve(j.T @ j + lam * np.eye(2), g)
            np.testing.assert_allclose(q[k], ref, rtol=1e-8, atol=1e-10 * np.linalg.norm(ref) + 1e-300)
            if w[1] > 0:
                ref0 = -np.linalg.lstsq(j, r, rcond=None)[0]
                np.testing.assert_allclose(q0[k], ref0, rtol=1e-6, atol=1e-9 * np.linalg.norm(ref0))
            else:
                assert not np.any(q0[k])


@pytest.mark.parametrize("shape", [(3, 4), (70, 80)])   # below and above SMALL_DOT_MAX
def test_products_match_numpy_on_both_paths(shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape)
    x, y = rng.standard_normal(shape[1]), rng.standard_normal(shape[0])
    b = rng.standard_normal((shape[1], 5))
    np.testing.assert_allclose(dense.mv(jnp.asarray(a), jnp.asarray(x)), a @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense.vm(jnp.asarray(y), jnp.asarray(a)), y @ a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense.mm(jnp.asarray(a), jnp.asarray(b)), a @ b, rtol=1e-12, atol=1e-12)


def _assert_lbfgs_path_takes_the_same_steps(monkeypatch, switch, max_iter):
    """L-BFGS on three 2-D Rosenbrock starts, then again with the module constant ``switch`` set
    to 0 (the general path): the same iterations, evaluations, f history and end points."""
    starts = np.array([[-1.2, 1.0], [2.0, -1.5], [0.3, 1.7]])
    fast = solve_mod.solve("rosenbrock", "lbfgs:memory=4", starts, max_iter=max_iter, gtol=0.0)
    monkeypatch.setattr(qn, switch, 0)
    general = solve_mod.solve("rosenbrock", "lbfgs:memory=4", starts, max_iter=max_iter, gtol=0.0)
    assert fast.nit.tolist() == general.nit.tolist() == [max_iter] * 3
    np.testing.assert_allclose(fast.trace.f, general.trace.f, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(fast.x, general.x, rtol=1e-7, atol=1e-10)
    assert fast.nfev.tolist() == general.nfev.tolist()


def test_lbfgs_ordered_memory_takes_the_same_steps_as_the_circular_one(monkeypatch):
    """Two independent implementations of the two-loop recursion (ordered rows for small memories;
    circular buffers and the vector-free recursion for large ones) give the same iterates."""
    _assert_lbfgs_path_takes_the_same_steps(monkeypatch, "LBFGS_SMALL_MAX", 12)


@pytest.mark.parametrize("n,count", [(2, 10), (2, 3), (3, 0), (4, 7)])
def test_lbfgs_formed_inverse_hessian_equals_the_two_loop_recursion(n, count):
    """Small L-BFGS memories form H from the pairs instead of running the two-loop recursion:
    both give the matrix of the textbook product form H ← VᵀHV + ρssᵀ, V = I − ρysᵀ (numpy),
    applied oldest pair first from γI, with only the newest ``count`` rows holding pairs."""
    m = 10
    rng = np.random.default_rng(n * 100 + count)
    s_mem = rng.normal(size=(m, n))
    y_mem = s_mem @ np.diag(rng.uniform(0.5, 3.0, n)) + 0.1 * rng.normal(size=(m, n))  # sᵀy > 0
    rho = 1.0 / np.sum(s_mem * y_mem, axis=1)
    gamma, g = 0.7, rng.normal(size=n)
    h = gamma * np.eye(n)
    for j in range(m - count, m):
        v = np.eye(n) - rho[j] * np.outer(y_mem[j], s_mem[j])
        h = v.T @ h @ v + rho[j] * np.outer(s_mem[j], s_mem[j])
    args = [jnp.asarray(a) for a in (s_mem, y_mem, rho)] + [jnp.int32(count), jnp.asarray(gamma)]
    formed = np.asarray(jax.jit(qn._lbfgs_inverse_hessian)(*args))
    np.testing.assert_allclose(formed, h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(formed, formed.T, rtol=1e-13, atol=1e-15)  # symmetric up to rounding
    np.testing.assert_allclose(np.asarray(jax.jit(qn._two_loop)(*args, jnp.asarray(g))), -h @ g, rtol=1e-10,
                               atol=1e-12)


def test_lbfgs_formed_inverse_hessian_takes_the_same_steps_as_the_two_loop_recursion(monkeypatch):
    assert qn.LBFGS_DENSE_MAX >= 2
    _assert_lbfgs_path_takes_the_same_steps(monkeypatch, "LBFGS_DENSE_MAX", 15)


def test_take_if_is_a_branch_for_one_start_and_a_select_over_the_driver_lanes():
    """``take_if`` (a step's accept-or-keep) gives new() where pred holds, else old, both as a
    conditional (one start, on the CPU) and as a select under the driver's lane axis; new() may
    produce NaN on the rejected lanes without leaking into them."""
    from optimizers import base

    old = (jnp.array([1.0, 2.0]), jnp.array(3.0))

    def new(x):
        return lambda: (x * jnp.array([10.0, jnp.nan]), jnp.sum(x))

    one = jax.jit(lambda p, x: base.take_if(p, new(x), old))
    if jax.default_backend() == "cpu":   # a branch on the CPU (a select elsewhere)
        assert "conditional(" in one.lower(True, jnp.ones(2)).compile().as_text()
    for pred in (True, False):
        got = one(pred, jnp.array([1.0, 4.0]))
        want = (np.array([10.0, np.nan]), 5.0) if pred else (np.array([1.0, 2.0]), 3.0)
        np.testing.assert_array_equal(np.asarray(got[0]), want[0])
        assert float(got[1]) == want[1]
    preds, xs = jnp.array([True, False, True]), jnp.arange(6.0).reshape(3, 2)
    with base.lane_axis("lanes"):
        lanes = jax.vmap(lambda p, x: base.take_if(p, new(x), old), axis_name="lanes")(preds, xs)
        batched = jax.jit(jax.vmap(lambda p, x: base.take_if(p, new(x), old), axis_name="lanes"))
        assert "conditional(" not in batched.lower(preds, xs).compile().as_text()
    np.testing.assert_array_equal(np.asarray(lanes[0]), [[0.0, np.nan], [1.0, 2.0], [40.0, np.nan]])
    np.testing.assert_array_equal(np.asarray(lanes[1]), [1.0, 3.0, 9.0])


def test_cpu_compiler_options_change_speed_not_results(monkeypatch):
    """The run compiled with optbench's CPU options equals the one with XLA's defaults (to
    round-off: reductions may associate differently), and an XLA that does not know the option
    falls back to its defaults instead of failing."""
    starts = np.array([[-1.2, 1.0], [1.5, 1.5]])
    tuned = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50)
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    plain = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50)
    assert tuned.nit.tolist() == plain.nit.tolist()
    np.testing.assert_allclose(tuned.x, plain.x, rtol=1e-12)
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS")
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    monkeypatch.setattr(solve_mod, "SMALL_PROBLEM_OPTIONS", {"xla_cpu_no_such_option_in_any_xla": "1"})
    monkeypatch.setattr(solve_mod, "_OPTIONS_OK", {"cpu": True, "small_batch": True})
    fallback = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50)
    assert solve_mod._OPTIONS_OK["cpu"] is False
    np.testing.assert_allclose(fallback.x, plain.x, rtol=1e-12)



def _options_probe(monkeypatch):
    """(a stand-in for a lowered program whose compile returns the options it was given, the
    CPU device), with no option variables set and optbench's own options known to XLA."""
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS", raising=False)
    monkeypatch.setattr(solve_mod, "_OPTIONS_OK", {"cpu": True, "small_batch": True})

    class Lowered:
        def compile(self, compiler_options=None):
            return compiler_options

    return Lowered(), jax.devices("cpu")[0]


def test_cpu_compiler_options_only_for_small_dimension_and_small_data(monkeypatch):
    """The YNNPACK switch is for many small problems: a long vector or large data keeps XLA's
    library reductions (they win on long reductions); copy insertion with region analysis
    applies to every program."""
    lowered, cpu = _options_probe(monkeypatch)
    always, small = solve_mod.CPU_COMPILER_OPTIONS, solve_mod.SMALL_PROBLEM_OPTIONS
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, solve_mod.SMALL_DIM_MAX + 1, 100) == always
    assert solve_mod.compile_lowered(lowered, cpu, 50, solve_mod.SMALL_DATA_MAX + 1) == always
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) is None


def test_small_batches_compile_with_the_older_emitters(monkeypatch):
    """A batch of at most SMALL_BATCH_MAX numbers (starts × dimension) of a small problem also
    gets SMALL_BATCH_OPTIONS; a larger batch, a batch not said (0), a large problem or large data
    do not, nor does anything off the CPU or with OPTBENCH_XLA_DEFAULTS=1."""
    lowered, cpu = _options_probe(monkeypatch)
    always, small, tiny = (solve_mod.CPU_COMPILER_OPTIONS, solve_mod.SMALL_PROBLEM_OPTIONS,
                           solve_mod.SMALL_BATCH_OPTIONS)
    top = solve_mod.SMALL_BATCH_MAX
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=top // 2) == {**always, **small, **tiny}
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=top // 2 + 1) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, top, 0, batch=1) == {**always, **small, **tiny}
    assert solve_mod.compile_lowered(lowered, cpu, top + 1, 0, batch=1) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, 2, solve_mod.SMALL_DATA_MAX + 1, batch=1) == always
    assert solve_mod.xla_options("gpu", 2, 0, batch=1) is None
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=1) is None


def test_loops_of_small_arrays_compile_without_split_kernels(monkeypatch):
    """A small problem whose loop carries no array (all starts) above NO_SPLIT_ARRAY_MAX bytes also
    gets NO_SPLIT_OPTIONS (XLA's pass that splits one kernel across threads off); a larger array,
    a size not said (0), a large problem or large data do not, nor anything off the CPU or with
    OPTBENCH_XLA_DEFAULTS=1; the user's own value of the option wins."""
    lowered, cpu = _options_probe(monkeypatch)
    always, small, lean = solve_mod.CPU_COMPILER_OPTIONS, solve_mod.SMALL_PROBLEM_OPTIONS, solve_mod.NO_SPLIT_OPTIONS
    top = solve_mod.NO_SPLIT_ARRAY_MAX
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=1000, array_bytes=top) == {**always, **small, **lean}
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=1000, array_bytes=top + 1) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=1000) == {**always, **small}
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, batch=8, array_bytes=64) == {
        **always, **small, **solve_mod.SMALL_BATCH_OPTIONS, **lean}
    assert solve_mod.compile_lowered(lowered, cpu, solve_mod.SMALL_DIM_MAX + 1, 0, array_bytes=64) == always
    assert solve_mod.compile_lowered(lowered, cpu, 2, solve_mod.SMALL_DATA_MAX + 1, array_bytes=64) == always
    assert solve_mod.xla_options("gpu", 2, 0, array_bytes=64) is None
    mine = {next(iter(lean)): ""}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(mine))
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, array_bytes=64) == {**always, **small, **mine}
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100, array_bytes=64) is None


def _split_kernels() -> int:
    """Kernels split across threads in the compiled programs this process keeps."""
    return sum(exe.as_text().count('outer_dimension_partitions":["')
               for entry in solve_mod._COMPILED.values() for exe in entry[0] if exe is not None)


def test_a_loop_of_small_arrays_runs_unsplit_with_the_same_results(monkeypatch):
    """Real compiles: 2-D Newton on 10³ starts carries arrays of at most 16 kB (x and ∇f), so its
    programs are compiled with no kernel split across threads; forced back on
    (OPTBENCH_XLA_OPTIONS), XLA splits the modified-Newton direction's kernel, and the results are
    the same bits. The perf floors follow the same rule, their arrays found the same way (among
    what their iteration loop carries)."""
    from bench import kernels, perf
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS", raising=False)
    monkeypatch.setattr(solve_mod, "_OPTIONS_OK", {"cpu": True, "small_batch": True})
    starts = np.random.default_rng(2).uniform(-2, 2, (1000, 2))
    seen = []
    real = solve_mod.compile_lowered

    def spy(*args, **kwargs):
        seen.append(kwargs.get("array_bytes", args[7] if len(args) > 7 else 0))
        return real(*args, **kwargs)
    monkeypatch.setattr(solve_mod, "compile_lowered", spy)
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    lean = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=200, history=False)
    assert seen == [1000 * 2 * 8]
    assert _split_kernels() == 0
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({next(iter(solve_mod.NO_SPLIT_OPTIONS)): ""}))
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    split = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=200, history=False)
    if solve_mod.cpu_threads() > 1:   # XLA splits kernels only for a pool of several threads
        assert _split_kernels() > 0
    assert (lean.status == "converged").all()
    np.testing.assert_array_equal(lean.x, split.x)
    np.testing.assert_array_equal(lean.nit, split.nit)
    # the floor carries x, y, f, ∇f and the Hessian's two varying entries as float64 arrays of B
    xj = jnp.asarray(starts)
    assert perf._loop_array_bytes(lambda x, g: kernels.rosenbrock2_newton(x, g), xj, jnp.asarray(1e-8)) == 1000 * 8
    assert perf._loop_array_bytes(lambda x: x * 2.0, xj) == 0


def test_a_small_batch_gives_the_same_results_and_an_xla_without_its_option_keeps_the_others(monkeypatch):
    """Real compiles: 4 starts of 2-D Rosenbrock compiled with the small-batch options (the
    default) and without them (forced through OPTBENCH_XLA_OPTIONS) take the same iterations to
    the same points (to rounding); the small-batch option and the run's options are in the
    compiled program's key. An XLA that refuses the small-batch option compiles without it (and
    remembers that) but keeps optbench's other options."""
    starts = np.random.default_rng(1).uniform(-2, 2, (4, 2))
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS", raising=False)
    monkeypatch.setattr(solve_mod, "_OPTIONS_OK", {"cpu": True, "small_batch": True})
    seen = []
    real = solve_mod.compile_lowered

    def spy(lowered, dev, n=0, data_size=0, fuse_loops=False, batch=0, jax_cache=True, array_bytes=0):
        exe = real(lowered, dev, n, data_size, fuse_loops, batch, jax_cache, array_bytes)
        seen.append(solve_mod.xla_options(dev.platform, n, data_size, fuse_loops, batch=batch,
                                          array_bytes=array_bytes))
        return exe
    monkeypatch.setattr(solve_mod, "compile_lowered", spy)
    small = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False)
    assert seen and all(o.items() >= solve_mod.SMALL_BATCH_OPTIONS.items() for o in seen)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({k: True for k in solve_mod.SMALL_BATCH_OPTIONS}))
    large = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False)
    assert small.nit.tolist() == large.nit.tolist() and (small.status == "converged").all()
    np.testing.assert_allclose(small.x, large.x, rtol=1e-12)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    monkeypatch.setattr(solve_mod, "SMALL_BATCH_OPTIONS", {"xla_cpu_no_such_option_in_any_xla": True})
    seen.clear()
    fallback = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False)
    assert solve_mod._OPTIONS_OK == {"cpu": True, "small_batch": False}
    assert seen and all(o.items() >= solve_mod.SMALL_PROBLEM_OPTIONS.items() for o in seen)
    assert not any("xla_cpu_no_such_option_in_any_xla" in o for o in seen)
    np.testing.assert_allclose(fallback.x, large.x, rtol=1e-12)


def test_user_xla_options_from_the_environment(monkeypatch):
    """OPTBENCH_XLA_OPTIONS adds options to every compile, over optbench's own and also with
    OPTBENCH_XLA_DEFAULTS=1 or off the CPU; malformed values and options this XLA does not know
    are one-line errors, and an unknown user option does not switch off optbench's own."""
    lowered, cpu = _options_probe(monkeypatch)
    user = {"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    always, small = solve_mod.CPU_COMPILER_OPTIONS, solve_mod.SMALL_PROBLEM_OPTIONS
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) == {**always, **small, **user}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({next(iter(always)): False}))
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) == {**small, next(iter(always)): False}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    assert solve_mod.xla_options("gpu") == user
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert solve_mod.compile_lowered(lowered, cpu, 2, 100) == user
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS")
    for bad in ("{oops", "[1, 2]", '{"xla_x": [1]}'):
        monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", bad)
        with pytest.raises(OptbenchError, match="OPTBENCH_XLA_OPTIONS") as e:
            solve_mod.xla_options("cpu")
        assert "\n" not in str(e.value)
    # a real compile: the option is passed to XLA (the split pass off: no fusion is split across
    # threads, results unchanged); an option XLA does not know is refused in one line
    starts = np.random.default_rng(0).uniform(-2, 2, (64, 2))
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    plain = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50, history=False)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    opted = solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50, history=False)
    np.testing.assert_array_equal(opted.x, plain.x)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", '{"xla_cpu_no_such_option_in_any_xla": 1}')
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    with pytest.raises(OptbenchError, match="XLA refused the options in OPTBENCH_XLA_OPTIONS") as e:
        solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=50, history=False)
    assert "\n" not in str(e.value)
    assert solve_mod._OPTIONS_OK["cpu"] is True
    # the run's provenance lists what was compiled with: the small-problem options only where
    # they apply (not with OPTBENCH_XLA_DEFAULTS=1)
    from bench import store
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    rec = store._xla_options("cpu")
    assert rec["options"] == {**solve_mod.CPU_COMPILER_OPTIONS, **user}
    assert rec["small_problems"]["options"] == solve_mod.SMALL_PROBLEM_OPTIONS
    assert rec["small_problems"]["small_batches"] == {"options": solve_mod.SMALL_BATCH_OPTIONS,
                                                      "for_starts_times_dim_at_most": solve_mod.SMALL_BATCH_MAX}
    assert "small_arrays" not in rec["small_problems"]   # the user's xla_disable_hlo_passes wins there
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    assert store._xla_options("cpu")["small_problems"]["small_arrays"] == {
        "options": solve_mod.NO_SPLIT_OPTIONS, "for_largest_carried_array_bytes_at_most": solve_mod.NO_SPLIT_ARRAY_MAX}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert store._xla_options("cpu") == {"options": user}
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    assert store._xla_options("cpu") == "xla defaults"


def test_a_backend_option_set_to_false_is_left_out_and_multi_output_fusion_with_pack_needs_jaxlib_0_12(
        monkeypatch):
    """XLA reads xla_cpu_use_multi_output_fusion by its presence alone, so an entry set to false
    (any case) is left out of the compile options; with it, pack=True is a one-line error on a
    jaxlib before 0.12 (whose XLA aborts the process compiling a packed run's loops), checked before
    anything compiles, and allowed from 0.12 on; pack=False is allowed everywhere."""
    import jaxlib
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    key, mof = solve_mod.BACKEND_OPTIONS_KEY, solve_mod.MULTI_OUTPUT_OPTION
    assert solve_mod._jaxlib_version() == tuple(int(v) for v in jaxlib.__version__.split(".")[:2])
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({key: f"{mof}=False"}))
    assert key not in solve_mod.xla_options("cpu", 2, 0)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({key: f"{mof}=false,xla_cpu_small_while_loop_byte_threshold=0"}))
    assert solve_mod.xla_options("cpu", 2, 0)[key] == "xla_cpu_small_while_loop_byte_threshold=0"
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({key: mof}))
    assert solve_mod.parse_backend_options(solve_mod.xla_options("cpu", 2, 0)[key]) == {mof: ""}
    monkeypatch.setattr(solve_mod, "PACK_TILE_MIN", 8)
    monkeypatch.setattr(solve_mod, "_jaxlib_version", lambda: (0, 11))
    before = solve_mod.compile_count()
    starts = np.random.default_rng(4).uniform(-2, 2, (32, 2))
    with pytest.raises(OptbenchError, match="needs jaxlib 0.12 or later") as e:
        solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=5, pack=True)
    assert "\n" not in str(e.value) and solve_mod.compile_count() == before
    solve_mod._check_multi_output({key: "xla_cpu_small_while_loop_byte_threshold=0"})   # others pass
    monkeypatch.setattr(solve_mod, "_jaxlib_version", lambda: (0, 12))
    solve_mod._check_multi_output(solve_mod.xla_options("cpu", 2, 0))   # allowed there


def test_a_change_of_the_xla_environment_compiles_again(monkeypatch):
    """A program compiled under one OPTBENCH_XLA_OPTIONS / OPTBENCH_XLA_DEFAULTS is not served
    after either changed in the same process (it would run with options the user no longer asked
    for), and is served again once they are back."""
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS", raising=False)
    # none of this process's earlier programs (another test may have compiled this one under
    # the same settings)
    monkeypatch.setattr(solve_mod, "_COMPILED", collections.OrderedDict())
    starts = np.random.default_rng(1).uniform(-2, 2, (8, 2))

    def compiles():
        before = solve_mod.compile_count()
        solve_mod.solve("rosenbrock", "newton:mode=minimize", starts, max_iter=30, history=False)
        return solve_mod.compile_count() - before

    compiles()
    assert compiles() == 0
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}))
    assert compiles() == 1 and compiles() == 0
    monkeypatch.setenv("OPTBENCH_XLA_DEFAULTS", "1")
    assert compiles() == 1
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS")
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    assert compiles() == 0


_LOOP_LANES = 200_000   # 1.6 MB a trip: above any size XLA compiles as one function by itself


def _while_program(k):
    """A freshly lowered jitted while loop (a new function each time, so JAX's own caches cannot
    hand back a program compiled with other options)."""
    def f(x):
        return jax.lax.while_loop(lambda c: c[0] < 3 + k, lambda c: (c[0] + 1, jnp.sin(c[1]) + 0.5), (0, x))[1]
    return jax.jit(f).lower(jnp.ones(_LOOP_LANES))


def test_backend_options_reach_xla_for_one_program_only(monkeypatch):
    """XLA's backend options (a map JAX's compiler_options cannot set) reach the program compiled
    with them, and only it. With the loop size threshold at 0 (given in OPTBENCH_XLA_OPTIONS) XLA
    compiles no loop as one function; fuse_loops=True makes it compile this 1.6 MB-per-trip loop
    so (a call it marks xla_cpu_small_call), unless the user's threshold wins (backend options are
    merged name by name); a program compiled afterwards is not fused; the fused loop computes the
    same values."""
    monkeypatch.delenv("OPTBENCH_XLA_DEFAULTS", raising=False)
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS", raising=False)
    cpu = jax.devices("cpu")[0]
    key = solve_mod.BACKEND_OPTIONS_KEY
    off = json.dumps({key: "xla_cpu_small_while_loop_byte_threshold=0"})
    fused = solve_mod.compile_lowered(_while_program(1), cpu, 2, 0, fuse_loops=True)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", off)
    plain = solve_mod.compile_lowered(_while_program(1), cpu, 2, 0)
    user_wins = solve_mod.compile_lowered(_while_program(2), cpu, 2, 0, fuse_loops=True)
    assert "xla_cpu_small_call" in fused.as_text()
    assert "xla_cpu_small_call" not in plain.as_text()
    assert "xla_cpu_small_call" not in user_wins.as_text()
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    fused_again = solve_mod.compile_lowered(_while_program(3), cpu, 2, 0, fuse_loops=True)
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", off)
    after = solve_mod.compile_lowered(_while_program(3), cpu, 2, 0)
    assert "xla_cpu_small_call" in fused_again.as_text() and "xla_cpu_small_call" not in after.as_text()
    x = jnp.ones(_LOOP_LANES)
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(plain(x)), rtol=1e-15)
    assert solve_mod.xla_options("cpu", 2, 0)[key] == "xla_cpu_small_while_loop_byte_threshold=0"
    assert solve_mod.xla_options("cpu", 2, 0, fuse_loops=True)[key] == "xla_cpu_small_while_loop_byte_threshold=0"
    monkeypatch.delenv("OPTBENCH_XLA_OPTIONS")
    assert key not in solve_mod.xla_options("cpu", 2, 0)   # nothing of the kind by default
    assert solve_mod.parse_backend_options(solve_mod.xla_options("cpu", 2, 0, fuse_loops=True)[key]) == \
        solve_mod.FUSE_LOOPS_BACKEND
    assert solve_mod.xla_options("gpu", 2, 0, fuse_loops=True) is None   # a CPU setting
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps({key: 5}))
    with pytest.raises(OptbenchError, match="must be a string") as e:
        solve_mod.xla_options("cpu")
    assert "\n" not in str(e.value)
    assert solve_mod.parse_backend_options(" a, b=1 ,,c = x") == {"a": "", "b": "1", "c": "x"}
    assert solve_mod.format_backend_options({"a": "", "b": "1"}) == "a,b=1"


def test_fuse_loops_solves_alike_and_is_its_own_program():
    """solve(fuse_loops=True) takes the same iterations and reaches the same points to rounding
    (XLA emits the fused loop with another code generator, so not bit for bit), is compiled once as a
    program of its own (not served the default's, nor serving it), and reports its compile."""
    starts = np.random.default_rng(5).uniform(-2, 2, (40, 2))
    before = solve_mod.compile_count()
    a = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False)
    f1 = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False, fuse_loops=True)
    f2 = solve_mod.solve("rosenbrock", "bfgs", starts, max_iter=200, history=False, fuse_loops=True)
    assert solve_mod.compile_count() - before == 2
    assert f1.compile_s > 0 and f2.compile_s == 0.0
    np.testing.assert_array_equal(f1.x, f2.x)
    np.testing.assert_array_equal(f1.nit, a.nit)
    np.testing.assert_array_equal(f1.status, a.status)
    np.testing.assert_allclose(f1.x, a.x, rtol=1e-9, atol=1e-12)
    with pytest.raises(OptbenchError, match="fuse_loops must be True or False"):
        solve_mod.solve("rosenbrock", "bfgs", starts, fuse_loops="yes")


def test_lanes_while_freezes_what_it_keeps_and_equals_a_plain_loop():
    """Under the driver's named vmap, each start's kept values are those of its own plain
    while_loop (different trip counts per start); values not kept may run on; outside a driver
    it is lax.while_loop."""
    from optimizers.base import lane_axis, lanes_while

    def one(n):
        cond = lambda c: c[1] < n  # noqa: E731
        body = lambda c: (c[0] * 2.0, c[1] + 1, c[2] + 1.0)  # noqa: E731
        return lanes_while(cond, body, (jnp.float64(1.0), jnp.int32(0), jnp.float64(0.0)), keep=(0, 1))

    ns = jnp.array([0, 3, 1, 5], jnp.int32)
    with lane_axis("lanes"):
        x, k, junk = jax.jit(jax.vmap(one, axis_name="lanes"))(ns)
    np.testing.assert_array_equal(np.asarray(x), 2.0 ** np.asarray(ns))
    np.testing.assert_array_equal(np.asarray(k), np.asarray(ns))
    assert np.all(np.asarray(junk) == 5.0)    # not kept: every start ran the batch's 5 trips
    for n in (0, 3):
        xs, ks, js = one(jnp.int32(n))          # no driver: a plain while_loop
        assert float(xs) == 2.0 ** n and int(ks) == n and float(js) == n


@pytest.mark.parametrize("levels", [1, 2])
def test_compacting_lanes_while_equals_per_lane_loops(monkeypatch, levels):
    """With compaction (pack=True's inner loops) a batch whose lanes need very different trip
    counts finishes on its running lanes gathered into smaller batches: every lane's kept values
    are exactly those of its own while_loop, including what the loop closes over per lane
    (``scale``) and for all (``shift``, a jit argument); a value not kept is not brought back
    from the smaller batches, which shows that the loop went there."""
    import optimizers.base as base
    monkeypatch.setattr(base, "COMPACT_MIN", 16)
    monkeypatch.setattr(base, "COMPACT_LEVELS", levels)

    def one(n, scale, shift):
        cond = lambda c: c[1] < n  # noqa: E731
        body = lambda c: (c[0] * scale + shift, c[1] + 1, c[2] + 1.0)  # noqa: E731
        return base.lanes_while(cond, body, (jnp.float64(1.0), jnp.int32(0), jnp.float64(0.0)), keep=(0, 1))

    rng = np.random.default_rng(0)
    ns = np.where(rng.random(64) < 0.9, rng.integers(0, 4, 64), rng.integers(5, 40, 64)).astype(np.int32)
    scales = rng.uniform(0.5, 1.1, 64)

    def batched(ns, scales, shift):
        with base.lane_axis("lanes", compact=True):
            return jax.vmap(one, in_axes=(0, 0, None), axis_name="lanes")(ns, scales, shift)

    x, k, junk = jax.jit(batched)(jnp.asarray(ns), jnp.asarray(scales), jnp.float64(0.25))
    want = []
    for n, sc in zip(ns, scales):
        v = 1.0
        for _ in range(n):
            v = v * sc + 0.25
        want.append(v)
    np.testing.assert_array_equal(np.asarray(k), ns)
    np.testing.assert_allclose(np.asarray(x), want, rtol=1e-15)
    # values not kept come back from the whole batch's trips only: fewer than the longest lane's
    junk = np.asarray(junk)
    assert np.all(junk == junk[0]) and 0 < junk[0] < ns.max()
