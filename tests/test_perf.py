"""``optbench perf``, the hand-written floor kernels, sharding over devices and the compile caches.

No timing is asserted (the machine is shared): the table's structure and finiteness, the kernels'
answers against closed forms and scipy, bit-for-bit equality of sharded and one-device runs, and
cache hits counted by JAX itself.
"""
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import problems
from bench import cli, kernels, perf, store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_py(code, env_extra, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# -- the floor kernels ------------------------------------------------------------------------
def test_rosenbrock_kernel_is_newton_and_matches_optbench():
    p = problems.get("rosenbrock")
    x0s = p.random_starts(12, seed=5)
    x, f, gn, nit, k = kernels.rosenbrock2_newton(jnp.asarray(x0s), 1e-8)
    np.testing.assert_allclose(np.asarray(x), np.ones((12, 2)), atol=1e-8)
    assert np.all(np.asarray(gn) <= 1e-8) and int(k) == int(np.max(nit))
    # the same method as optbench's newton: same iteration counts (the 2×2 fast paths round alike)
    res = bench.solve(p, "newton:mode=minimize", x0s, max_iter=200, gtol=1e-8)
    assert np.mean(np.asarray(nit) == res.nit) >= 0.8, (np.asarray(nit), res.nit)


def test_lm_kernel_is_minpack_lm_and_matches_optbench():
    """The Levenberg-Marquardt floor solves 2-D Rosenbrock from random starts and runs optbench's
    default method (MINPACK's): the same iterations start for start and the same points, where a
    different damping rule or trust-radius update would take other counts."""
    p = perf.rosenbrock_ls_problem()
    x0s = problems.get("rosenbrock").random_starts(12, seed=5)
    x, f, gn, nit, k = kernels.rosenbrock2_lm(jnp.asarray(x0s), 1e-8)
    np.testing.assert_allclose(np.asarray(x), np.ones((12, 2)), atol=1e-8)
    assert np.all(np.asarray(gn) <= 1e-8) and int(k) == int(np.max(nit))
    res = bench.solve(p, "levenberg-marquardt", x0s, max_iter=200, gtol=1e-8, history=False)
    np.testing.assert_array_equal(np.asarray(nit), res.nit)
    np.testing.assert_allclose(np.asarray(x), res.x, rtol=0, atol=1e-11)
    # and with optbench's constant: the initial trust radius factor·‖Dx₀‖
    import inspect
    from optimizers.least_squares import levenberg_marquardt
    assert (inspect.signature(kernels.rosenbrock2_lm).parameters["factor"].default
            == inspect.signature(levenberg_marquardt).parameters["factor"].default)


def test_modified_direction_2x2_equals_eigen_form():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.standard_normal((2, 2)) * 10 ** rng.uniform(-3, 3)
        h = a + a.T
        g = rng.standard_normal(2)
        lam, v = np.linalg.eigh(h)
        delta = max(1e-8 * np.max(np.abs(lam)), 1e-12)
        ref = -(v @ ((v.T @ g) / np.maximum(np.abs(lam), delta)))
        dx, dy = kernels._modified_newton_2x2(h[0, 0], h[0, 1], h[1, 1], g[0], g[1])
        np.testing.assert_allclose([float(dx), float(dy)], ref, rtol=1e-8, atol=1e-12 * np.abs(ref).max())
    # H = mI (no preferred eigenvector): the split P = I/2 still gives −g/|m|
    dx, dy = kernels._modified_newton_2x2(-3.0, 0.0, -3.0, 1.0, 2.0)
    np.testing.assert_allclose([float(dx), float(dy)], [-1 / 3, -2 / 3])


def test_newton_cg_kernel_against_scipy():
    so = pytest.importorskip("scipy.optimize")
    n = 40
    x0 = np.tile([-1.2, 1.0], n // 2)
    x, f, gn, k, ncg = kernels.ext_rosenbrock_newton_cg(jnp.asarray(x0), 1e-6)
    assert float(gn) <= 1e-6 and int(k) > 10 and int(ncg) >= int(k)
    fr = jax.jit(jax.value_and_grad(kernels.ext_rosenbrock))
    ref = so.minimize(lambda z: tuple(np.asarray(a) for a in fr(z)), x0, jac=True, method="BFGS",
                      options={"gtol": 1e-9})
    np.testing.assert_allclose(np.asarray(x), ref.x, atol=1e-6)
    np.testing.assert_allclose(np.asarray(x), np.ones(n), atol=1e-6)


def test_blocked_least_squares_derivatives():
    rng = np.random.default_rng(1)
    x, y, w = rng.standard_normal((650, 4)), rng.standard_normal(650), rng.standard_normal(4)  # 3 blocks + tail
    v = rng.standard_normal(4)
    xt = np.ascontiguousarray(x.T)   # the blocked forms take X as Xᵀ

    @jax.jit
    def derivs(w, v):
        f = lambda w: kernels.sse(w, xt, y, 200)  # noqa: E731
        return f(w), jax.grad(f)(w), jax.jvp(jax.grad(f), (w,), (v,))[1], kernels.linreg_gd_blocked(xt, y, w, 1e-4, 3, 200)[0]

    f, g, hv, w3 = derivs(w, v)
    r = x @ w - y
    np.testing.assert_allclose(float(f), r @ r, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), 2 * x.T @ r, rtol=1e-11)
    np.testing.assert_allclose(np.asarray(hv), 2 * x.T @ (x @ v), rtol=1e-11)
    ref = w
    for _ in range(3):
        ref = ref - 1e-4 * 2 * x.T @ (x @ ref - y)
    np.testing.assert_allclose(np.asarray(w3), ref, rtol=1e-11)


def test_blocked_least_squares_default_blocks_and_float32(monkeypatch):
    """The default block size (rows split evenly, a short tail) and float32 against the plain
    formula in float64; the default blocks are shrunk to 100 rows so that 650 rows make 7 blocks."""
    from problems import lsq
    monkeypatch.setattr(lsq, "BLOCK_BYTES", 100 * 4 * 8)
    rng = np.random.default_rng(2)
    x, y, w = rng.standard_normal((650, 4)), rng.standard_normal(650), rng.standard_normal(4)
    assert lsq.block_rows_for(x.T) == 92   # 650 = 7·92 + 6
    r = x @ w - y
    for dt, rtol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        xd, yd, wd = x.astype(dt), y.astype(dt), w.astype(dt)
        xtd = np.ascontiguousarray(xd.T)
        f, g = jax.jit(lsq.sse_value_and_grad_blocked)(wd, xtd, yd)
        assert f.dtype == dt and g.dtype == dt
        rd = xd.astype(np.float64) @ wd.astype(np.float64) - yd.astype(np.float64)
        np.testing.assert_allclose(float(f), rd @ rd, rtol=rtol)
        np.testing.assert_allclose(np.asarray(g), 2 * xd.astype(np.float64).T @ rd, rtol=rtol, atol=rtol * np.abs(r).sum())
        fg = jax.jit(jax.value_and_grad(lambda w: lsq.sse(w, xtd, yd)))(wd)
        np.testing.assert_allclose(float(fg[0]), rd @ rd, rtol=rtol)
        np.testing.assert_allclose(np.asarray(fg[1]), np.asarray(g), rtol=rtol)


# -- optbench perf --quick ----------------------------------------------------------------------
def test_perf_quick_writes_a_finite_table(tmp_path, capsys):
    out = tmp_path / "perf"
    assert cli.main(["perf", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "perf.json").read_text())
    rows, meta = doc["rows"], doc["meta"]
    assert meta["device_count"] >= 1 and meta["versions"]["jax"] == jax.__version__
    families = {r["family"] for r in rows}
    assert families == {"rosenbrock-2d", "ext-rosenbrock", "linreg"}
    for fam in families:
        kinds = [r["kind"] for r in rows if r["family"] == fam]
        assert kinds.count("floor") >= 1 and "optbench" in kinds, (fam, kinds)
    for r in rows:
        assert set(perf.TABLE_COLUMNS) <= set(r), r
        assert r["median_ms"] > 0 and math.isfinite(r["median_ms"]) and len(r["times_ms"]) == 2
        assert r["x_floor"] is not None and math.isfinite(r["x_floor"]) and r["x_floor"] > 0, r
        if r["kind"] == "peer" and r["method"] in {q["method"] for q in rows if q["kind"] == "optbench"}:
            assert r["speedup"] is not None and math.isfinite(r["speedup"]) and r["speedup"] > 0, r
        if r["solved"] is not None:   # every contender reaches the tolerance on these easy cases
            assert r["solved"] == 1.0, r
    # the printed table and the files agree
    table = (out / "table.md").read_text()
    # the header, its rule and one line per row (notes under the table, e.g. peers not installed, aside)
    assert table.strip() in printed and sum(ln.startswith("|") for ln in table.splitlines()) == len(rows) + 2
    assert (out / "perf.csv").read_text().count("\n") == len(rows) + 1


def test_perf_methods_filter(capsys):
    """--methods keeps the named methods' rows and the floors, and only the families timing them;
    an unknown method or one no chosen family times is a one-line error (exit 2)."""
    rows = perf.run_perf(perf.QUICK, "cpu", ("rosenbrock", "ext-rosenbrock"), 1, methods=("newton",))
    assert {r["family"] for r in rows} == {"rosenbrock-2d"}
    assert {r["method"] for r in rows} == {"newton"} and any(r["kind"] == "floor" for r in rows)
    assert any("history=False" in r["contender"] for r in rows)
    capsys.readouterr()
    for argv, msg in ((["--methods", "newtn"], "unknown method 'newtn'"),
                      (["--methods", "gd", "--cases", "rosenbrock"], "times nothing")):
        assert cli.main(["perf", "--quick", "--no-write"] + argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1


def test_ratios_of_peers_and_of_optbench_variants():
    """peer/optbench: a peer over its method's first optbench row; an optbench variant row (the
    method again, e.g. pack=True) gets the method's first peer over itself; x floor for all."""
    def row(kind, method, ms):
        return {"kind": kind, "method": method, "median_ms": ms}
    rows = [row("floor", "newton", 1.0), row("optbench", "bfgs", 50.0), row("optbench", "bfgs", 25.0),
            row("peer", "bfgs", 150.0), row("peer", "bfgs", 600.0), row("optbench", "lbfgs", 10.0)]
    perf._add_ratios(rows)
    assert [r["x_floor"] for r in rows] == [1.0, 50.0, 25.0, 150.0, 600.0, 10.0]
    assert [r["speedup"] for r in rows] == [None, None, 6.0, 3.0, 12.0, None]
    # a fuse_loops=True row's x floor is against the floor compiled so, the others' against the
    # plain floor; its peer/optbench as any variant's
    fused = perf.FUSED_SUFFIX
    rows = [dict(row("floor", "newton", 2.0), contender="floor"),
            dict(row("floor", "newton", 0.5), contender="floor" + fused),
            dict(row("optbench", "bfgs", 50.0), contender="optbench bfgs"),
            dict(row("optbench", "bfgs", 40.0), contender="optbench bfgs" + fused),
            dict(row("peer", "bfgs", 160.0), contender="optimistix BFGS")]
    perf._add_ratios(rows)
    assert [r["x_floor"] for r in rows] == [1.0, 1.0, 25.0, 80.0, 80.0]
    assert [r["speedup"] for r in rows] == [None, None, None, 4.0, 3.2]


def test_a_method_with_a_floor_of_its_own_compares_with_it():
    """A floor with ``floor_for`` serves those methods' rows (optbench's and the peers', plain
    and fused alike); every other row keeps the case's first floor that serves no method in
    particular, whatever the order of the rows; ``--methods`` keeps such a floor only with its
    method."""
    fused = perf.FUSED_SUFFIX

    def row(kind, method, ms, label, **kw):
        return dict({"kind": kind, "method": method, "median_ms": ms, "contender": label}, **kw)
    rows = [row("floor", "levenberg-marquardt", 4.0, "lm floor", floor_for=["levenberg-marquardt"]),
            row("floor", "newton", 2.0, "newton floor"),
            row("floor", "levenberg-marquardt", 1.0, "lm floor" + fused, floor_for=["levenberg-marquardt"]),
            row("floor", "newton", 0.5, "newton floor" + fused),
            row("optbench", "newton", 3.0, "optbench newton"),
            row("optbench", "levenberg-marquardt", 6.0, "optbench lm"),
            row("optbench", "levenberg-marquardt", 3.0, "optbench lm" + fused),
            row("peer", "levenberg-marquardt", 2.0, "jaxopt lm"),
            row("optbench", "bfgs", 5.0, "optbench bfgs" + fused)]
    perf._add_ratios(rows)
    assert [r["x_floor"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 1.5, 1.5, 3.0, 0.5, 10.0]
    floor = perf.Contender("lm floor", "levenberg-marquardt", "floor", None, floor_for=("levenberg-marquardt",))
    plain = perf.Contender("newton floor", "newton", "floor", None)
    assert perf._kept(floor, None) and perf._kept(floor, ["bfgs", "levenberg-marquardt"])
    assert not perf._kept(floor, ["newton"]) and perf._kept(plain, ["bfgs"])


def test_short_cases_get_more_rounds_until_their_time_budget():
    """``measure_case`` runs at least ``repeats`` interleaved rounds, then more while the rounds
    have taken less than ``min_time_s`` (never past ``max_repeats``); without a budget exactly
    ``repeats``. Host contenders that sleep: each round takes at least 2 ms."""
    import time as _time

    def sleeper(label, kind):
        def prepare():
            def run():
                _time.sleep(0.001)
                return None, perf.Outcome(np.array([1]), np.array([0.0]), 1e-8)
            return 0.0, run
        return perf.host_contender(label, "newton", kind, prepare)

    def case():
        return perf.Case("sleepers", "test", 1, 1e-8, [sleeper("floor", "floor"), sleeper("peer", "peer")], "")

    exact = perf.measure_case(case(), 3)
    assert [r["repeats"] for r in exact] == [3, 3] and all(len(r["times_ms"]) == 3 for r in exact)
    more = perf.measure_case(case(), 2, min_time_s=0.2, max_repeats=9)
    assert 2 < more[0]["repeats"] == more[1]["repeats"] <= 9
    capped = perf.measure_case(case(), 2, min_time_s=60.0, max_repeats=4)
    assert [r["repeats"] for r in capped] == [4, 4]


def test_perf_bad_input_is_one_line(capsys):
    assert cli.main(["perf", "--quick", "--cases", "nope"]) == 2
    assert "unknown case family 'nope'" in capsys.readouterr().err
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert cli.main(["perf", "--quick", "--device", "gpu"]) == 2
        err = capsys.readouterr().err
        assert "no gpu device" in err and err.count("\n") == 1


def test_perf_with_user_xla_options_says_so(tmp_path, capsys, monkeypatch):
    """OPTBENCH_XLA_OPTIONS: the table says which options it was measured with (printed and in
    table.md) and perf.json records them; a malformed value stops perf before it writes anything."""
    user = {"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", json.dumps(user))
    out = tmp_path / "perf"
    assert cli.main(["perf", "--quick", "--cases", "rosenbrock", "--methods", "newton", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    caption = "XLA options from OPTBENCH_XLA_OPTIONS"
    assert caption in printed and caption in (out / "table.md").read_text()
    meta = json.loads((out / "perf.json").read_text())["meta"]
    assert meta["xla_options"]["options"]["xla_disable_hlo_passes"] == "cpu-parallel-task-assigner"
    monkeypatch.setenv("OPTBENCH_XLA_OPTIONS", "{not json")
    assert cli.main(["perf", "--quick", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "OPTBENCH_XLA_OPTIONS is not valid JSON" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


# -- sharding over devices ------------------------------------------------------------------------
def test_sharded_run_equals_single_device_bit_for_bit(tmp_path):
    args = ["run", "--problems", "rosenbrock", "--optimizers", "bfgs", "--starts", "10",
            "--max-iter", "60", "--repeats", "1", "--no-plots", "--quiet"]
    four = tmp_path / "four"
    _run_py(f"""
        import sys
        from bench import cli
        assert cli.main({args + ['--out', str(four)]!r}) == 0
        sys.exit(cli.main({args + ['--out', str(tmp_path / 'picked'), '--device', 'cpu:1']!r}))
    """, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "OPTBENCH_CACHE_DIR": "off"})
    one = tmp_path / "one"
    assert cli.main(args + ["--out", str(one)]) == 0
    r4, r1 = store.load_run(str(four)), store.load_run(str(one))
    assert r4.meta["device_count"] == 4 and r1.meta["device_count"] == 1
    # one device picked out of four: the count says what the run used, not what was visible
    assert store.load_run(str(tmp_path / "picked")).meta["device_count"] == 1
    assert (four / "starts.csv").read_text() == (one / "starts.csv").read_text()
    for row in r1.summary:
        c1, c4 = r1.cell(row["problem"], row["optimizer"]), r4.cell(row["problem"], row["optimizer"])
        for key in c1:
            if key.startswith("trace_") or key in ("x", "fun", "nit", "nfev", "njev"):
                assert np.array_equal(c1[key], c4[key], equal_nan=True), key


def _run_two_processes(argv, env):
    """Run ``python argv…`` as processes 0 and 1 of a two-process run over a free localhost port;
    both must exit 0. Returns their (stdout, stderr)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(env, OPTBENCH_COORDINATOR=f"localhost:{port}", OPTBENCH_NUM_PROCESSES="2")
    procs = [subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=dict(env, OPTBENCH_PROCESS_ID=str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [pr.communicate(timeout=300) for pr in procs]
    finally:
        for pr in procs:
            pr.kill()
    for pr, (_, err) in zip(procs, outs):
        assert pr.returncode == 0, err[-3000:]
    return outs


def test_two_processes_join_one_run_and_match_one_process_bit_for_bit(tmp_path):
    """The multi-host path on one machine: two processes (two CPU devices each) join through
    ``init_distributed`` over localhost, the starts are sharded over all four devices, and every
    process receives the whole result, equal bit for bit to a one-process, one-device run."""
    code = textwrap.dedent("""
        import sys
        import jax, numpy as np
        from bench.solve import init_distributed, solve
        init_distributed()
        import problems
        p = problems.get("rosenbrock")
        r = solve(p, "bfgs", p.random_starts(6, 0), max_iter=100, gtol=1e-8)
        np.savez(sys.argv[1] + f"{jax.process_index()}.npz", x=r.x, nit=r.nit, f=r.trace.f,
                 devices=len(jax.devices()), procs=jax.process_count())
    """)
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               OPTBENCH_CACHE_DIR="off")
    _run_two_processes(["-c", code, str(tmp_path / "p")], env)
    p = problems.get("rosenbrock")
    ref = bench.solve(p, "bfgs", p.random_starts(6, 0), max_iter=100, gtol=1e-8)
    for i in range(2):
        got = np.load(tmp_path / f"p{i}.npz")
        assert int(got["devices"]) == 4 and int(got["procs"]) == 2
        assert np.array_equal(got["x"], ref.x) and np.array_equal(got["nit"], ref.nit)
        assert np.array_equal(got["f"], ref.trace.f)

    # `optbench run` in both processes: one run directory, written by process 0 alone, equal to a
    # one-process run
    args = ["run", "--problems", "rosenbrock,himmelblau", "--optimizers", "bfgs,newton", "--starts", "5",
            "--max-iter", "60", "--repeats", "1", "--no-plots", "--quiet", "--jobs", "1"]
    two, one = tmp_path / "two", tmp_path / "one"
    run = f"import sys; from bench import cli; sys.exit(cli.main({args + ['--out', str(two)]!r}))"
    outs = _run_two_processes(["-c", run], env)
    assert "process 1: 4 cells computed; process 0 writes" in outs[1][1]
    # --quiet prints its one line alone: the CPU collectives' own connection lines, printed from
    # C++ on file descriptor 1, went to stdout too (and broke --json's document)
    assert outs[0][0] == f"run directory: {two}\n" and outs[1][0] == "", outs
    assert cli.main(args + ["--out", str(one)]) == 0
    r2, r1 = store.load_run(str(two)), store.load_run(str(one))
    assert r2.meta["complete"] and r2.meta["process_count"] == 2 and r2.meta["device_count"] == 4
    assert r1.meta["complete"] and r1.meta["process_count"] == 1 and len(r1.summary) == len(r2.summary) == 4
    assert (two / "starts.csv").read_text() == (one / "starts.csv").read_text()


# -- compile caches ---------------------------------------------------------------------------------
def test_second_process_loads_compiles_from_the_persistent_cache(tmp_path):
    code = """
        import importlib, jax, bench, problems
        # store every compile: the small start program compiles in about CACHE_MIN_COMPILE_S
        # (0.1 s), so on a fast or lightly loaded machine it could fall under the threshold
        importlib.import_module("bench.solve").CACHE_MIN_COMPILE_S = 0.0
        hits = []
        jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
        p = problems.get("himmelblau")
        r = bench.solve(p, "gd-linesearch", p.random_starts(3, 0), max_iter=50)
        print(r.compile_s, len(hits))
    """
    env = {"OPTBENCH_CACHE_DIR": str(tmp_path / "cache")}
    c1, h1 = _run_py(code, env).split()
    files1 = sorted(os.listdir(tmp_path / "cache"))
    c2, h2 = _run_py(code, env).split()
    files2 = sorted(os.listdir(tmp_path / "cache"))
    print(f"compile: first process {float(c1):.2f} s, second {float(c2):.2f} s "
          f"({float(c1) / max(float(c2), 1e-9):.1f}× less)")
    assert len(files1) >= 2 and int(h1) == 0
    assert int(h2) >= 2          # both executables (start, advance) came from the cache
    assert files2 == files1      # and nothing new had to be compiled and stored


def test_a_second_solve_by_spec_strings_traces_nothing(monkeypatch):
    """bench.solve("spec", "spec", x0s) builds a new problem object each call, and the memory
    check traced its f again every time (make_jaxpr of f, ∇f and the Hessian: about 20 ms of a
    22 ms warm call at 10³ 2-D starts, whose run took 1.4 ms). A second call with the same specs
    now compiles nothing and traces nothing."""
    calls = []
    real = jax.make_jaxpr

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(jax, "make_jaxpr", counting)
    x0s = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    first = bench.solve("quadratic:dim=3:cond=37", "newton", x0s, max_iter=5)
    n_traced, n_compiled = len(calls), bench.compile_count()
    again = bench.solve("quadratic:dim=3:cond=37", "newton", x0s, max_iter=5)
    assert n_traced >= 1 and len(calls) == n_traced
    assert bench.compile_count() == n_compiled and again.compile_s == 0.0
    np.testing.assert_array_equal(again.x, first.x)


def test_max_iter_is_a_run_time_argument_and_chunks_join_seamlessly():
    # one executable serves every budget; histories written in 32-iteration chunks join up
    p = problems.get("rosenbrock")
    x0s = p.random_starts(3, seed=2)
    long = bench.solve(p, "gd-linesearch", x0s, max_iter=70, gtol=0.0)   # chunks of 32 + 32 + 6
    n0 = bench.compile_count()
    short = bench.solve(p, "gd-linesearch", x0s, max_iter=40, gtol=0.0)
    assert bench.compile_count() == n0 and short.compile_s == 0.0
    assert np.all(long.nit == 70) and np.all(short.nit == 40) and long.trace.f.shape == (3, 71)
    for key, arr in short.trace.arrays().items():
        np.testing.assert_array_equal(arr, getattr(long.trace, key)[:, :41], err_msg=key)
    np.testing.assert_array_equal(short.x, long.trace.x[:, 40])
    # every recorded row is a real iterate: f decreases along each start's path (Armijo)
    assert np.all(np.diff(long.trace.f, axis=1) <= 0)


def test_optbench_rows_are_judged_by_the_cases_closed_form_gradient():
    """`solved` must be checked on the returned x by the same closed-form gradient for every
    contender (README); optbench rows used the solver's own ‖∇f‖, which differs from the closed
    form by up to ~2e-6 relative at gtol. Here gtol = 1e-3 with starts stopped just under it:
    the outcome's norms must be the closed form's at the returned x, bit for bit."""
    from bench import perf as P
    import bench as B
    x0s = np.random.default_rng(4).uniform(-2, 2, (4, 2))
    c = P.optbench_contender("rosenbrock", "bfgs", x0s, 1e-3, 100, "cpu", gnorm=P._rosen_grad_np)
    _, outcome = c.prepare()()
    res = B.solve("rosenbrock", "bfgs", x0s, gtol=1e-3, max_iter=100)
    np.testing.assert_array_equal(outcome.grad_norm, P._rosen_grad_np(res.x))
    assert not np.array_equal(outcome.grad_norm, res.grad_norm)   # the solver's own norms differ in the last bits


# -- the prepared GPU check -------------------------------------------------------------------
def test_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path):
    """``.ci/gpu-check`` is run only where a GPU is lent, rarely; its CPU trial mode runs the same
    steps at tiny sizes, so a change that breaks a step shows here. The device's run (here the CPU
    again) must equal the CPU's cell for cell, and every file a device lease returns must be there."""
    out = tmp_path / "gpu-check"
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", GPU_CHECK_QUICK="1", PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)   # the script puts this checkout on the path itself
    r = subprocess.run(["bash", os.path.join(ROOT, ".ci", "gpu-check"), str(out)], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=600)
    log = (out / "gpu-check.log").read_text()
    assert r.returncode == 0, log[-3000:]
    assert "== done: 0 failed step(s)" in log
    assert sorted(os.listdir(out)) == ["check-quick.md", "compare-quick.txt", "devices.txt", "gpu-check.log",
                                       "perf-2d.json", "perf-2d.md"]
    assert "cpu:0" in (out / "devices.txt").read_text()
    # the compare table: the four cells, each with the same solved share, iterations and evaluations
    rows = [ln.split() for ln in (out / "compare-quick.txt").read_text().splitlines()
            if ln.split()[:1] in (["rosenbrock"], ["himmelblau"])]
    assert sorted((r[0], r[1]) for r in rows) == sorted((p, m) for p in ("rosenbrock", "himmelblau")
                                                          for m in ("newton", "bfgs"))
    for r in rows:
        solved, nit, nfev = r[3:6], r[6:9], r[9:12]
        assert solved[0] == solved[2] and nit[0] == nit[2] and nfev[0] == nfev[2], r
    assert "optbench check" in (out / "check-quick.md").read_text()
    table = (out / "perf-2d.md").read_text()
    assert "| rosenbrock-2d B=" in table and "optbench newton" in table
    meta = json.loads((out / "perf-2d.json").read_text())["meta"]
    assert meta["backend"] == "cpu" and meta["device_count"] >= 1


def test_an_unreachable_coordinator_is_one_line_within_the_wait(monkeypatch, capsys):
    """A process other than 0 whose coordinator does not answer waited JAX's 300 s in silence,
    then aborted from C++ (exit 134, a stack trace). It now tries the port until
    OPTBENCH_INIT_TIMEOUT runs out and says so in one line, exit 2."""
    import socket
    import time
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPTBENCH_COORDINATOR", f"localhost:{port}")
    monkeypatch.setenv("OPTBENCH_NUM_PROCESSES", "2")
    monkeypatch.setenv("OPTBENCH_PROCESS_ID", "1")
    monkeypatch.setenv("OPTBENCH_INIT_TIMEOUT", "1")
    t0 = time.monotonic()
    assert cli.main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "2"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 30 and err.count("\n") == 1
    assert f"cannot reach the coordinator localhost:{port}" in err and "OPTBENCH_INIT_TIMEOUT" in err
    monkeypatch.setenv("OPTBENCH_INIT_TIMEOUT", "soon")
    assert cli.main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "2"]) == 2
    assert "OPTBENCH_INIT_TIMEOUT must be a whole number of seconds" in capsys.readouterr().err


_JOIN = """
import sys
print("joining", flush=True)
from bench.cli import main
sys.exit(main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", sys.argv[2], "--no-plots",
               "--out", sys.argv[1]]))
"""


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _joiner(tmp_path, port, nproc, pid, wait, tag, starts=2):
    env = dict(os.environ, PYTHONPATH=ROOT, OPTBENCH_CACHE_DIR="off", OPTBENCH_COORDINATOR=f"localhost:{port}",
               OPTBENCH_NUM_PROCESSES=str(nproc), OPTBENCH_PROCESS_ID=str(pid), OPTBENCH_INIT_TIMEOUT=str(wait))
    return subprocess.Popen([sys.executable, "-c", _JOIN, str(tmp_path / f"run-{tag}"), str(starts)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=120):
    try:
        return [pr.communicate(timeout=timeout) for pr in procs]
    finally:
        for pr in procs:
            pr.kill()


def test_a_process_missing_from_the_join_is_one_line_not_an_abort(tmp_path):
    """Process 0 of 2 whose partner never starts: JAX's client aborted the process from C++ when
    the wait ran out (exit 134, "Check failure stack trace" and some forty lines). Now one line
    that says which processes must start, exit 2, no run directory."""
    pr = _joiner(tmp_path, _free_port(), 2, 0, 2, "alone")
    (_, err), = _finish([pr])
    assert pr.returncode == 2, err[-2000:]
    assert err.count("\n") == 1, err[-2000:]
    assert err.startswith("optbench: error: cannot join the distributed run: not all 2 processes joined the "
                          "coordinator at localhost:")
    assert "OPTBENCH_PROCESS_ID 0 to 1 once each" in err and "OPTBENCH_INIT_TIMEOUT" in err
    assert not (tmp_path / "run-alone").exists()


def test_two_processes_with_one_id_end_in_one_line_each(tmp_path):
    """Processes 0, 1 and 1 again of a 3-process run: JAX aborted each of them from C++ (the
    coordinator turns the older process 1 away, the others wait out the timeout). Now each ends
    with exit 2 and a last line of optbench's own; none writes anything."""
    import time
    port = _free_port()
    first = [_joiner(tmp_path, port, 3, 0, 8, "p0"), _joiner(tmp_path, port, 3, 1, 8, "p1")]
    for pr in first:   # both are past their imports and joining before the second process 1 starts
        assert pr.stdout.readline().strip() == "joining"
    time.sleep(1.0)
    procs = first + [_joiner(tmp_path, port, 3, 1, 8, "p1-again")]
    errs = [err for _, err in _finish(procs)]
    for pr, err in zip(procs, errs):
        assert pr.returncode == 2, err[-2000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("optbench: error: cannot join the distributed run: "), err[-2000:]
        assert "Check failure" not in err and "Traceback" not in err
    # process 1's own lines say nothing but optbench's (the coordinator's process may also show the
    # service's warnings about the second registration)
    assert all(e.count("\n") == 1 for e in errs[1:]), errs
    assert "is another process running as OPTBENCH_PROCESS_ID=1?" in errs[1] + errs[2]
    assert not any(p.name.startswith("run-") for p in tmp_path.iterdir())


def test_the_distributed_error_callback_is_one_line_and_exit_1():
    """The callback optbench gives JAX's distributed client (where a jaxlib can hand it the
    coordination service's error) ends the process with one line, not a C++ stack trace."""
    code = ("import sys, bench; s = sys.modules['bench.solve']; "
            "s._coordination_lost(RuntimeError('task 1 stopped\\nmore')); print('not reached')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "optbench: the distributed run failed: task 1 stopped\n"


def test_processes_started_with_different_runs_stop_before_any_cell(tmp_path):
    """Process 1 started with --starts 3, process 0 with 2: their first collective had mismatched
    sizes and gloo aborted both from C++ (exit 134), process 0 leaving a run directory behind.
    They now compare what they run before any cell and both stop with the same line, exit 2."""
    port = _free_port()
    procs = [_joiner(tmp_path, port, 2, 0, 60, "p0", starts=2), _joiner(tmp_path, port, 2, 1, 60, "p1", starts=3)]
    errs = [err for _, err in _finish(procs)]
    for pr, err in zip(procs, errs):
        assert pr.returncode == 2, err[-2000:]
        assert err == ("optbench: error: process 1 was started with another run than process 0 "
                       "(config.cells[0].starts: 3 there, 2 in process 0); start every process with the same command\n")
    assert not any(p.name.startswith("run-") for p in tmp_path.iterdir())


def test_a_process_killed_mid_run_ends_the_others_in_one_line_at_once(tmp_path):
    """Process 1 of a two-process run killed while the run goes on: process 0's next collective
    fails, and it then waited at JAX's shutdown barrier for JAX's heartbeat timeout (100 s) before
    being aborted from C++ (exit 134). Now it says the run lost a process and ends with exit 1."""
    import signal
    import time
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, OPTBENCH_CACHE_DIR="off", OPTBENCH_COORDINATOR=f"localhost:{port}",
               OPTBENCH_NUM_PROCESSES="2")
    argv = ["run", "--problems", "rosenbrock,himmelblau,beale,booth", "--optimizers", "newton,bfgs", "--starts", "8",
            "--no-plots", "--out", str(tmp_path / "run")]
    code = f"import sys; from bench.cli import entry; sys.argv = ['optbench'] + {argv!r}; entry()"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(env, OPTBENCH_PROCESS_ID=str(i)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        seen = []
        for line in procs[0].stderr:   # the collectives are connected: the run is under way
            seen.append(line)
            if "connected to 1 peer" in line:
                break
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        _, rest = procs[0].communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        for pr in procs:
            pr.kill()
    err = "".join(seen) + rest
    assert procs[0].returncode == 1, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("optbench: error: the distributed run lost a process"), err[-3000:]
    assert "Check failure" not in err and took < 60


def test_what_processes_compare_is_the_run_not_where_its_files_lie(tmp_path):
    """The check that every process runs the same thing compares the suite file's and plug-in
    files' contents, not their paths (hosts may keep them in different places); a change to a
    suite file's contents, or to a setting, is a difference."""
    import argparse
    from bench import cmd_run
    text = open(os.path.join(ROOT, "suites", "default.toml"), encoding="utf-8").read()
    a, b = tmp_path / "a" / "s.toml", tmp_path / "b" / "suite.toml"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(text)

    def identity(path, starts=None):
        args = argparse.Namespace(suite=str(path), problems="rosenbrock", optimizers="newton", starts=starts)
        for name in ("plugin", "seed", "max_iter", "gtol", "dtype", "repeats", "pack", "fuse_loops", "device",
                     "resume"):
            setattr(args, name, None)
        return cmd_run._plan_identity(args, cmd_run.build_plan(args))

    assert identity(a) == identity(b)
    assert identity(a)["suite_file"] is not None
    assert identity(a, starts=3) != identity(b)
    b.write_text(text + "\n# another comment\n")
    assert identity(a)["suite_file"] != identity(b)["suite_file"]
