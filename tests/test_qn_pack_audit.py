"""Audit of BFGS and L-BFGS against an independent numpy transcription, and of solve(pack=True)
and the batch compaction of optimizers.base.

Quasi-Newton: each method is stepped one iteration at a time on a small problem; at every step
the taken step x_{k+1} − x_k must equal α_k d_k, with α_k the accepted step length optbench
reports (``State.step``) and d_k = −H_k g_k from a numpy replay of the memory (N&W Alg. 6.1,
eq. 6.17; Alg. 7.4–7.5, H₀ = γI with γ = sᵀy/yᵀy of the newest pair): the direction, the memory
update, the skipped pairs (sᵀy ≤ √ε‖s‖‖y‖) and the reset after a failed search are all checked
given α. The three L-BFGS forms (n×n for n ≤ LBFGS_DENSE_MAX, fixed-order two-loop, circular
buffers with SᵀY/YᵀY) must give the same iterates.

Packing: solve(pack=True) must equal the unpacked run (statuses, iterations, counts, x to
rounding) on a batch with very uneven iteration counts; ``running_first`` is numpy's stable
argsort of ¬active.
"""
import collections
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import optimizers
import optimizers.base as base
import optimizers.quasi_newton as qn
import problems
from optimizers.base import Oracle

S = importlib.import_module("bench.solve")
EPS = np.finfo(np.float64).eps


def _rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _wave(x):
    # nonconvex: from near 0 a step that lowers f enters negative curvature, so a search cut
    # short (max_evals 1–2) returns a pair with sᵀy < 0, which must be skipped
    return jnp.sum(jnp.cos(x)) + 0.01 * jnp.sum(x * x)


def _trace(spec, f, x0, iters=200):
    """[(x_k, g_k, α accepted on the step into k, status)] stepping ``spec`` one start by hand."""
    opt, oracle = optimizers.get(spec), Oracle(f)
    s = opt.init(oracle, jnp.asarray(x0, jnp.float64))
    step = jax.jit(lambda st: opt.step(oracle, st))
    out = [(np.asarray(s.x), np.asarray(s.g), None, int(s.status))]
    for _ in range(iters):
        s = step(s)
        out.append((np.asarray(s.x), np.asarray(s.g), float(s.step), int(s.status)))
        if int(s.status) != 0 or np.linalg.norm(out[-1][1]) < 1e-9:
            break
    return out


def _np_update(h, s, y):
    r = 1.0 / (s @ y)
    i = np.eye(len(s))
    return (i - r * np.outer(s, y)) @ h @ (i - r * np.outer(y, s)) + r * np.outer(s, s)


class _BFGS:
    def __init__(self, n, init_scale=False):
        self.n, self.init_scale = n, init_scale
        self.h, self.k = np.eye(n), 0

    def direction(self, g):
        return -self.h @ g

    def reset(self, failed):
        self.h = np.eye(self.n)
        if failed:
            self.k = 0

    def update(self, s, y):
        h = (s @ y) / (y @ y) * np.eye(self.n) if self.init_scale and self.k == 0 else self.h
        self.h, self.k = _np_update(h, s, y), self.k + 1


class _LBFGS:
    def __init__(self, m):
        self.m, self.mem = m, []

    def direction(self, g):
        if not self.mem:
            return -g
        s, y = self.mem[-1]
        q, alphas = g.copy(), []
        for s, y in reversed(self.mem):
            a = (s @ q) / (s @ y)
            alphas.append(a)
            q = q - a * y
        s, y = self.mem[-1]
        r = (s @ y) / (y @ y) * q
        for (s, y), a in zip(self.mem, reversed(alphas)):
            r = r + (a - (y @ r) / (s @ y)) * s
        return -r

    def reset(self, failed):
        self.mem = []

    def update(self, s, y):
        self.mem = (self.mem + [(s, y)])[-self.m:]


def _replay(tr, ref):
    """Checks every step of ``tr`` against ``ref``; returns (steps, skipped pairs, failed searches)."""
    steps = skipped = failed = 0
    for (x, g, _, _), (x1, g1, a, _) in zip(tr, tr[1:]):
        d = ref.direction(g)
        if not (g @ d < 0):
            ref.reset(False)
            d = -g
        if np.array_equal(x1, x):            # no decrease: the memory starts afresh
            failed += 1
            ref.reset(True)
            continue
        sv, y = x1 - x, g1 - g
        # x_{k+1} = x_k + α d_k in floating point: the difference carries x's rounding
        np.testing.assert_allclose(sv, a * d, rtol=1e-7, atol=4 * EPS * np.max(np.abs(x1)),
                                   err_msg=f"step {steps + failed}")
        steps += 1
        if sv @ y > np.sqrt(EPS) * np.linalg.norm(sv) * np.linalg.norm(y):
            ref.update(sv, y)
        else:
            skipped += 1
    return steps, skipped, failed


@pytest.mark.parametrize("spec, ref, n", [
    ("bfgs", lambda n: _BFGS(n), 3),
    ("bfgs:init_scale=true", lambda n: _BFGS(n, True), 3),
    ("lbfgs:memory=3", lambda n: _LBFGS(3), 4),       # memory full, oldest pairs dropped
    ("lbfgs:memory=50", lambda n: _LBFGS(50), 4),     # memory > iterations
    ("lbfgs:memory=4", lambda n: _LBFGS(4), 2),       # the n×n form
])
def test_iterates_follow_the_textbook_recursion(spec, ref, n):
    x0 = np.array([-1.2, 1.0, -1.2, 1.0])[:n]
    tr = _trace(spec, _rosen, x0)
    assert tr[-1][3] == 0 and np.linalg.norm(tr[-1][1]) < 1e-9     # solved, by the iterates checked
    steps, skipped, failed = _replay(tr, ref(n))
    assert steps > 25 and failed == 0


@pytest.mark.parametrize("spec, ref", [("bfgs:max_evals=1", lambda: _BFGS(3)),
                                       ("bfgs:max_evals=2:init_scale=true", lambda: _BFGS(3, True)),
                                       ("lbfgs:max_evals=1", lambda: _LBFGS(10)),
                                       ("lbfgs:max_evals=2:memory=2", lambda: _LBFGS(2))])
def test_skipped_pairs_and_failed_searches_follow_the_textbook_rules(spec, ref):
    tr = _trace(spec, _wave, [0.3, 0.2, -0.25])
    steps, skipped, failed = _replay(tr, ref())
    assert skipped >= 2, "the problem must produce pairs with sᵀy ≤ 0 for the test to mean anything"
    if spec.endswith("max_evals=1"):
        assert failed >= 1   # a short search that found no decrease: memory reset, retry along −g
    assert np.allclose(np.abs(tr[-1][0]), 3.0799545, atol=1e-6)   # the minimiser near ±π


def test_first_iteration_scaling():
    """L-BFGS: the first step is along −g with unit length in x (no curvature yet); the second
    uses H₀ = γI, γ = sᵀy/yᵀy, so with one pair d = −H g exactly as N&W eq. 7.20 + one update."""
    tr = _trace("lbfgs", _rosen, [-1.2, 1.0, -1.2], iters=2)
    (x0, g0, _, _), (x1, g1, a1, _), (x2, _, a2, _) = tr
    s, y = x1 - x0, g1 - g0
    np.testing.assert_allclose(np.linalg.norm(s), 1.0 * a1 * np.linalg.norm(g0), rtol=1e-12)
    gamma = (s @ y) / (y @ y)
    d = -_np_update(gamma * np.eye(3), s, y) @ g1
    np.testing.assert_allclose(x2 - x1, a2 * d, rtol=1e-9)


@pytest.mark.parametrize("n", [2, 3])
def test_the_three_lbfgs_forms_give_the_same_iterates(monkeypatch, n):
    """Forced on one problem: the n×n form (n ≤ LBFGS_DENSE_MAX), the fixed-order two-loop and
    the circular-buffer SᵀY/YᵀY form (memory·n > LBFGS_SMALL_MAX) take the same steps."""
    x0 = [-1.2, 1.0, -1.2][:n]
    runs = []
    for small_max, dense_max in ((4096, 2), (4096, 0), (0, 2)):
        monkeypatch.setattr(qn, "LBFGS_SMALL_MAX", small_max)
        monkeypatch.setattr(qn, "LBFGS_DENSE_MAX", dense_max)
        runs.append(_trace("lbfgs:memory=3", _rosen, x0))
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other):
            np.testing.assert_allclose(b[0], a[0], rtol=1e-8, atol=1e-12)


def test_lbfgs_above_the_switch_size_matches_the_small_form_and_numpy(monkeypatch):
    """n just above LBFGS_SMALL_MAX / memory takes the circular-buffer form by itself; it must
    follow the numpy recursion and the forced fixed-order form step for step."""
    m = 5
    n = qn.LBFGS_SMALL_MAX // m + 1
    x0 = np.tile([-1.2, 1.0], n // 2 + 1)[:n] + np.linspace(0, 0.1, n)
    big = _trace(f"lbfgs:memory={m}", _rosen, x0, iters=40)
    steps, skipped, failed = _replay(big, _LBFGS(m))
    assert steps == 40 and failed == 0
    monkeypatch.setattr(qn, "LBFGS_SMALL_MAX", 10 ** 9)
    small = _trace(f"lbfgs:memory={m}", _rosen, x0, iters=40)
    # the two forms sum the same products in another order: last bits, which the valley
    # amplifies to ~1e-8 relative by step 40
    for a, b in zip(big, small):
        np.testing.assert_allclose(b[0], a[0], rtol=1e-6, atol=1e-10)


# -- packing ------------------------------------------------------------------------------------
def test_running_first_is_a_stable_argsort():
    rng = np.random.default_rng(0)
    f = jax.jit(base.running_first)
    for b in (1, 2, 7, 64):
        for active in (np.ones(b, bool), np.zeros(b, bool), rng.random(b) < 0.3, rng.random(b) < 0.9):
            got = np.asarray(f(jnp.asarray(active)))
            np.testing.assert_array_equal(got, np.argsort(~active, kind="stable"), err_msg=str(active))
    k = 5
    active = rng.random(20) < 0.4
    np.testing.assert_array_equal(np.asarray(base._running_first(jnp.asarray(active), k)),
                                  np.argsort(~active, kind="stable")[:k])


def _uneven_starts():
    # 2-D Rosenbrock: starts at and next to the minimiser (0–few iterations), random ones, and a
    # few far round the valley (tens of iterations more): a long tail of few running starts
    rng = np.random.default_rng(7)
    near = np.array([1.0, 1.0]) + rng.uniform(-1e-3, 1e-3, (20, 2))
    near[0] = [1.0, 1.0]
    far = np.array([[-1.9, 3.5], [-1.5, 2.4], [-2.0, -1.0], [1.9, -1.8], [-1.2, 1.0]])
    return np.concatenate([near, rng.uniform(-2, 2, (9, 2)), far])   # 34 = 2·16 + 2 starts


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "newton-cg", "levenberg-marquardt"])
def test_packed_run_with_a_long_tail_equals_the_unpacked_run(monkeypatch, method):
    monkeypatch.setattr(S, "PACK_TILE_MIN", 16)
    monkeypatch.setattr(S, "PACK_TILES_MAX", 2)
    monkeypatch.setattr(S, "HISTORY_CHUNK", 8)
    monkeypatch.setattr(base, "COMPACT_MIN", 16)       # the inner loops compact too
    monkeypatch.setattr(S, "_COMPILED", collections.OrderedDict())
    p = problems.get("rosenbrock")
    x0s = _uneven_starts()
    a = bench.solve(p, method, x0s, max_iter=400)
    pk = bench.solve(p, method, x0s, max_iter=400, pack=True)
    assert a.nit.min() == 0 and a.nit.max() > 4 * np.median(a.nit) and (a.status != "max_iter").all()
    assert a.packed_at is None and pk.packed_at is not None and 0 < pk.packed_at < pk.iterations_run
    for f in ("nit", "status", "nfev", "njev", "nhev", "nhvp"):
        np.testing.assert_array_equal(getattr(pk, f), getattr(a, f), err_msg=f)
    np.testing.assert_allclose(pk.x, a.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pk.fun, a.fun, rtol=1e-9, atol=1e-14)
