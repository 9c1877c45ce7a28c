"""Audit of the Python API as README's "Python API" section documents it: bench.solve /
bench.precompile arguments, the Result fields and their shapes, the Trace, argument errors and
the compile cache. References are Himmelblau's closed form, not the code's own output."""
import importlib

import numpy as np
import pytest

import bench
import optimizers
import problems
from optbench_core import OptbenchError

S = importlib.import_module("bench.solve")   # the module (bench.solve is the function)

P = "himmelblau"
OPT = "newton"
X0S = np.array([[1.0, 1.0], [-3.0, 3.0], [0.5, -0.5]])
MINIMA = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848127]])


def f_h(x):
    x = np.asarray(x, np.float64)
    return (x[..., 0] ** 2 + x[..., 1] - 11) ** 2 + (x[..., 0] + x[..., 1] ** 2 - 7) ** 2


def g_h(x):
    x = np.asarray(x, np.float64)
    a = x[..., 0] ** 2 + x[..., 1] - 11
    b = x[..., 0] + x[..., 1] ** 2 - 7
    return np.stack([4 * a * x[..., 0] + 2 * b, 2 * a + 4 * b * x[..., 1]], axis=-1)


@pytest.fixture(scope="module")
def batch():
    return bench.solve(P, OPT, X0S, max_iter=50, gtol=1e-8)


def test_batch_fields_shapes_and_meaning(batch):
    r = batch
    b = len(X0S)
    assert r.x.shape == (b, 2) and r.x0.shape == (b, 2)
    for k in ("fun", "grad_norm", "nit", "nfev", "njev", "nhev", "nhvp", "status", "status_code", "success"):
        assert np.shape(getattr(r, k)) == (b,), k
    assert list(r.status) == ["converged"] * b and r.success.all()
    # each start at one of Himmelblau's four minima, f and ‖∇f‖ by the closed form
    assert np.min(np.linalg.norm(r.x[:, None] - MINIMA[None], axis=-1), axis=1).max() < 1e-5
    np.testing.assert_allclose(r.fun, f_h(r.x), rtol=0, atol=1e-14)
    np.testing.assert_allclose(r.grad_norm, np.linalg.norm(g_h(r.x), axis=-1), rtol=1e-6, atol=1e-12)
    assert (r.grad_norm <= 1e-8).all()
    assert r.iterations_run == r.nit.max() and r.compile_s >= 0 and r.run_s > 0
    assert r.max_iter == 50 and r.gtol == 1e-8 and r.dtype == "float64"


def test_trace_shapes_recorded_and_row0(batch):
    r, b = batch, len(X0S)
    t = r.trace
    for k in ("f", "grad_norm", "nfev", "njev", "nhev", "nhvp", "step", "rho"):
        assert getattr(t, k).shape == (b, 51), k
    assert t.x.shape == (b, 51, 2)
    rec = t.recorded()
    assert set(rec) == {"f", "grad_norm", "nfev", "njev", "nhev", "nhvp", "step", "rho", "x"}
    assert all(v.shape[:2] == (b, r.iterations_run + 1) for v in rec.values())
    np.testing.assert_allclose(t.f[:, 0], f_h(X0S), rtol=1e-15)
    np.testing.assert_allclose(t.grad_norm[:, 0], np.linalg.norm(g_h(X0S), axis=-1), rtol=1e-12)
    np.testing.assert_array_equal(t.x[:, 0], X0S)
    # column nit is the final state, and the flat tail repeats it
    i = np.arange(b)
    np.testing.assert_array_equal(t.f[i, r.nit], r.fun)
    np.testing.assert_array_equal(t.nfev[i, r.nit], r.nfev)
    np.testing.assert_array_equal(t.f[:, -1], r.fun)


def test_second_call_and_other_max_iter_do_not_recompile(batch):
    c = S.compile_count()
    r2 = bench.solve(P, OPT, X0S, max_iter=50, gtol=1e-8)
    r3 = bench.solve(P, OPT, X0S, max_iter=3, gtol=1e-3)
    assert S.compile_count() == c and r2.compile_s == 0.0 and r3.compile_s == 0.0
    assert r3.trace.f.shape == (len(X0S), 4) and (r3.nit <= 3).all()
    # gtol, also a run-time argument: gtol=1e-3 cannot end later than 1e-8
    assert (r3.nit <= batch.nit).all()


def test_single_start_loses_batch_axis():
    r = bench.solve(P, OPT, [1.0, 1.0], max_iter=50)
    assert r.x.shape == (2,) and r.x0.shape == (2,)
    for k in ("fun", "grad_norm", "nit", "nfev", "status", "success"):
        assert np.shape(getattr(r, k)) == (), k
    assert str(r.status) == "converged" and bool(r.success)
    assert r.trace.f.shape == (51,) and r.trace.x.shape == (51, 2)
    assert r.trace.recorded()["f"].shape == (int(r.nit) + 1,)
    np.testing.assert_allclose(r.x, [3.0, 2.0], atol=1e-6)


def test_float32_run_casts_starts():
    x0 = np.array([[1.1, 0.9], [-2.9, 3.3]])          # not float32 numbers
    r = bench.solve(P, OPT, x0, max_iter=50, gtol=1e-3, dtype="float32")
    assert r.dtype == "float32" and r.x.dtype == np.float32
    assert r.trace.f.dtype == np.float32 and r.trace.x.dtype == np.float32
    np.testing.assert_array_equal(r.trace.x[:, 0], x0.astype(np.float32))
    np.testing.assert_allclose(r.trace.f[:, 0], f_h(x0.astype(np.float32)), rtol=1e-6)
    assert r.success.all()


def test_history_false_and_precompile():
    c = S.compile_count()
    s = bench.precompile(P, OPT, np.zeros((4, 2)), max_iter=50, history=False)
    r = bench.solve(P, OPT, np.array([[1.0, 1.0], [-3.0, 3.0], [0.5, -0.5], [1.0, 1.0]]), max_iter=20, history=False)
    assert S.compile_count() == c + 1 and s > 0 and r.compile_s == s
    assert r.trace is None and list(r.status) == ["converged"] * 4
    assert np.min(np.linalg.norm(r.x[:, None] - MINIMA[None], axis=-1), axis=1).max() < 1e-5


@pytest.mark.parametrize("kw", [
    dict(x0s=np.zeros((3, 3))), dict(x0s=np.zeros((2, 2, 2))), dict(x0s=[[1.0, 2.0], [3.0]]),
    dict(x0s=[[np.nan, 1.0]]), dict(x0s=np.zeros((0, 2))), dict(x0s=1.0), dict(x0s=[1j, 2.0]),
    dict(gtol=-1.0), dict(gtol=float("nan")), dict(gtol="1e-8"), dict(dtype="float16"), dict(dtype="int32"),
    dict(repeats=0), dict(device="tpu"), dict(history=1), dict(pack="yes"), dict(max_iter=0),
    dict(max_iter=10.0), dict(problem="himmelblu"), dict(optimizer="newtn"),
])
def test_bad_arguments_are_one_line_errors(kw):
    kw = dict(kw)
    problem, optimizer = kw.pop("problem", P), kw.pop("optimizer", OPT)
    x0s = kw.pop("x0s", [1.0, 1.0])
    for fn in (bench.solve, bench.precompile):
        with pytest.raises(OptbenchError) as e:
            fn(problem, optimizer, x0s, **kw)
        assert "\n" not in str(e.value)


def test_object_of_wrong_kind_is_a_short_one_line_error():
    # a Problem where the optimizer goes (and vice versa) used to say "empty name in spec
    # <the object's whole repr>", numpy arrays included: many lines for a 40-D problem
    big = problems.get("rosenbrock:dim=40")
    for prob, opt in ((P, big), (optimizers.get(OPT), OPT), (P, 3)):
        with pytest.raises(OptbenchError) as e:
            bench.solve(prob, opt, None, max_iter=5)
        msg = str(e.value)
        assert "\n" not in msg and len(msg) < 200 and "must be a spec string" in msg


def test_precompile_takes_solves_arguments(batch):
    # README: "bench.precompile(p, opt, x0s, ...) (same arguments)"; repeats= and progress= were
    # a TypeError, so one keyword dict could not serve both calls
    kw = dict(max_iter=50, gtol=1e-8, repeats=2, progress=lambda phase: None)
    assert bench.precompile(P, OPT, X0S, **kw) == 0.0    # compiled by the module fixture's solve
    with pytest.raises(OptbenchError):
        bench.precompile(P, OPT, X0S, repeats=0)


def test_registry_get_of_a_non_string_names_its_type_only():
    """problems.get / optimizers.get of some other object: one short line naming its type, not
    "empty name in spec <the object's whole repr>"."""
    big = problems.get("rosenbrock:dim=40")
    for get, obj in ((optimizers.get, big), (problems.get, 3.5)):
        with pytest.raises(OptbenchError) as e:
            get(obj)
        msg = str(e.value)
        assert msg.startswith("a spec must be a string, got ") and "\n" not in msg and len(msg) < 100


def test_a_new_program_runs_once_untimed_inside_its_compile(monkeypatch):
    """The first execution of an executable pays one-time loading costs (40 ms against 0.3 ms a
    run for 2 starts of himmelblau × gd); each new program is executed once, for one iteration,
    right after its compile (under the key lock: once, however many threads precompile it),
    reported in neither compile_s nor run_s, and a solve that finds it compiled does not do it
    again."""
    import importlib
    drv = importlib.import_module("bench.solve")
    calls = []
    real = drv._warm_up

    def spy(key, entry, xs, data, g, zero, whole, history):
        calls.append(history)
        return real(key, entry, xs, data, g, zero, whole, history)

    monkeypatch.setattr(drv, "_warm_up", spy)
    p = problems.get("himmelblau")
    x0 = np.array([[0.3, -0.2], [1.5, 2.5], [-2.0, 1.0]])
    bench.precompile(p, "gd:lr=0.0123", x0, max_iter=37)
    assert calls == [True]
    res = bench.solve(p, "gd:lr=0.0123", x0, max_iter=37)
    bench.solve(p, "gd:lr=0.0123", x0, max_iter=37, history=False)
    assert calls == [True, False]
    assert res.compile_s > 0 and res.trace.recorded()["f"].shape == (3, 38)
