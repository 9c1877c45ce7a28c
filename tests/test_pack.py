"""solve(pack=True): the tail of a large batch is stepped tile by tile, over the tiles that hold
running starts only. The reference is the same solve unpacked: every start must stop at the same
iteration with the same status and counts, and agree on x, f and the whole history to rounding.

The batch sizes at which packing starts are lowered (tiles of 8 lanes) so that small, quickly
compiled batches exercise it; short history chunks make runs cross chunk boundaries, in the plain
loop, at the switch and in the packed loop.
"""
import importlib

import numpy as np
import pytest

import bench
import problems
from optbench_core import OptbenchError

S = importlib.import_module("bench.solve")


#: XLA's CPU backend compiles a while loop that touches under 1 kB a trip as one function, with
#: another code generator that rounds some operations differently (``fuse_loops`` in bench.solve).
#: The lowered thresholds here make tiles and compacted inner loops of 8-16 lanes, which fall
#: below it, where production's (at least 1,024 and 512 lanes) never do; with it at 0 every loop
#: is compiled as production's are. Without it, on jax 0.12.1, the 16-lane compacted λ loop of
#: Misra1a ended 27 of 64 starts at other iteration counts than the unpacked run.
NO_SMALL_LOOPS = '{"xla_backend_extra_options": "xla_cpu_small_while_loop_byte_threshold=0"}'


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setenv(S.XLA_OPTIONS_ENV, NO_SMALL_LOOPS)
    monkeypatch.setattr(S, "PACK_TILE_MIN", 8)
    monkeypatch.setattr(S, "PACK_TILES_MAX", 8)
    monkeypatch.setattr(S, "HISTORY_CHUNK", 8)


def _starts(b, seed=3):
    return np.random.default_rng(seed).uniform(-2, 2, (b, 2))


def _same_run(a, p, hist_rtol=1e-6):
    assert p.packed_at is not None and 0 < p.packed_at < p.iterations_run
    assert a.packed_at is None
    for f in ("nit", "status", "nfev", "njev", "nhev", "nhvp"):
        np.testing.assert_array_equal(getattr(p, f), getattr(a, f), err_msg=f)
    assert p.iterations_run == a.iterations_run
    np.testing.assert_allclose(p.x, a.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.fun, a.fun, rtol=1e-9, atol=1e-14)
    ta, tp = a.trace.arrays(), p.trace.arrays()
    assert ta.keys() == tp.keys()
    for k in ("nfev", "njev", "nhev", "nhvp"):
        np.testing.assert_array_equal(tp[k], ta[k], err_msg=k)
    # ‖∇f‖ at a converged 2-D Rosenbrock point is rounding noise of about 1e-11 (entries of the
    # Hessian ~1e3 times eps·|x|), which XLA's code for another batch size may round differently
    floors = {"f": 1e-12, "grad_norm": 1e-10, "x": 1e-12}
    for k in ("f", "grad_norm", "x")[:3 if "x" in ta else 2]:   # x is recorded for n <= 3
        np.testing.assert_allclose(tp[k], ta[k], rtol=hist_rtol, atol=floors[k], err_msg=k)
    # a finished start's history is flat after it stopped, and ends at its result
    cols = np.arange(tp["f"].shape[1])[None, :]
    after = cols >= p.nit[:, None]
    np.testing.assert_array_equal(np.where(after, tp["f"], 0), np.where(after, p.fun[:, None], 0))


@pytest.mark.parametrize("method", ["bfgs", "levenberg-marquardt"])
def test_packed_run_equals_unpacked_run(small_tiles, method):
    # 61 starts: 8 tiles of 8 slots, 3 of them spare (they hold no start)
    p = problems.get("rosenbrock")
    x0s = _starts(61)
    a = bench.solve(p, method, x0s, max_iter=60)
    pk = bench.solve(p, method, x0s, max_iter=60, pack=True)
    assert np.ptp(a.nit) > 8, "the batch must have a tail for the test to mean anything"
    _same_run(a, pk)
    assert pk.compile_s > 0   # the packed loop was compiled on this first packed run
    again = bench.solve(p, method, x0s, max_iter=60, pack=True, repeats=2)
    assert again.compile_s == 0
    np.testing.assert_array_equal(again.x, pk.x)


def test_packed_run_without_history(small_tiles, monkeypatch):
    """pack=True with history=False: the packed loop skips its history writes and the results
    are those of the packed run that records them."""
    p = problems.get("rosenbrock")
    x0s = _starts(61)
    pk = bench.solve(p, "bfgs", x0s, max_iter=60, pack=True)
    nh = bench.solve(p, "bfgs", x0s, max_iter=60, pack=True, history=False)
    assert nh.trace is None and nh.packed_at == pk.packed_at is not None
    for f in ("x", "fun", "nit", "nfev", "njev", "status"):
        np.testing.assert_array_equal(getattr(nh, f), getattr(pk, f), err_msg=f)
    # a run without history has no chunks, even where the tail begins exactly a chunk's rows in
    monkeypatch.setattr(S, "HISTORY_CHUNK", int(pk.packed_at))
    again = bench.solve(p, "bfgs", x0s, max_iter=60, pack=True, history=False)
    assert again.packed_at == pk.packed_at
    np.testing.assert_array_equal(again.x, pk.x)


def test_packed_run_with_starts_at_max_iter(small_tiles):
    # gradient descent on Himmelblau: starts near the minimiser (3, 2) converge after varying
    # iterations, far ones wander: some stop at the budget, in the packed tail
    p = problems.get("himmelblau")
    rng = np.random.default_rng(5)
    near = np.array([3.0, 2.0]) + rng.uniform(0.05, 0.5, (40, 1)) * rng.choice([-1.0, 1.0], (40, 2))
    x0s = np.concatenate([near, rng.uniform(-4, 4, (24, 2))])
    a = bench.solve(p, "gd:lr=0.015", x0s, max_iter=40, gtol=1e-3)
    pk = bench.solve(p, "gd:lr=0.015", x0s, max_iter=40, gtol=1e-3, pack=True)
    assert (a.status == "max_iter").any() and (a.status == "converged").sum() > 32
    _same_run(a, pk)


def test_small_batches_and_bad_values(small_tiles):
    p = problems.get("rosenbrock")
    r = bench.solve(p, "newton", _starts(12), max_iter=30, pack=True)   # under two tiles: not packed
    assert r.packed_at is None
    with pytest.raises(OptbenchError, match="pack must be True or False"):
        bench.solve(p, "newton", _starts(12), pack="yes")


@pytest.mark.parametrize("problem, method", [("rosenbrock", "bfgs"), ("rosenbrock", "newton-cg"),
                                             ("rosenbrock", "levenberg-marquardt"), ("rosenbrock", "trust-ncg"),
                                             ("logreg", "lbfgs"), ("nist:Misra1a", "levenberg-marquardt")])
def test_compacting_inner_loops_equal_the_unpacked_run(small_tiles, monkeypatch, problem, method):
    """With pack=True the inner loops (strong-Wolfe search, CG, Steihaug-CG, MINPACK's λ iteration) also
    compact once few lanes run (optimizers.base.lanes_while); lowered thresholds make a
    64-start batch do it. The run must equal the unpacked one as above."""
    import collections

    import optimizers.base as base
    monkeypatch.setattr(base, "COMPACT_MIN", 16)
    monkeypatch.setattr(S, "_COMPILED", collections.OrderedDict())
    traced = []
    first = base._running_first
    monkeypatch.setattr(base, "_running_first", lambda active, k: traced.append(k) or first(active, k))
    if problem == "nist:Misra1a":
        # tiles of 16: XLA compiles some elementwise code differently for batches of 12 or fewer
        # lanes, and LM's paths through Misra1a from random starts turn last-bit differences into
        # different iteration counts (batches of 16 and more, as here, round alike); only the
        # 64-lane loop compacts
        monkeypatch.setattr(S, "PACK_TILE_MIN", 16)
        monkeypatch.setattr(S, "PACK_TILES_MAX", 4)
        monkeypatch.setattr(base, "COMPACT_MIN", 64)
    p = problems.get(problem)   # logreg and Misra1a carry data: the loops close over it, unbatched
    x0s = _starts(64, seed=11) if problem == "rosenbrock" else p.random_starts(64, 11)
    # a budget every start stops within: a start cut off mid-way could differ by more than
    # rounding (its last bits differ from the first iteration on; see the module docstring)
    a = bench.solve(p, method, x0s, max_iter=300)
    assert not traced and (a.status != "max_iter").all()
    pk = bench.solve(p, method, x0s, max_iter=300, pack=True)
    assert traced and set(traced) == {16}   # the 64-slot plain loop narrowed its inner loops to 16
    # the same iterations, trials and counts; values to rounding, which one start's 60-step path
    # through the valley amplifies to 1.3e-6 relative in f midway (bfgs, seed 11)
    _same_run(a, pk, hist_rtol=1e-5)
