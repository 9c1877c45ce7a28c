"""The one driver: every optimizer runs through :func:`solve`.

Shape of the compiled program, for B starts of dimension n::

    start   = jit( vmap(init); classify; history row 0 )
    advance = jit( while_loop( j < CHUNK and k < max_iter and any lane running:
                               vmap(step) over lanes; freeze finished lanes;
                               write row j of the (CHUNK, F, B) history chunk ) )

and on the host: ``start``, then ``advance`` until no lane runs or max_iter is reached, each
chunk's history rows appended. The loop index is shared by all lanes (unbatched), so each
iteration writes one row of the history with a cheap in-place dynamic update — O(B) per
iteration. (A ``vmap`` of a per-start ``while_loop`` would instead ``select`` over every carried
buffer each iteration, O(B·T).) The history lives in two packed buffers (floats: f, ‖g‖, step,
ρ and x when n ≤ 3; int32: the four evaluation counts), two updates per iteration instead of one
per field; and it is produced in chunks of :data:`HISTORY_CHUNK` iterations, so its cost follows
the iterations actually run, not ``max_iter`` (a (max_iter+1)·B buffer zeroed, carried and
forward-filled on the device cost more than Newton's own work, measured: 2.3× the run time at
B = 10⁴, max_iter = 200). ``max_iter`` is a run-time argument: it does not enter the compiled
program, so one executable serves every budget.

Finished lanes are frozen with a select over the small optimizer state, so per-start counts
(iterations, evaluations) are exact while the batch runs to its slowest start, as any vmapped
loop must. With ``pack=True`` a large batch's tail is stepped tile by tile instead, over the
tiles that still hold running starts (see :func:`_build`). Nothing in the loop raises: a
non-finite value ends its start with status ``diverged`` and leaves the other starts alone.

More than one device: the starts are sharded over every visible device of the chosen kind with
``jax.sharding`` (a 1-D mesh over the batch axis; the batch is padded to a multiple of the
device count with copies of its last start, which are dropped again). XLA compiles each
device's share for its size, so results equal a one-device run to rounding (bit for bit where
the code for both sizes agrees: the README's *Several devices*). Across hosts, call
:func:`init_distributed` first in every process: the mesh then spans all processes' devices and
results are gathered to every process.

Compilation is ahead of time (``lower(...).compile()``), timed apart from the run, and cached
per (problem, optimizer, shapes, dtype, devices), the :data:`COMPILED_MAX` most recently used: a
second call with the same ones compiles nothing. Across processes a persistent compilation cache (:func:`enable_compilation_cache`,
on by default, directory ``$OPTBENCH_CACHE_DIR`` or ``~/.cache/optbench/jax``) replaces XLA's
compile with a load; with the program store on (:func:`enable_program_cache`, as ``optbench run``
turns it on) a stored program is loaded without being traced or lowered at all. The run is timed
over ``repeats`` calls, each until the result is ready.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

import optimizers as _optimizers
import problems as _problems
from optbench_core import DTYPES, OptbenchError, first_line, real_array
from optimizers.base import (STATUS_CONVERGED, STATUS_DIVERGED, STATUS_LINESEARCH_FAILED, STATUS_MAX_ITER,
                             STATUS_NAMES, STATUS_RUNNING, STATUS_SINGULAR, STATUS_STALLED, Oracle, lane_axis,
                             running_first, where_state)

from . import limits as _limits
from .store import pad_columns

jax.config.update("jax_enable_x64", True)

#: where f* is known, a start succeeds only if f − f* ≤ max(SUCCESS_ATOL, SUCCESS_RTOL[dtype]·|f*|)
#: (:func:`success_mask`); in float64 that is 1e-6·max(1, |f*|). In float32 the relative part is
#: √ε ≈ 3.45e-4: f at a nonzero f* is a sum of squares whose float32 rounding alone reaches a few
#: 1e-6 of f (the course's Gaussian fit, f* = 835.65: newton, gauss-newton and LM all stop at
#: 835.6559, 3.5e-6 above the certified float64 value)
SUCCESS_ATOL = 1e-6
SUCCESS_RTOL = {"float64": 1e-6, "float32": float(np.sqrt(np.finfo(np.float32).eps))}
#: the statuses of a start that stopped by itself (not at max_iter, not diverged)
_STOPPED_ITSELF = (STATUS_CONVERGED, STATUS_STALLED, STATUS_LINESEARCH_FAILED, STATUS_SINGULAR)
#: the iterates themselves are recorded in the history when dim ≤ this
TRACE_X_MAX_DIM = 3

#: per-start state size (numbers) from which freezing finished starts goes through a
#: conditional that skips the select while every start runs
COND_SELECT_MIN = 256
#: iterations per compiled chunk of the loop (history rows allocated per chunk)
HISTORY_CHUNK = 32
#: packing finished starts out of the batch: a batch of at least 2 * PACK_TILE_MIN starts on one
#: device is stepped in tiles of at least PACK_TILE_MIN lanes (at most PACK_TILES_MAX tiles),
#: only over the tiles that hold running starts (see :func:`_build`). Smaller tiles would pay
#: each step's fixed cost (tens of kernels of a few µs) once more per tile while all run.
PACK_TILE_MIN = 1024
PACK_TILES_MAX = 8
#: the packed loop takes over once at most this fraction of the slots still runs
PACK_RUNNING_MAX = 0.5
#: environment variable naming the persistent compilation cache directory ("off" disables it)
CACHE_ENV = "OPTBENCH_CACHE_DIR"
#: compiles faster than this are not written to the persistent cache (tiny eager ops)
CACHE_MIN_COMPILE_S = 0.1

#: compiled programs kept in this process, least recently used dropped first. Each holds its
#: machine code in a few hundred memory mappings; a process that kept every program it ever
#: compiled crashed after about 280 of them (Linux's default vm.max_map_count of 65,530: the
#: slow MGH + NIST robustness test, all optimizers in one process, segfaulted inside XLA).
COMPILED_MAX = 128
_COMPILED: "collections.OrderedDict[Any, Any]" = collections.OrderedDict()
_STATS = {"compiles": 0, "loads": 0}
_CACHE = {"configured": False, "dir": None}
_clock = time.perf_counter   # the run's clock (wall time); experiments may swap in process_time


class Trace:
    """Per-iteration history, arrays of shape (B, max_iter + 1); column k is after k steps.

    Columns after a start stopped repeat its final values (so a finished start's curve stays
    flat); ``Result.nit`` says where it stopped. ``x`` is (B, max_iter + 1, n) when n ≤ 3.

    Only the columns the run recorded (up to the last iteration any start ran) are held; the
    flat tail up to ``max_iter`` is written out the first time a field is read, and kept. A
    solve that stops long before ``max_iter`` therefore does not fill, at solve time, memory for
    iterations that never ran (2-D Newton, 10⁴ starts, max_iter = 200: 31 of 201 columns, and
    16 MB per field that the host had to page in). ``recorded()`` gives the held columns.
    """

    FIELDS = ("f", "grad_norm", "nfev", "njev", "nhev", "nhvp", "step", "rho", "x")

    def __init__(self, f, grad_norm, nfev, njev, nhev, nhvp, step, rho, x=None, *, length: Optional[int] = None,
                 time_axis: int = 1):
        given = dict(f=f, grad_norm=grad_norm, nfev=nfev, njev=njev, nhev=nhev, nhvp=nhvp, step=step, rho=rho, x=x)
        # per field: the recorded columns, replaced by the padded form once that is read
        self._arrays = {k: np.asarray(v) for k, v in given.items() if v is not None}
        self._axis = int(time_axis)
        self._t = self._arrays["f"].shape[self._axis]    # columns recorded (the same for every field)
        self._length = max(self._t, length or 0)

    def _cols(self, stop: int, start: int = 0):
        idx = [slice(None)] * (self._axis + 1)
        idx[self._axis] = slice(start, stop)
        return tuple(idx)

    def _padded(self, name: str) -> Optional[np.ndarray]:
        a = self._arrays.get(name)
        if a is None or a.shape[self._axis] == self._length:
            return a
        out = pad_columns(a, self._length, self._axis)
        self._arrays[name] = out    # the compact copy is no longer needed
        return out

    @property
    def length(self) -> int:
        """Columns of every field as read: max_iter + 1 (the recorded ones and the flat tail)."""
        return self._length

    def recorded(self) -> Dict[str, np.ndarray]:
        """The columns held (see the class note): every field, without the flat tail."""
        return {k: v[self._cols(self._t)] for k, v in self._arrays.items()}

    def arrays(self) -> Dict[str, np.ndarray]:
        return {k: self._padded(k) for k in self.FIELDS if k in self._arrays}

    def select(self, i) -> "Trace":
        """The trace of start ``i`` alone (time becomes the leading axis)."""
        if self._axis == 0:
            raise OptbenchError("this trace is of one start already (solved from x0 of shape (n,)); nothing to select")
        starts = next(iter(self._arrays.values())).shape[0]
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not -starts <= i < starts:
            raise OptbenchError(f"start index must be an integer in [0, {starts}), got {i!r}")
        rec = {k: v[i] for k, v in self.recorded().items()}
        return Trace(**rec, length=self._length, time_axis=self._axis - 1)

    def __repr__(self) -> str:
        shapes = {}
        for k, v in self._arrays.items():
            shape = list(v.shape)
            shape[self._axis] = self._length
            shapes[k] = tuple(shape)
        return f"Trace({shapes})"


def _trace_field(name):
    def get(self):
        return self._padded(name)
    get.__name__ = name
    return property(get, doc=f"the {name} history (see :class:`Trace`)")


for _name in Trace.FIELDS:
    setattr(Trace, _name, _trace_field(_name))
del _name


@dataclasses.dataclass
class Result:
    """What :func:`solve` returns, in scipy's vocabulary, one entry per start (leading axis B).

    Given a single start x0 of shape (n,), every array loses its leading batch axis.
    """

    x: np.ndarray
    fun: np.ndarray
    grad_norm: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    njev: np.ndarray
    nhev: np.ndarray
    nhvp: np.ndarray
    status: np.ndarray        # status names, e.g. "converged", "diverged"
    status_code: np.ndarray
    success: np.ndarray
    trace: Optional[Trace]    # None for solve(history=False)
    x0: np.ndarray
    problem: str
    optimizer: str
    dtype: str
    max_iter: int
    gtol: float
    compile_s: float          # 0.0 when the executable was compiled earlier in this process; a load from the program store: its seconds
    run_s: float              # median wall time of one batched run
    run_s_all: list
    iterations_run: int       # loop iterations the batch ran (= max nit)
    f_star: Optional[float] = None
    device: str = ""
    packed_at: Optional[int] = None   # the iteration from which the packed loop ran (solve(pack=True))

    @property
    def subopt(self) -> np.ndarray:
        """f − f* per start (NaN where f* is unknown)."""
        fs = np.nan if self.f_star is None else self.f_star
        return self.fun - fs


def _grad_norm(s):
    """‖∇f‖ of each start of a batched State."""
    return jnp.linalg.norm(s.g, axis=-1)


def _record(s, n, gn):
    """One history row: a dict of (B,) arrays (and x as (B, n) when n ≤ 3); ``gn``: the ‖∇f‖
    the convergence test used (:func:`_build`'s ``classify``)."""
    out = {"f": s.f, "grad_norm": gn, "step": s.step, "rho": s.rho,
           "nfev": s.nfev, "njev": s.njev, "nhev": s.nhev, "nhvp": s.nhvp}
    if n <= TRACE_X_MAX_DIM:
        out["x"] = s.x
    return out


_FLOAT_FIELDS = ("f", "grad_norm", "step", "rho")
_INT_FIELDS = ("nfev", "njev", "nhev", "nhvp")


def _packed_row(s, n, gn):
    """One history row packed into two arrays, floats (F, B) and counts (4, B): two in-place
    writes per iteration instead of one per field (each write is a separate kernel in the
    compiled loop, and at a few thousand starts the kernels' fixed cost, not their work, is
    what the driver adds to a step)."""
    rec = _record(s, n, gn)
    floats = [rec[k].astype(s.f.dtype) for k in _FLOAT_FIELDS]
    if "x" in rec:
        floats += [rec["x"][:, i].astype(s.f.dtype) for i in range(n)]
    return jnp.stack(floats), jnp.stack([rec[k].astype(jnp.int32) for k in _INT_FIELDS])


def _unpack_chunk(h, n) -> Dict[str, np.ndarray]:
    """The per-field (rows, B[, n]) arrays of a packed history chunk ((rows, F, B), (rows, 4, B))."""
    fl, it = h
    out = {k: fl[:, i] for i, k in enumerate(_FLOAT_FIELDS)}
    out.update({k: it[:, i] for i, k in enumerate(_INT_FIELDS)})
    if n <= TRACE_X_MAX_DIM:
        out["x"] = np.moveaxis(fl[:, len(_FLOAT_FIELDS):], 1, 2)
    return out


#: the name of the starts' axis in the driver's vmap (for :func:`optimizers.base.lanes_while`)
LANE_AXIS = "optbench_lanes"


def _over_lanes(fn, compact: bool = False):
    """``fn`` on one start, mapped over the leading (lane) axis of its arguments: ``vmap``, except
    for a single lane, which runs unbatched. Under ``vmap`` every inner ``while_loop`` of an
    optimizer (CG, line searches) selects each carried value per lane after each trip; for one
    lane those selects are pure cost (a pass over n-vectors each: Newton-CG at n = 10⁵ spent
    ~45 % of an iteration on them, measured with ``jax.profiler``). ``compact``: the inner loops
    may narrow themselves to their running lanes (:func:`optimizers.base.lanes_while`; the
    driver allows it with ``pack=True`` on one device)."""
    def run(*args):
        if jax.tree_util.tree_leaves(args)[0].shape[0] == 1:
            out = fn(*jax.tree_util.tree_map(lambda a: a[0], args))
            return jax.tree_util.tree_map(lambda a: jnp.expand_dims(a, 0), out)
        with lane_axis(LANE_AXIS, compact=compact):
            return jax.vmap(fn, axis_name=LANE_AXIS)(*args)
    return run


def _tiling(b: int, nd: int):
    """(tiles, tile lanes) for a batch of ``b`` lanes on ``nd`` devices: ``(1, b)`` (one step over
    the whole batch per iteration) unless the batch is large enough to be cut into tiles of at
    least :data:`PACK_TILE_MIN` lanes on one device; then at most :data:`PACK_TILES_MAX` tiles."""
    if nd != 1 or PACK_TILES_MAX < 2 or b < 2 * PACK_TILE_MIN:
        return 1, b
    tiles = min(int(PACK_TILES_MAX), b // int(PACK_TILE_MIN))
    return tiles, -(-b // tiles)


def _oracle(problem, data) -> Oracle:
    """The oracle an optimizer evaluates ``problem`` through, with its data (traced or not)."""
    # f and r answer in x's dtype: a user's f that closes over float64 numpy constants would
    # otherwise return float64 values in a float32 run (constants in ``data`` are cast instead)
    r = (lambda x: problem.residual_vector(x, data).astype(x.dtype)) if problem.has_residuals else None
    return Oracle(lambda x: problem.objective(x, data).astype(x.dtype), r, root_problem="root" in problem.tags)


def _build(problem, opt, n: int, chunk: int, tiles: int = 1, tile: int = 0, live: Optional[int] = None,
           running_max: float = PACK_RUNNING_MAX, record: bool = True):
    """The compiled pieces of a run.

    ``start(x0s, data, gtol, max_iter) -> (carry, packed row 0)`` and
    ``advance(carry, hist, data, gtol, max_iter, kv) -> (carry, kv', hist)``
    where carry = (optimizer state, status code, nit) per lane, k counts iterations so far and
    hist = (float chunk, int chunk) is a buffer pair the loop writes its rows into;
    kv' = [k + rows run, more?, then per row the tiles stepped].
    Slots from ``live`` on hold no start (padding to whole tiles): they begin finished. With
    ``tiles`` > 1 ``advance`` stops once at most ``running_max`` of the slots run.

    ``packed`` is ``advance`` for the tail of a run, when most starts have finished: its carry
    also holds ``perm`` (slot -> start), and it steps the batch (``tiles * tile`` slots) tile by
    tile, only over the tiles that hold running starts; whenever the running starts would fit
    in fewer tiles they are moved to the front (a stable partition of the slots). Each history
    row then holds the stepped slots only, with their start in an extra int field; the host
    puts the columns back in start order (a finished start is constant, so the rows it is
    missing from repeat its last recorded value).

    With ``tiles`` > 1 (``pack=True``, one device) the optimizers' inner loops (line searches,
    CG, MINPACK's λ iteration) also compact: over a batch of at least
    :data:`optimizers.base.COMPACT_MIN` lanes, once a quarter of it runs they finish on those lanes
    gathered into a quarter-size batch (:func:`optimizers.base.lanes_while`).

    ``record=False``: no history; ``start`` returns ``()`` for row 0, the loops take and return
    ``hist = ()``, writing nothing, and run without a chunk's bound on their rows (the progress
    array is then just [k, more?]); ``first(x0s, data, gtol, max_iter, kv)`` is ``start`` and
    ``advance`` in one program, which is all a run without history needs until the packed loop
    (``solve(history=False)``).
    """
    compact = tiles > 1
    rows = chunk if record else 0   # per-row entries of the progress array

    def in_chunk(j):
        """Whether row j fits the chunk (a run without history has no chunks)."""
        return (j < chunk) if record else True

    def classify(s, gn, k, prev, gtol, max_iter):
        """Status after k steps: converged > diverged > optimizer's own > max_iter > running.
        ``gn``: ‖∇f‖ of each start (:func:`_grad_norm`), the one number the run reports and
        records for it: computed once, in one place, so that a ``converged`` start's reported
        ‖∇f‖ is the one that passed the test (computed again elsewhere, XLA may contract it
        differently, and the last bit differed: ``converged`` with ‖∇f‖ one ulp above gtol)."""
        # a non-finite ‖∇f‖ covers NaN/inf entries and a norm that overflows from finite ones
        # (which would otherwise run on to max_iter, reported with grad_norm = inf)
        finite = jnp.isfinite(s.f) & jnp.isfinite(gn) & jnp.all(jnp.isfinite(s.x), axis=-1)
        code = jnp.where(k >= max_iter, STATUS_MAX_ITER, STATUS_RUNNING)
        code = jnp.where(s.status != STATUS_RUNNING, s.status, code)
        code = jnp.where(~finite, STATUS_DIVERGED, code)
        code = jnp.where(finite & (gn <= gtol), STATUS_CONVERGED, code)
        return jnp.where(prev == STATUS_RUNNING, code, prev).astype(jnp.int32)

    def start(x0s, data, gtol, max_iter):
        oracle = _oracle(problem, data)
        s0 = _over_lanes(lambda x0: opt.init(oracle, x0), compact)(x0s)
        b = x0s.shape[0]
        gn0 = _grad_norm(s0)
        code0 = classify(s0, gn0, 0, jnp.zeros(b, jnp.int32), gtol, max_iter)
        if live is not None and live < b:   # the slots after the live ones hold no start
            code0 = jnp.where(jnp.arange(b) < live, code0, STATUS_MAX_ITER)
        return (s0, code0, jnp.zeros(b, jnp.int32), gn0), (_packed_row(s0, n, gn0) if record else ())

    def one_step(step, s, code, nit, gn, gtol, max_iter):
        """One iteration over a batch of lanes: step the running ones, freeze the others."""
        active = code == STATUS_RUNNING
        s_new = step(s)
        if s.x.shape[0] > 1:
            # the new x is computed once, not again inside each consumer (the select, the status
            # test, the next f and ∇f): with jax 0.12 XLA fused those copies differently in a
            # program sharded over devices, so x differed by rounding from a one-device run
            # (bfgs, levenberg-marquardt), and the sharded runs' bit-for-bit equality broke; with
            # the barrier it holds there too. Cost measured with jax 0.10.2, interleaved: 0.99–1.02×
            # (bfgs, lbfgs, newton, levenberg-marquardt, gauss-newton at 10³/10⁴ 2-D starts), same bits
            s_new = s_new._replace(x=jax.lax.optimization_barrier(s_new.x))
        if s.x.shape[0] == 1:
            # one lane: the loop runs only while it is active, so the select is the identity
            # (and for L-BFGS at n = 10⁶ it would copy 2·memory·n numbers per iteration)
            s = s_new
        elif sum(a.size for a in jax.tree_util.tree_leaves(s)) <= COND_SELECT_MIN * s.x.shape[0]:
            # a small state: one fused select is cheaper than a conditional, whose
            # all-lanes-running branch copies the whole state into its result (measured: 2-D
            # Newton on 10,000 starts, 24 -> 21 ms a run)
            s = where_state(active, s_new, s)
        else:
            # a large state (L-BFGS memories): while every lane still runs (the first
            # iterations), skip the select
            s = jax.lax.cond(jnp.all(active), lambda: s_new, lambda: where_state(active, s_new, s))
        nit = nit + active.astype(jnp.int32)
        # a stopped start keeps the norm it stopped with
        gn = jnp.where(active, _grad_norm(s), gn)
        return s, classify(s, gn, nit, code, gtol, max_iter), nit, gn

    def advance(carry, hist, data, gtol, max_iter, kv):
        # ``hist``: a donated (chunk, F, B) buffer pair whose old contents are overwritten row by
        # row (only rows < j are read back), so no chunk is zero-filled per call
        oracle = _oracle(problem, data)
        step = _over_lanes(_checked_step(opt, oracle), compact)
        k0 = kv[0]
        s, code, nit, gn = carry

        def cond(c):
            j, _, code, _, _, _ = c
            go = (k0 + j < max_iter) & in_chunk(j)
            if tiles > 1:   # the packed loop takes over once few starts run: stop for it
                running = jnp.sum(code == STATUS_RUNNING, dtype=jnp.int32)
                return go & (running > running_max * code.shape[0])
            return go & jnp.any(code == STATUS_RUNNING)

        def body(c):
            j, s, code, nit, gn, hist = c
            s, code, nit, gn = one_step(step, s, code, nit, gn, gtol, max_iter)
            if not record:
                return j + 1, s, code, nit, gn, hist
            fl, ints = _packed_row(s, n, gn)
            if tiles > 1:   # the chunk's rows name each slot's start, as the packed loop's do
                ints = jnp.concatenate([ints, jnp.arange(code.shape[0], dtype=jnp.int32)[None]])
            hist = tuple(jax.lax.dynamic_update_index_in_dim(h, v, j, 0) for h, v in zip(hist, (fl, ints)))
            return j + 1, s, code, nit, gn, hist

        j, s, code, nit, gn, hist = jax.lax.while_loop(cond, body, (jnp.int32(0), s, code, nit, gn, hist))
        return (s, code, nit, gn), _progress(k0 + j, code, max_iter, jnp.zeros(rows, jnp.int32)), hist

    def _progress(k, code, max_iter, per_row):
        """The one small array the host reads after a chunk: [iterations so far, go on?, then
        per row the tiles stepped (packed loop only)]."""
        more = (k < max_iter) & jnp.any(code == STATUS_RUNNING)
        return jnp.concatenate([jnp.stack([k, more.astype(jnp.int32)]), per_row])

    def packed(carry, hist, data, gtol, max_iter, kv):
        # carries on in the chunk the plain loop left at row kv[1] (or a fresh one, at row 0)
        oracle = _oracle(problem, data)
        step = _over_lanes(_checked_step(opt, oracle), compact)
        k0, j0 = kv[0], kv[1]
        s, code, nit, gn, perm = carry
        slots = code.shape[0]
        slot = jnp.arange(slots, dtype=jnp.int32)
        leaves, treedef = jax.tree_util.tree_flatten((s, code, nit, gn))

        def tiles_needed(code):
            """Tiles up to the last running slot (0 when none runs)."""
            last = jnp.max(jnp.where(code == STATUS_RUNNING, slot, -1))
            return (last + tile) // tile

        def repack(args):
            lv, perm = args
            # a stable partition: running starts first, in slot order, then the rest
            order = running_first(jax.tree_util.tree_unflatten(treedef, lv)[1] == STATUS_RUNNING)
            return tuple(jnp.take(a, order, axis=0) for a in lv), jnp.take(perm, order)

        def cond(c):
            j, lv = c[0], c[1]
            code = jax.tree_util.tree_unflatten(treedef, lv)[1]
            return in_chunk(j) & (k0 + j - j0 < max_iter) & jnp.any(code == STATUS_RUNNING)

        def body(c):
            j, lv, perm, hist, nt, per_row = c
            code = jax.tree_util.tree_unflatten(treedef, lv)[1]
            need = (jnp.sum(code == STATUS_RUNNING, dtype=jnp.int32) + tile - 1) // tile
            lv, perm = jax.lax.cond(need < nt, repack, lambda a: a, (tuple(lv), perm))
            nt = jnp.minimum(nt, need)

            def one_tile(t, tc):
                lv, hist = tc
                at = (t * tile).astype(jnp.int32)
                cut = lambda a: jax.lax.dynamic_slice_in_dim(a, at, tile, 0)  # noqa: E731
                st, ct, it, gt = one_step(step, *jax.tree_util.tree_unflatten(treedef, [cut(a) for a in lv]),
                                          gtol, max_iter)
                lv = tuple(jax.lax.dynamic_update_slice_in_dim(a, v, at, 0)
                           for a, v in zip(lv, jax.tree_util.tree_leaves((st, ct, it, gt))))
                if not record:
                    return lv, hist
                # the history row is read back from the written slots: computed from the tile's
                # values instead, XLA fuses it to read the old slots, and keeps them readable by
                # copying the whole array every tile
                st, _, _, gt = jax.tree_util.tree_unflatten(treedef, [cut(a) for a in lv])
                fl, ints = _packed_row(st, n, gt)
                ints = jnp.concatenate([ints, cut(perm)[None]])
                hist = tuple(jax.lax.dynamic_update_slice(h, v[None], (j, jnp.int32(0), at))
                             for h, v in zip(hist, (fl, ints)))
                return lv, hist

            lv, hist = jax.lax.fori_loop(0, nt, one_tile, (lv, hist))
            return j + 1, lv, perm, hist, nt, (per_row.at[j].set(nt) if record else per_row)

        init = (j0, tuple(leaves), perm, hist, tiles_needed(code), jnp.zeros(rows, jnp.int32))
        j, lv, perm, hist, _, per_row = jax.lax.while_loop(cond, body, init)
        s, code, nit, gn = jax.tree_util.tree_unflatten(treedef, list(lv))
        return (s, code, nit, gn, perm), _progress(k0 + j - j0, code, max_iter, per_row), hist

    def first(x0s, data, gtol, max_iter, kv):
        carry, _ = start(x0s, data, gtol, max_iter)
        return advance(carry, (), data, gtol, max_iter, kv)

    return start, advance, packed, first


#: XLA options for every optbench executable on CPU: copy insertion with region analysis, which
#: proves more of a while loop's carried buffers safe to update in place, so fewer are copied
#: at the top of each trip (the strong-Wolfe loop copied seven per-start arrays per trial, CG its
#: search direction). Measured in one process, interleaved: bfgs on 10³ / 10⁴ 2-D Rosenbrock
#: starts 0.69× / 0.86× the time, levenberg-marquardt on 10³ 0.81×, newton-cg and trust-ncg on
#: extended Rosenbrock n = 10⁵ 0.89×; newton and lbfgs unchanged (0.97–1.03×).
CPU_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}

#: XLA options added on CPU for small problems. XLA's CPU backend hands reductions to its
#: YNNPACK library fusions by default; for the batched many-small-problems shape of a benchmark
#: (reductions over n = 2 … 10 per start, thousands of starts) those run several times slower
#: than XLA's own loops. Measured on 2-D Rosenbrock, 10,000 starts, a compiled run without them:
#: newton 16.7 -> 9.3 ms, bfgs 271 -> 94 ms, lbfgs 439 -> 260 ms, levenberg-marquardt 111 -> 31 ms
#: (1,000 starts: equal or faster). Standalone dots keep YNNPACK. For long vectors the library
#: reductions win (extended Rosenbrock, n = 10⁵, one start: newton-cg 70 ms with them, 82 ms
#: without), so these apply only to problems of dimension ≤ :data:`SMALL_DIM_MAX`, and only
#: where the problem's data is small (≤ :data:`SMALL_DATA_MAX` numbers): over long data the
#: reductions are long too (``linreg`` at 2·10⁶×50 float32: a gradient step 37 ms with them,
#: 25 ms without, as XLA then cuts the blocked gradient's column sums into windows of 32 rows and
#: writes out each product block first).
#: ``OPTBENCH_XLA_DEFAULTS=1`` compiles everything with XLA's defaults.
SMALL_PROBLEM_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
SMALL_DIM_MAX = 256
SMALL_DATA_MAX = 1 << 16

#: XLA options added on CPU for small batches: XLA's element-wise kernels from its older emitters
#: instead of its MLIR fusion emitters. A batch of at most :data:`SMALL_BATCH_MAX` numbers
#: (starts × dimension; a small problem with small data, as for :data:`SMALL_PROBLEM_OPTIONS`)
#: gains nothing at run time from the newer emitters' vectorised code, whose compile is the
#: larger part of such a cell's wall time. Measured in one process on this 2-core VM (median of
#: 9 interleaved runs; cold compiles): 2-D Rosenbrock with 5 to 32 starts, newton, bfgs, lbfgs,
#: levenberg-marquardt: compile 0.53–0.86× the time, runs 0.82–1.13× (median 1.03×); 5 starts
#: of NIST Misra1a and Gauss1 and of a 10-variable quadratic: compile 0.44–0.76×, runs
#: 0.90–1.04×; Rosenbrock n = 32 and 64, one or two starts: compile 0.45–0.71×, runs 0.98–1.10×; at 64
#: starts of 2-D Rosenbrock runs took 1.07–1.25× the time and at 1,000 starts 1.5–1.6×, so
#: larger batches keep the newer emitters. The quick suite (`suites/quick.toml`, 43 cells of 5
#: starts): 46.7 s of compiling in all → 28.2 s, wall time 27.4 s → 17.6 s. The results agree
#: with the other compile's to rounding (the last bits of some cells differ).
SMALL_BATCH_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
SMALL_BATCH_MAX = 64
_OPTIONS_OK = {"cpu": True, "small_batch": True}


#: XLA options added on CPU for small problems whose loop carries only small arrays: no kernel
#: split across XLA's threads (its HLO pass ``cpu-parallel-task-assigner`` off). XLA's cost model
#: counts 10 cycles per byte a fusion touches and splits any fusion with more arithmetic than
#: bytes once it predicts 100 µs of work, so the 2-D modified-Newton direction over 10³ starts
#: (64 KB) runs in two halves: a kernel of a few µs then waits 15–30 µs for a sleeping pool
#: thread. A memory-bound fusion it splits only from 512 KiB touched (256 KB a thread), and
#: there the second thread pays: the selects of large L-BFGS memories and BFGS matrices, which
#: read two arrays and write a third. So the pass is off only where the largest array the
#: iteration loop carries, over all starts (:func:`_largest_array_bytes`), is at most
#: :data:`NO_SPLIT_ARRAY_MAX` bytes, a third of 512 KiB. Measured with ``bench.solve`` (history
#: on), interleaved in one process, times with the pass off over times with it on, the same bits:
#: 2-D Rosenbrock, newton 0.80–0.92× at 10³ starts, 0.76× at 3,000, 0.74× at 10⁴; gauss-newton
#: 0.93× at 10³; bfgs 0.89× at 3,000, 0.88× at 5,000; levenberg-marquardt and lbfgs at 10³
#: 1.00–1.02×; 10-D Rosenbrock, newton on 500 starts 0.59×; 50-D on 100 starts 0.60×. Where the
#: largest array is above the bound, off lost: 2-D, bfgs at 10⁴ starts 1.14× (its 2×2 matrices,
#: 320 KB), lbfgs at 1,500 starts 1.03× and 5,000 1.15× (memories 240 KB and 800 KB); 10-D lbfgs
#: on 300 starts 1.015×; 50-D on 100 starts, bfgs 1.51×, lbfgs 1.04× — and gained elsewhere
#: (gauss-newton 0.91× at 10⁴ 2-D starts, bfgs 0.96× on 500 10-D starts), which the bound gives up.
NO_SPLIT_OPTIONS = {"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}
NO_SPLIT_ARRAY_MAX = (1 << 19) // 3


def _largest_array_bytes(tree) -> int:
    """Bytes of the largest array in a pytree of arrays or shapes (a loop's carried state, all
    starts), 0 for none. JAX's extended dtypes (an optax state's random keys) say their own size."""
    return max((int(np.prod(a.shape)) * int(a.dtype.itemsize) for a in jax.tree_util.tree_leaves(tree)),
               default=0)


def small_batch(batch: int, n: int) -> bool:
    """Whether ``batch`` starts of dimension ``n`` are a small batch (:data:`SMALL_BATCH_MAX`)."""
    return 0 < int(batch) * int(n) <= SMALL_BATCH_MAX

#: The compile-option key under which optbench lists XLA *backend* options: settings of XLA's CPU
#: compiler that live in the ``xla_backend_extra_options`` map of XLA's debug options, which XLA
#: reads from ``XLA_FLAGS`` (once per process) or from a program's compile options, but which
#: JAX's ``compiler_options`` cannot set (a map field). optbench merges them into its own programs'
#: compile options (:func:`_backend_options_hook`). The value is XLA_FLAGS' syntax, ``name`` or
#: ``name=value`` joined by commas.
BACKEND_OPTIONS_KEY = "xla_backend_extra_options"

#: Backend options of ``solve(..., fuse_loops=True)`` on the CPU: every while loop (the iteration
#: loop and the line-search, λ and CG loops inside it) is compiled as one function instead of a
#: sequence of kernels that XLA's runtime dispatches one by one. XLA does this by itself only for
#: loops that touch under 1 kB per trip (``xla_cpu_small_while_loop_byte_threshold``); at 10³
#: starts a step is a few dozen kernels of a few kilobytes each, whose dispatch (1–7 µs each),
#: not their arithmetic, sets the pace. Not the default: a loop compiled as one function runs on
#: one thread (large batches, whose kernels XLA splits across threads, lose), a loop that holds a
#: collective (a run sharded over devices) is never compiled so, and XLA emits the one function
#: with another code generator than the kernels, which rounds some operations differently, so the
#: results differ from the default compilation's in the last bits, and a sharded run would no
#: longer equal the one-device run bit for bit. See the README for the measurements. XLA's
#: multi-output fusion (``xla_cpu_use_multi_output_fusion``) made the same methods a further
#: 0.8–0.9× faster, but aborted the process inside XLA on a packed run's programs (a failed check
#: in its loop fusion emitter, jaxlib 0.10.2 and 0.11.2), so optbench does not offer it as a
#: switch of its own (see :data:`MULTI_OUTPUT_OPTION`).
FUSE_LOOPS_BACKEND = {"xla_cpu_small_while_loop_byte_threshold": str(1 << 40)}


#: XLA's CPU multi-output fusion (a backend option, in ``OPTBENCH_XLA_OPTIONS``): one kernel may
#: compute several of a step's results that otherwise each recompute their shared inputs. Not
#: optbench's default: measured on jax 0.12.1 (2-D Rosenbrock, 10³ / 10⁴ starts, without history)
#: it took bfgs to 0.76× / 0.73× the time, levenberg-marquardt 0.76× / 0.82×, lbfgs 0.89× / 0.85×,
#: gauss-newton 0.87× / 0.84×, but a run sharded over devices or processes then differs from the
#: one-device run in the last bits (three tests of that equality failed). The XLA of jaxlib 0.10.2 and
#: 0.11.2 aborts the process compiling the loops of a packed run (``pack=True``) with it, so that
#: combination is refused there (:func:`_check_multi_output`). XLA reads it by its presence alone
#: (``=false`` switches it on), so an entry set to false is left out (:func:`xla_options`).
MULTI_OUTPUT_OPTION = "xla_cpu_use_multi_output_fusion"
MULTI_OUTPUT_MIN_JAXLIB = (0, 12)


def _jaxlib_version() -> tuple:
    """(major, minor) of the installed jaxlib."""
    import jaxlib
    parts = []
    for p in str(getattr(jaxlib, "__version__", "0")).split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _check_multi_output(options) -> None:
    """A packed run's compile options (``options``, as :func:`xla_options` gives them): multi-output
    fusion there is a one-line error on a jaxlib whose XLA aborts the process compiling them."""
    backend = parse_backend_options((options or {}).get(BACKEND_OPTIONS_KEY, ""))
    if MULTI_OUTPUT_OPTION in backend and _jaxlib_version() < MULTI_OUTPUT_MIN_JAXLIB:
        raise OptbenchError(f"pack=True with {MULTI_OUTPUT_OPTION} (from {XLA_OPTIONS_ENV}) needs jaxlib "
                            f"{'.'.join(map(str, MULTI_OUTPUT_MIN_JAXLIB))} or later: the XLA of this one "
                            "aborts the process compiling a packed run's loops with it")


#: the environment variable of XLA options added to every optbench compile (and the perf floors')
XLA_OPTIONS_ENV = "OPTBENCH_XLA_OPTIONS"


def user_xla_options() -> Dict[str, Any]:
    """The XLA compile options given in ``OPTBENCH_XLA_OPTIONS`` (a JSON object of option names
    and values, e.g. ``{"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}``), or {}."""
    text = os.environ.get(XLA_OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise OptbenchError(f"{XLA_OPTIONS_ENV} is not valid JSON ({e.msg}); give an object such as "
                            '\'{"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}\'') from None
    if not isinstance(opts, dict) or not all(isinstance(k, str) and isinstance(v, (bool, int, float, str))
                                             for k, v in opts.items()):
        raise OptbenchError(f"{XLA_OPTIONS_ENV} must be a JSON object of option names and boolean, number "
                            "or string values")
    if BACKEND_OPTIONS_KEY in opts:
        if not isinstance(opts[BACKEND_OPTIONS_KEY], str):
            raise OptbenchError(f"{XLA_OPTIONS_ENV}: {BACKEND_OPTIONS_KEY} must be a string of name or "
                                "name=value entries joined by commas")
        if _backend_options_hook() is None:
            raise OptbenchError(f"{XLA_OPTIONS_ENV}: this JAX gives optbench no way to pass "
                                f"{BACKEND_OPTIONS_KEY} to one program; set them in XLA_FLAGS instead")
    return opts


def _xla_settings() -> tuple:
    """The environment's say in how optbench compiles (``OPTBENCH_XLA_OPTIONS``,
    ``OPTBENCH_XLA_DEFAULTS``), part of a compiled program's key: a program compiled before either
    changed in this process is not reused after."""
    return os.environ.get(XLA_OPTIONS_ENV, "").strip(), _env_flag("OPTBENCH_XLA_DEFAULTS")


def parse_backend_options(text: str) -> Dict[str, str]:
    """``"a,b=1"`` -> ``{"a": "", "b": "1"}`` (XLA_FLAGS' syntax for ``xla_backend_extra_options``)."""
    out = {}
    for item in str(text).split(","):
        item = item.strip()
        if item:
            name, _, value = item.partition("=")
            out[name.strip()] = value.strip()
    return out


def format_backend_options(opts: Dict[str, str]) -> str:
    """The inverse of :func:`parse_backend_options`."""
    return ",".join(f"{k}={v}" if v != "" else k for k, v in opts.items())


def xla_options(platform_name: str, n: int = 0, data_size: int = 0, fuse_loops: bool = False,
                own: bool = True, batch: int = 0, array_bytes: int = 0):
    """The XLA options optbench compiles a problem of dimension ``n`` whose data holds
    ``data_size`` numbers with on this platform, or None for XLA's defaults. On the CPU: optbench's
    own (:data:`CPU_COMPILER_OPTIONS`, and :data:`SMALL_PROBLEM_OPTIONS` for small problems, with
    :data:`SMALL_BATCH_OPTIONS` too for a small batch of ``batch`` starts, 0 for none said, and
    :data:`NO_SPLIT_OPTIONS` where the largest array the program's loop carries, ``array_bytes``
    (0 for none said), is at most :data:`NO_SPLIT_ARRAY_MAX` bytes),
    unless ``OPTBENCH_XLA_DEFAULTS=1`` or this jaxlib turned out not to know them; on any
    platform, then, the options in ``OPTBENCH_XLA_OPTIONS``
    (:func:`user_xla_options`), which win over optbench's (backend options merged name by name; a
    backend option whose value is ``false`` is left out).
    ``fuse_loops``: on the CPU, also :data:`FUSE_LOOPS_BACKEND` (listed under
    :data:`BACKEND_OPTIONS_KEY`), whatever the other settings. ``own=False``: without optbench's
    own compile options (what :func:`compile_lowered` falls back to)."""
    options = {}
    backend = {}
    if own and platform_name == "cpu" and _OPTIONS_OK["cpu"] and not _env_flag("OPTBENCH_XLA_DEFAULTS"):
        options.update(CPU_COMPILER_OPTIONS)
        if n <= SMALL_DIM_MAX and data_size <= SMALL_DATA_MAX:
            options.update(SMALL_PROBLEM_OPTIONS)
            if _OPTIONS_OK["small_batch"] and small_batch(batch, n):
                options.update(SMALL_BATCH_OPTIONS)
            if 0 < array_bytes <= NO_SPLIT_ARRAY_MAX:
                options.update(NO_SPLIT_OPTIONS)
    if fuse_loops and platform_name == "cpu":
        if _backend_options_hook() is None:
            raise OptbenchError("fuse_loops=True needs a JAX whose compile options optbench can extend "
                                "(jax._src.compiler.get_compile_options); this one is not")
        backend.update(FUSE_LOOPS_BACKEND)
    user = user_xla_options()
    backend.update(parse_backend_options(user.pop(BACKEND_OPTIONS_KEY, "")))
    # an entry set to false is left out: XLA reads some (MULTI_OUTPUT_OPTION) by their presence
    # alone, so passing "false" would switch them on
    backend = {k: v for k, v in backend.items() if v.strip().lower() != "false"}
    options.update(user)
    if backend:
        options[BACKEND_OPTIONS_KEY] = format_backend_options(backend)
    return options or None


# ---- backend options for one program -------------------------------------------------------
# JAX builds a program's compile options in jax._src.compiler.get_compile_options and hands them
# to XLA as a CompileOptionsProto; optbench wraps that function so that, while this thread
# compiles one of optbench's programs, the options also carry the backend map entries. The entries
# are merged in the proto's own encoding (field numbers are fixed by XLA's .proto files:
# CompileOptionsProto.executable_build_options = 3, ExecutableBuildOptionsProto.debug_options = 3,
# DebugOptions.xla_backend_extra_options = 500, a map entry's key = 1 and value = 2), which
# protobuf merges into the message being parsed. The wrapper is installed on first use only (a
# run without backend options never touches JAX's function); where this JAX lacks any piece,
# asking for backend options is a one-line error rather than a silent compile without them.
_BACKEND_TLS = threading.local()
_BACKEND_HOOK: Dict[str, Any] = {}


def _proto_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    def varint(v):
        out = bytearray()
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def backend_options_proto(opts: Dict[str, str]) -> bytes:
    """The CompileOptionsProto fragment that adds ``opts`` to xla_backend_extra_options."""
    entries = b"".join(_proto_field(500, _proto_field(1, str(k).encode()) + _proto_field(2, str(v).encode()))
                       for k, v in opts.items())
    return _proto_field(3, _proto_field(3, entries))


def _backend_options_hook():
    """Install (once) the wrapper of JAX's get_compile_options; the wrapper, or None where this
    JAX has no such function or its compile options do not round-trip through their proto."""
    if "hook" in _BACKEND_HOOK:
        return _BACKEND_HOOK["hook"]
    hook = None
    try:
        from jax._src import compiler as jax_compiler
        from jax._src.lib import xla_client as xc
        original = jax_compiler.get_compile_options
        if getattr(original, "_optbench_backend_options", False):
            hook = original
        else:
            probe = xc.CompileOptions()
            frag = backend_options_proto({"optbench_probe": "1"})
            merged = xc.CompileOptions.ParseFromString(probe.SerializeAsString() + frag)
            if b"optbench_probe" not in merged.SerializeAsString():
                raise ValueError("backend options did not survive the round trip")

            def get_compile_options(*args, **kwargs):
                opts = original(*args, **kwargs)
                extra = getattr(_BACKEND_TLS, "options", None)
                if extra:
                    opts = xc.CompileOptions.ParseFromString(opts.SerializeAsString() + backend_options_proto(extra))
                return opts

            get_compile_options._optbench_backend_options = True
            get_compile_options.__wrapped__ = original
            jax_compiler.get_compile_options = get_compile_options
            hook = get_compile_options
    except Exception:
        hook = None
    _BACKEND_HOOK["hook"] = hook
    return hook


class _backend_options:
    """While compiling in this thread, add ``text`` (XLA_FLAGS' syntax) to the backend options."""

    def __init__(self, text):
        self.opts = parse_backend_options(text) if text else {}

    def __enter__(self):
        self.prev = getattr(_BACKEND_TLS, "options", None)
        _BACKEND_TLS.options = self.opts or None
        return self

    def __exit__(self, *exc):
        _BACKEND_TLS.options = self.prev
        return False


def compile_lowered(lowered, dev, n: int = 0, data_size: int = 0, fuse_loops: bool = False, batch: int = 0,
                    fresh: Optional[list] = None, array_bytes: int = 0):
    """``lowered.compile()`` with :func:`xla_options` for ``batch`` starts (0: not said) of a
    problem of dimension ``n`` whose data holds ``data_size`` numbers, the largest array the
    program's loop carries ``array_bytes`` long (0: not said) (``fuse_loops``: see there;
    where this jaxlib does not know the small-batch option, without it from then on, and where it
    does not know optbench's other options, without any of optbench's own from then on; options
    from ``OPTBENCH_XLA_OPTIONS`` that it does not know are a one-line error). ``fresh``: a list,
    for a program the program store will keep: compiled by XLA past JAX's persistent cache
    (:func:`_past_jax_cache`), and True appended to the list if JAX's cache served it all the same
    (then it is not stored), else False."""
    hits = _jax_cache_hits()

    def compile_with(options):
        options = dict(options or {})
        with _backend_options(options.pop(BACKEND_OPTIONS_KEY, None)), _past_jax_cache(fresh is not None):
            exe = lowered.compile(compiler_options=options) if options else lowered.compile()
        if fresh is not None:
            fresh.append(_jax_cache_hits() != hits)
        return exe

    options = xla_options(dev.platform, n, data_size, fuse_loops, batch=batch, array_bytes=array_bytes)
    if options is None:
        return compile_with(None)
    try:
        return compile_with(options)
    except Exception as e:
        if "option" not in str(e).lower():
            raise
    if dev.platform == "cpu" and any(k in options for k in SMALL_BATCH_OPTIONS):
        # an XLA without the older emitters' switch: small batches compile as large ones do
        try:
            exe = compile_with(xla_options(dev.platform, n, data_size, fuse_loops, array_bytes=array_bytes))
            _OPTIONS_OK["small_batch"] = False
            return exe
        except Exception as e:
            if "option" not in str(e).lower():
                raise
    # an XLA that does not know some option: optbench's own are dropped (remembered; the program
    # compiles as XLA would), the user's are theirs to fix
    try:
        exe = compile_with(xla_options(dev.platform, n, data_size, fuse_loops, own=False))
    except Exception as e:
        if "option" not in str(e).lower():
            raise
        raise OptbenchError(f"XLA refused the options in {XLA_OPTIONS_ENV} ({', '.join(sorted(user_xla_options()))}): "
                            f"{first_line(e)}") from None
    if dev.platform == "cpu":
        _OPTIONS_OK["cpu"] = False
    return exe


def _cast_data(data, dtype):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a), data)


def _key(obj):
    """Cache key: the spec string for registry-built objects (deterministic factories), with the
    registration they came from (``register(..., overwrite=True)`` makes a new one, so a replaced
    problem or optimizer is compiled afresh); else identity, and for a user's :class:`Problem`
    (a mutable dataclass) also the functions a program is traced from, so ``p.f = other`` after a
    solve compiles again instead of running the old f (the entry keeps them alive, see
    :func:`_alive`, so their ids are not reused)."""
    if getattr(obj, "_from_registry", False):
        return ("spec", obj.spec, obj.name, getattr(obj, "_registration", None))
    return ("id", id(obj)) + tuple(id(v) for v in _alive(obj)) + (tuple(getattr(obj, "tags", ())),)


def _alive(obj) -> tuple:
    """The objects a user's problem traces its programs from (see :func:`_key`)."""
    return tuple(getattr(obj, a) for a in ("f", "residuals") if hasattr(obj, a))


def compile_count() -> int:
    """How many executables :func:`solve` has compiled in this process (for cache tests)."""
    return _STATS["compiles"]


#: environment variable the command line reads for ``--cpu-threads``
CPU_THREADS_ENV = "OPTBENCH_CPU_THREADS"
#: the most threads ``--cpu-threads`` accepts
CPU_THREADS_MAX = 4096
#: what XLA's CPU client reads, once, when it starts: the size of the thread pool its compiled
#: programs run their kernels on (default: the CPUs this process may run on)
_XLA_THREADS_ENV = ("PJRT_NPROC", "NPROC")


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:   # a JAX without the query: assume started, so nothing is changed silently
        return True


def _default_cpu_threads() -> int:
    """XLA's default pool size: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """The number of threads XLA's CPU client runs compiled programs on in this process: the
    value :func:`set_cpu_threads` (``--cpu-threads``) gave it, else the CPUs this process may
    use (XLA's default)."""
    for name in _XLA_THREADS_ENV:
        v = os.environ.get(name, "")
        if v.strip().isdigit() and int(v) > 0:
            return int(v)
    return _default_cpu_threads()


def set_cpu_threads(n, source: str = "--cpu-threads") -> int:
    """Run JAX's CPU programs on ``n`` threads (``None``, 0 or "auto": XLA's default, one per
    CPU). Must be called before JAX starts its CPU backend (the first array or device query);
    a one-line :class:`OptbenchError` otherwise, unless the backend already runs on ``n``.

    Why a knob: XLA splits a compiled loop's kernels over its thread pool, handing independent
    kernels and halves of compute-heavy ones to other threads. For the many small kernels of a
    benchmark loop that hand-off can cost more than it saves; on a 2-CPU VM, one thread ran
    2-D Newton on 10⁴ starts in 0.87× the time and the hand-written kernel in 0.69×, but bfgs,
    lbfgs and levenberg-marquardt in 1.03–1.12× (README, command-line notes). Measure both.
    ``source`` names where ``n`` came from in an error (the command line passes the environment
    variable's name when the value is ``$OPTBENCH_CPU_THREADS``'s). Returns the thread count now
    in effect."""
    if n in (None, "", "auto", 0, "0"):
        want = None
    else:
        try:
            want = int(str(n).strip())
        except ValueError:
            raise OptbenchError(f"{source} must be an integer from 1 to {CPU_THREADS_MAX}, or 0/auto, "
                                f"got {n!r}") from None
        if want < 1 or want > CPU_THREADS_MAX:
            # each thread reserves its stack: 10⁸ of them exhausted 24 GiB before XLA said anything
            raise OptbenchError(f"{source} must be an integer from 1 to {CPU_THREADS_MAX}, or 0/auto, got {n!r}")
    if _backend_started():
        # None (not asked) leaves the running pool be; an explicit auto/0 asks for XLA's default
        target = _default_cpu_threads() if want is None and n is not None else want
        if target is not None and target != cpu_threads():
            label = f"auto ({target})" if want is None else str(want)
            raise OptbenchError(f"cannot set the CPU threads to {label}: JAX's CPU backend already runs on "
                                f"{cpu_threads()} (set it before the first JAX computation)")
        return cpu_threads()
    for name in _XLA_THREADS_ENV:
        os.environ.pop(name, None)
    if want is not None:
        os.environ[_XLA_THREADS_ENV[0]] = str(want)
    return cpu_threads()


def resolve_devices(device: Optional[str]) -> List[Any]:
    """The JAX devices a run uses: every device of a kind for ``cpu``/``gpu`` (across all
    processes after :func:`init_distributed`), one device for ``cpu:N``/``gpu:N``, JAX's default
    backend's devices for None; a one-line error when there are none."""
    if device in (None, "", "default"):
        return list(jax.devices())
    text = str(device).lower()
    kind, colon, idx = text.partition(":")
    # N in ASCII digits only: str.isdigit() also passes '²' (int() then fails: an internal error)
    # and '٣'; and 'cpu:' with no N is a typo, not every CPU device
    if kind not in ("cpu", "gpu") or (colon and not (idx.isascii() and idx.isdigit())):
        raise OptbenchError(f"unknown device {device!r}: use cpu, gpu, cpu:N or gpu:N")
    try:
        devs = list(jax.devices(kind))
    except RuntimeError:
        devs = []
    if not devs:
        other = "gpu" if kind == "cpu" else "cpu"   # JAX_PLATFORMS may hide the CPU too
        raise OptbenchError(f"no {kind} device is visible to JAX on this machine; run with --device {other}")
    if idx:
        if jax.process_count() > 1:
            # one device of a multi-process run: the other processes hold no share of the starts
            # and the run fails inside JAX (an error in one process, a collective that times out
            # in the others)
            raise OptbenchError(f"device {device!r} is one device, but this run spans {jax.process_count()} "
                                f"processes, each of which computes a share of the starts: use --device {kind}")
        i = int(idx)
        if i >= len(devs):
            raise OptbenchError(f"device {device!r} does not exist: {len(devs)} {kind} device(s) visible")
        return [devs[i]]
    return devs


def resolve_device(device: Optional[str]):
    """The first JAX device a run on ``device`` uses (see :func:`resolve_devices`)."""
    return resolve_devices(device)[0]


def default_cache_dir() -> Optional[str]:
    """``$OPTBENCH_CACHE_DIR`` (None when it says off/0/none), else ``$XDG_CACHE_HOME/optbench/jax``
    or ``~/.cache/optbench/jax``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none", "false") else env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "optbench", "jax")


def _env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true, yes, on (any case) mean on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def enable_compilation_cache(path: Optional[str] = None) -> Optional[str]:
    """Turn on JAX's persistent compilation cache at ``path`` (default :func:`default_cache_dir`)
    so that a later process compiling the same program loads it instead of running XLA. Called
    by :func:`solve` on first use; does nothing if the user configured a cache directory
    already or the environment turns it off. Returns the directory in use (or None).

    Compiles shorter than :data:`CACHE_MIN_COMPILE_S` are not stored (JAX's default threshold,
    1 s, would skip most of optbench's executables). The cache is keyed by JAX/XLA version,
    program and devices, so a stale entry is never used; it is not size-capped: delete the
    directory to clear it.
    """
    if _CACHE["configured"] and path is None:
        return _CACHE["dir"]
    _CACHE["configured"] = True
    current = jax.config.jax_compilation_cache_dir
    if current and path is None:
        _CACHE["dir"] = current
        return current
    path = path or default_cache_dir()
    if path:
        try:   # a file in the way, or a place that cannot be made: say so in one line, run uncached
            os.makedirs(path, exist_ok=True)
            usable = os.access(path, os.W_OK)
        except OSError:
            usable = False
        if not usable:
            print(f"optbench: warning: compilation cache directory {path} is not a writable directory; "
                  f"running without the persistent cache", file=sys.stderr)
            path = None
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    _CACHE["dir"] = path
    return path


# ---- optbench's store of compiled programs -------------------------------------------------
#: The environment variable that turns the program store off (0, off, no, false, none).
PROGRAM_CACHE_ENV = "OPTBENCH_PROGRAM_CACHE"
#: the store's subdirectory of the compilation cache directory, and its file format
PROGRAM_CACHE_SUBDIR = "optbench-programs"
PROGRAM_CACHE_FORMAT = 1
_PROGRAMS: Dict[str, Any] = {"dir": None, "code": None}
_OWN_MODULES = ("optimizers", "problems", "bench")


_HITS = threading.local()
_HITS_LISTENER = {"on": False}
_JAX_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def _jax_cache_hits() -> int:
    """How many executables JAX's persistent cache has served to this thread (counted once the
    program store is on)."""
    return getattr(_HITS, "n", 0)


def _listen_for_jax_cache_hits() -> None:
    """Count JAX's persistent-cache hits per thread (JAX reports each in the compiling thread)."""
    with _KEY_LOCKS_GUARD:
        if _HITS_LISTENER["on"]:
            return

        def listener(event, **_):
            if event == _JAX_CACHE_HIT_EVENT:
                _HITS.n = getattr(_HITS, "n", 0) + 1
        jax.monitoring.register_event_listener(listener)
        _HITS_LISTENER["on"] = True


_PAST = threading.local()
_PAST_HOOK = {"installed": None}


def _past_jax_cache_hook() -> bool:
    """Install (once) a wrapper of JAX's ``compilation_cache.is_cache_used`` that answers False in
    a thread compiling inside :func:`_past_jax_cache`: JAX then neither reads nor writes its
    persistent cache for that compile (it decides once per process otherwise). False where this
    JAX has no such function (the program store then stays off)."""
    with _KEY_LOCKS_GUARD:
        if _PAST_HOOK["installed"] is None:
            try:
                from jax._src import compilation_cache as jax_cc
                original = jax_cc.is_cache_used
                if not getattr(original, "_optbench_past", False):
                    def is_cache_used(backend):
                        if getattr(_PAST, "on", False):
                            return False
                        return original(backend)
                    is_cache_used._optbench_past = True
                    is_cache_used.__wrapped__ = original
                    jax_cc.is_cache_used = is_cache_used
                _PAST_HOOK["installed"] = True
            except (ImportError, AttributeError):
                _PAST_HOOK["installed"] = False
        return bool(_PAST_HOOK["installed"])


class _past_jax_cache:
    """While ``on``: this thread's compiles go past JAX's persistent cache (:func:`_past_jax_cache_hook`)."""

    def __init__(self, on: bool):
        self.on = on and bool(_PAST_HOOK["installed"])

    def __enter__(self):
        if self.on:
            self.saved, _PAST.on = getattr(_PAST, "on", False), True

    def __exit__(self, *exc):
        if self.on:
            _PAST.on = self.saved


def enable_program_cache(on: bool = True) -> Optional[str]:
    """Keep the compiled programs of :func:`solve` on disk and load them in later processes,
    skipping the tracing and lowering that a load from JAX's persistent cache still pays (about
    0.25–0.35 s a cell of 2-D problems on this 2-core VM, against 0.03 s for the load). ``optbench
    run`` turns it on; the Python API leaves it off unless this is called. A program is stored
    under a key of everything it is compiled from: the problem's and the optimizer's spec, the
    shapes, dtype and settings of the run, the device, the XLA options, the versions of Python,
    jax, jaxlib, optax and numpy, and a hash of optbench's own source and data files — so an
    edited file, an upgrade or another option compiles afresh. Only programs built from
    optbench's own registered problems and optimizers on one CPU device, without ``pack``, in a
    process that loaded no plug-in, are stored (a plug-in's code is not in the hash, and it may
    change optbench's own in memory). Code changed in memory (a monkeypatched
    function) is not in the key either: turn the store off for that (``OPTBENCH_PROGRAM_CACHE=off``,
    or ``enable_program_cache(False)``). The store lives in ``optbench-programs/`` inside the
    compilation cache directory (:func:`enable_compilation_cache`); its files are Python pickles,
    loaded only from that directory, so it must be writable by you alone, as JAX's cache must.
    Returns the directory in use, or None (off, or no cache directory)."""
    _PROGRAMS["dir"] = None
    if not on or os.environ.get(PROGRAM_CACHE_ENV, "").strip().lower() in ("0", "off", "no", "false", "none"):
        return None
    base = enable_compilation_cache()
    if not base:
        return None
    try:
        import importlib
        importlib.import_module("jax.experimental.serialize_executable")   # a JAX without it: no store
        _listen_for_jax_cache_hits()
        if not _past_jax_cache_hook():
            return None
        path = os.path.join(base, PROGRAM_CACHE_SUBDIR)
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            return None
    except (ImportError, AttributeError, OSError):
        return None
    _PROGRAMS["dir"] = path
    return path


def _code_fingerprint() -> str:
    """sha256 of optbench's own source and data files (the modules a program is traced from)."""
    if _PROGRAMS["code"] is None:
        import hashlib
        import optbench_core
        h = hashlib.sha256()
        files = [("optbench_core.py", os.path.abspath(optbench_core.__file__))]
        for name in _OWN_MODULES:
            root = os.path.dirname(os.path.abspath(sys.modules[name].__file__))
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                files += [(os.path.relpath(os.path.join(dirpath, f), os.path.dirname(root)), os.path.join(dirpath, f))
                          for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
        for rel, path in files:
            h.update(rel.encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
            h.update(b"\0")
        _PROGRAMS["code"] = h.hexdigest()
    return _PROGRAMS["code"]


def registered_factory(obj, registry):
    """The factory that built ``obj`` (a problem or an optimizer) through ``registry``'s
    registration now in force, or None: not built by the registry, or registered again since."""
    if not getattr(obj, "_from_registry", False):
        return None
    reg = registry._REGISTRY
    name = obj.name
    if getattr(obj, "_registration", None) != reg.registration(name):
        return None
    return reg._factories.get(name) or reg._prefixes.get(name.partition(":")[0])


def _own_registered(obj, registry) -> bool:
    """Whether ``obj`` was built by the registry from a factory of optbench's own modules, by the
    registration now in force (not a plug-in's, nor one replaced since)."""
    factory = registered_factory(obj, registry)
    module = getattr(factory, "__module__", "") or ""
    return factory is not None and module.partition(".")[0] in _OWN_MODULES


def _host_cpu() -> List[str]:
    """The host's processor (architecture, model, instruction-set flags): XLA compiles CPU code
    for the machine it runs on, so a store shared between machines keeps them apart. Read once
    per process."""
    if "host" not in _PROGRAMS:
        _PROGRAMS["host"] = _read_host_cpu()
    return _PROGRAMS["host"]


def cpuinfo() -> Dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none), read once per
    process: the program store's key and the runs' provenance (``cpu_model``) use them."""
    if "cpuinfo" not in _PROGRAMS:
        fields: Dict[str, str] = {}
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if not line.strip():
                        if fields:
                            break   # the first processor's block is enough
                        continue
                    key, _, value = line.partition(":")
                    fields.setdefault(key.strip(), value.strip())
        except OSError:
            pass
        _PROGRAMS["cpuinfo"] = fields
    return _PROGRAMS["cpuinfo"]


def _read_host_cpu() -> List[str]:
    import platform as _platform
    return [_platform.machine(), _platform.processor()] + [
        v for k, v in cpuinfo().items() if k in ("model name", "flags", "Features", "CPU part")]


def _trace_config() -> List[Any]:
    """JAX settings that change what a function traces to (besides x64, keyed apart)."""
    names = ("jax_default_matmul_precision", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion",
             "jax_debug_nans", "jax_debug_infs", "jax_default_prng_impl", "jax_enable_checks")
    return [str(getattr(jax.config, name, None)) for name in names]


def program_store_in_use() -> bool:
    """Whether this process keeps and loads programs in the program store: it is on
    (:func:`enable_program_cache`) and no plug-in is loaded (a plug-in may change any code in
    memory, not only register its own, and the store's key cannot see that)."""
    from . import plugins
    return _PROGRAMS["dir"] is not None and not plugins._LOADED


def _data_size(data) -> int:
    """How many numbers a problem's data holds (what :func:`xla_options` reads)."""
    return sum(int(np.size(a)) for a in jax.tree_util.tree_leaves(data))


def _program_key(problem, optimizer, devs, b, bp, n, dtype, chunk, tiling, history, data, fuse_loops) -> Optional[str]:
    """The store's file name for this program, or None where the store does not apply."""
    if not program_store_in_use() or len(devs) != 1 or devs[0].platform != "cpu" or tiling[0] > 1 \
            or jax.process_count() != 1:
        return None
    from optimizers import registry as opt_registry
    from problems import registry as prob_registry
    if not (_own_registered(problem, prob_registry) and _own_registered(optimizer, opt_registry)):
        return None
    import hashlib
    import platform as _platform
    import jaxlib
    try:
        import optax
        optax_version = optax.__version__
    except ImportError:
        optax_version = None
    dev = devs[0]
    leaves = jax.tree_util.tree_leaves(data)
    parts = {"format": PROGRAM_CACHE_FORMAT, "code": _code_fingerprint(),
             "versions": [_platform.python_version(), jax.__version__, jaxlib.__version__, optax_version,
                          np.__version__],
             "x64": bool(jax.config.jax_enable_x64), "config": _trace_config(),
             "device": [dev.platform, dev.device_kind, dev.id, getattr(dev.client, "platform_version", None)],
             "host": _host_cpu(), "cpu_threads": cpu_threads(),
             "problem": [problem.spec, problem.name], "optimizer": [optimizer.spec, optimizer.name],
             "shape": [int(b), int(bp), int(n), str(dtype), int(chunk), list(tiling), bool(history)],
             "data": [str(jax.tree_util.tree_structure(data)), [[list(np.shape(a)), str(np.asarray(a).dtype)]
                                                                 for a in leaves]],
             "fuse_loops": bool(fuse_loops),
             "options": repr(xla_options(dev.platform, n, _data_size(data), fuse_loops, batch=b)),
             # the carried arrays' sizes, which decide NO_SPLIT_OPTIONS, follow from the fields above
             "no_split": [repr(NO_SPLIT_OPTIONS), NO_SPLIT_ARRAY_MAX],
             "options_ok": sorted(_OPTIONS_OK.items()), "env": list(_xla_settings())}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest() + ".pkl"


def _store_program(pkey: Optional[str], entry) -> None:
    """Write a compiled entry's executables to the store (best effort: a failure stores nothing)."""
    if pkey is None or _PROGRAMS["dir"] is None or not entry[3].get("storable", False):
        # only programs XLA compiled here: on jaxlib 0.10.2 (CPU) an executable that JAX's
        # persistent cache served serialised without its kernels, and the copy loaded from it
        # failed to run ("Function ... not found")
        return
    import pickle
    import zlib
    tmp = None
    try:
        from jax.experimental import serialize_executable
        exes = [None if e is None else serialize_executable.serialize(e) for e in entry[0]]
        # zlib level 1: a 2-D program's 320 kB become 90 kB for 3 ms here (1 ms to read back)
        lapack = any(e is not None and "lapack" in e.as_text() for e in entry[0])   # see _ready_for_loads
        blob = zlib.compress(pickle.dumps({"format": PROGRAM_CACHE_FORMAT, "exes": exes, "hist": entry[3]["hist"],
                                           "lapack": lapack}), 1)
        path = os.path.join(_PROGRAMS["dir"], pkey)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except Exception:   # noqa: BLE001  (a program XLA cannot serialise, a full disk: just not stored)
        if tmp is not None and os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def _ready_for_loads() -> None:
    """What lowering a program sets up in the process and a loaded program relies on: jaxlib
    points its LAPACK kernels (eigh, solve, …) at their library when it first lowers one, so a
    loaded program that calls one before anything lowered did crashed the process (a quadratic's
    newton in a warm `optbench run suites/quick.toml`). Lowering one such call does it (once;
    0.15–0.2 s here, most of it jaxlib loading LAPACK), before loading a program that calls one."""
    if not _PROGRAMS.get("ready"):
        jax.jit(jnp.linalg.eigh).lower(jax.ShapeDtypeStruct((2, 2), jnp.float32))
        _PROGRAMS["ready"] = True


def _load_program(pkey: Optional[str], problem, optimizer, dev, chunk_lanes, tiling):
    """The entry stored under ``pkey``, loaded onto ``dev``, or None (absent, unreadable, or
    written by another format)."""
    if pkey is None or _PROGRAMS["dir"] is None:
        return None
    path = os.path.join(_PROGRAMS["dir"], pkey)
    if not os.path.isfile(path):
        return None
    import pickle
    import zlib
    try:
        from jax.experimental import serialize_executable
        with open(path, "rb") as fh:
            stored = pickle.loads(zlib.decompress(fh.read()))
        if stored.get("format") != PROGRAM_CACHE_FORMAT:
            return None
        if stored.get("lapack", True):
            _ready_for_loads()
        exes = tuple(None if e is None else serialize_executable.deserialize_and_load(
            *e, backend=dev.client, execution_devices=[dev]) for e in stored["exes"])
        info = {"hist": stored["hist"], "chunk_lanes": chunk_lanes, "tiling": tiling, "alive": _alive(problem)}
    except Exception:   # noqa: BLE001  (a damaged or foreign file: compile instead)
        return None
    with _KEY_LOCKS_GUARD:
        _STATS["loads"] += 1
    return exes, problem, optimizer, info


def program_load_count() -> int:
    """How many programs :func:`solve` has loaded from the program store in this process."""
    return _STATS["loads"]


def disable_compilation_cache() -> bool:
    """Keep :func:`solve` from turning the persistent cache on in this process (``optbench perf``
    measures cold compiles). Returns False if a cache was already configured (it stays on)."""
    if _CACHE["configured"] and _CACHE["dir"]:
        return False
    _CACHE["configured"], _CACHE["dir"] = True, None
    return True


#: seconds a process waits to join a multi-process run (JAX's default), and its variable
INIT_TIMEOUT_S = 300
INIT_TIMEOUT_ENV = "OPTBENCH_INIT_TIMEOUT"


def _reach_coordinator(addr: str, wait_s: int) -> None:
    """Before a process other than 0 joins: connect to the coordinator's port until it answers
    or ``wait_s`` passes, then a one-line error. JAX's own join waited its full timeout in
    silence and then aborted the process from C++ (exit 134, a stack trace)."""
    import socket
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, max(0.1, wait_s))):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise OptbenchError(f"cannot reach the coordinator {addr} ({exc.strerror or exc}) within {wait_s} s: "
                                    f"is process 0 running there? ({INIT_TIMEOUT_ENV} sets the wait)") from None
            time.sleep(0.2)


def init_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                     process_id: Optional[int] = None) -> None:
    """Join a multi-host run (``jax.distributed.initialize``); call before anything else uses JAX.

    Arguments default to the environment: ``OPTBENCH_COORDINATOR`` (host:port of process 0),
    ``OPTBENCH_NUM_PROCESSES``, ``OPTBENCH_PROCESS_ID``; with none of them set, JAX's own cluster
    detection (SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``) decides. Afterwards
    ``jax.devices()`` lists every process's devices, :func:`solve` shards the starts over all
    of them, and every process receives the whole result (so process 0 alone should write).
    Once joined, a second call does nothing (``optbench run`` joins again when the environment
    names the run; JAX refused a second join with "should only be called once").
    """
    if jax.distributed.is_initialized():
        return
    env = os.environ
    addr = coordinator_address or env.get("OPTBENCH_COORDINATOR")
    nproc = num_processes if num_processes is not None else env.get("OPTBENCH_NUM_PROCESSES")
    pid = process_id if process_id is not None else env.get("OPTBENCH_PROCESS_ID")
    if addr is not None:
        host, sep, port = str(addr).rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise OptbenchError(f"OPTBENCH_COORDINATOR must be host:port of process 0 (e.g. node0:1234), got {addr!r}")
    for name, value in (("OPTBENCH_NUM_PROCESSES", nproc), ("OPTBENCH_PROCESS_ID", pid)):
        if value is not None and not str(value).strip().isdigit():
            raise OptbenchError(f"{name} must be a non-negative integer, got {value!r}")
    if nproc is not None and int(nproc) < 1:
        raise OptbenchError(f"OPTBENCH_NUM_PROCESSES must be at least 1, got {nproc!r}")
    if nproc is not None and pid is not None and int(pid) >= int(nproc):
        raise OptbenchError(f"OPTBENCH_PROCESS_ID must be below OPTBENCH_NUM_PROCESSES={int(nproc)} "
                            f"(processes are numbered 0 to {int(nproc) - 1}), got {pid!r}")
    wait = init_timeout_s()
    if addr is not None and pid is not None and int(pid) != 0:
        _reach_coordinator(addr, wait)
    nproc = None if nproc is None else int(nproc)
    pid = None if pid is None else int(pid)
    t0 = time.monotonic()
    try:
        with _join_errors_raise():
            jax.distributed.initialize(coordinator_address=addr, num_processes=nproc, process_id=pid,
                                       initialization_timeout=wait)
    except Exception as exc:   # noqa: BLE001 — JAX's and the coordination service's errors, in one line
        _forget_failed_join()
        raise OptbenchError(_join_failure(exc, addr, nproc, pid, wait, time.monotonic() - t0)) from None


def init_timeout_s() -> int:
    """Seconds a process waits to join a multi-process run, and then for the others to say what
    they run: ``OPTBENCH_INIT_TIMEOUT`` (default :data:`INIT_TIMEOUT_S`); one line if it is not a
    whole number of seconds >= 1."""
    wait = os.environ.get(INIT_TIMEOUT_ENV, "").strip() or str(INIT_TIMEOUT_S)
    if not wait.isdigit() or int(wait) < 1:
        raise OptbenchError(f"{INIT_TIMEOUT_ENV} must be a whole number of seconds >= 1, got {wait!r}")
    return int(wait)


def _join_failure(exc, addr, nproc, pid, wait, took) -> str:
    """The one line for a join that failed after ``took`` seconds of a ``wait``-second timeout.

    jaxlib 0.10.2 reports the coordination service's reason only to the error callback, which
    cannot receive it (the exception then reads ``std::bad_cast``), so the line says what the
    failure's timing shows: a join that ran out its wait (a process missing, or started with
    other settings) or one refused early (the coordinator already has a process with that id)."""
    msg = first_line(exc)
    said = "" if "bad_cast" in msg else f" ({type(exc).__name__}: {msg})"
    where = f" at {addr}" if addr else ""
    if nproc is None or pid is None or not isinstance(exc, RuntimeError):   # JAX refused the settings
        return f"cannot join the distributed run{where} ({type(exc).__name__}: {msg})"
    if took >= 0.9 * wait:
        return (f"cannot join the distributed run: not all {nproc} processes joined the coordinator{where} within "
                f"{wait} s{said}: start OPTBENCH_PROCESS_ID 0 to {nproc - 1} once each, all with "
                f"OPTBENCH_NUM_PROCESSES={nproc} and the same OPTBENCH_COORDINATOR ({INIT_TIMEOUT_ENV} sets the wait)")
    return (f"cannot join the distributed run: the coordinator{where} turned away process {pid} of {nproc}{said}: "
            f"is another process running as OPTBENCH_PROCESS_ID={pid}?")


def _coordination_lost(*status) -> None:
    """The distributed client's error callback: one line and exit 1 (JAX's default callback aborts
    the process with a C++ stack trace). On jaxlib 0.10.2 a failed join never reaches it (the
    reason cannot be handed to Python; the join raises instead, see :func:`_join_errors_raise`)."""
    reason = first_line(status[0]) if status else "no reason given"
    os.write(2, f"optbench: the distributed run failed: {reason}\n".encode())
    os._exit(1)


class _join_errors_raise:
    """While ``jax.distributed.initialize`` runs: its client is made with
    :func:`_coordination_lost` as the error callback, so that a join that fails — a process
    missing when the wait runs out, two processes with one id — raises in the joining thread
    instead of aborting the process from C++ (exit 134 and a stack trace, which is what JAX's
    default callback does). Where this jaxlib has no such client function or argument, the join
    is JAX's own. After the join, an error the coordination service reports (process 0 gone)
    still ends the process from C++: jaxlib 0.10.2 cannot hand its status to a Python callback,
    and what was JAX's fatal log line and stack trace is then a ``std::bad_cast`` termination."""

    def __enter__(self):
        self._lib = None
        try:   # the module JAX's join makes its client from: _jax (jaxlib 0.5 on) or xla_extension
            from jax._src import distributed as jd
            lib = getattr(jd, "_jax", None) or getattr(jd, "xla_extension", None)
            self._orig = lib.get_distributed_runtime_client
        except (ImportError, AttributeError):
            return self
        self._lib = lib
        orig = self._orig

        def client(*args, **kwargs):
            try:
                return orig(*args, missed_heartbeat_callback=_coordination_lost, **kwargs)
            except TypeError:   # a jaxlib without the argument
                return orig(*args, **kwargs)

        lib.get_distributed_runtime_client = client
        return self

    def __exit__(self, *exc):
        if self._lib is not None:
            self._lib.get_distributed_runtime_client = self._orig
        return False


def _forget_failed_join() -> None:
    """After a failed join: shut JAX's half-made client and service down now and forget them, so
    that JAX's exit handler does not try again (it printed a traceback, "Exception ignored in
    atexit callback") and a later join starts afresh."""
    try:
        from jax._src import distributed as jd
    except ImportError:
        return
    state = jd.global_state
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        # the shutdown of a join that failed logs a dozen lines from C++ about that failure
        # (agent in error state, barrier aborted): the one line the caller raises says it
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        for name in ("preemption_sync_manager", "client", "service"):
            part = getattr(state, name, None)
            if part is not None:
                try:
                    part.shutdown()
                except Exception:   # noqa: BLE001 — it failed already; nothing more to say
                    pass
                setattr(state, name, None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _put(tree, sharding):
    """Place host arrays as global arrays with ``sharding`` (each process supplies its shards)."""
    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])
    return jax.tree_util.tree_map(one, tree)


def _read_replicated(a) -> np.ndarray:
    """A small replicated array's value, read from this process's first shard (no gather)."""
    return np.asarray(a.addressable_shards[0].data)


def _to_host(tree):
    """Global arrays back to numpy, gathered from every process when there are several."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return jax.tree_util.tree_map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)
    leaves = jax.tree_util.tree_leaves(tree)
    if all(not isinstance(a, jax.Array) or all(d.platform == "cpu" for d in a.sharding.device_set) for a in leaves):
        # on the CPU, numpy views of the device buffers, read in place. jax.device_get first
        # starts an asynchronous host copy of each array, which on jax 0.11 left the history
        # chunks so that the next run's advance, which donates them, waited or copied them
        # first: 2-D Gauss-Newton at 10⁴ starts took 3.2 ms a run instead of 0.9 (measured with
        # jax 0.11.2; 0.10.2 was unaffected)
        return jax.tree_util.tree_map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, tree)
    return jax.device_get(tree)   # elsewhere the leaves' transfers overlap


def _state_change(name: str, s0, s1) -> Optional[str]:
    """Why ``s1`` (a step's result) cannot replace ``s0`` (its input) in the loop's carry, in one
    line, or None: it must be a State, every field must keep its structure, and every leaf its
    shape and dtype."""
    from optimizers.base import State
    if not isinstance(s1, State):
        return f"{name}: step must return an optimizers.State, got {type(s1).__name__}"
    for field in s0._fields:
        a, b = getattr(s0, field), getattr(s1, field)
        if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
            return (f"{name}: step changed the structure of State.{field} "
                    f"({jax.tree_util.tree_structure(a)} -> {jax.tree_util.tree_structure(b)}); "
                    f"it must return the state it was given with the same structure, shapes and dtypes")
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            if not hasattr(v, "dtype"):
                continue   # a Python number: the loop converts it to the carry's type
            if (tuple(u.shape), u.dtype) != (tuple(v.shape), v.dtype):
                return (f"{name}: step changed State.{field} from {u.dtype}{list(u.shape)} to "
                        f"{v.dtype}{list(v.shape)}; it must keep every field's shape and dtype")
    return None


def _checked_step(opt, oracle):
    """``opt.step`` on one start, with the loop's contract checked as it is traced (free at run
    time): over a batch the driver's per-start select would silently cast a state whose dtype the
    step changed (a float32 x in a float64 run) back, so the mismatch is refused here."""
    def step(s):
        new = opt.step(oracle, s)
        fault = _state_change(f"optimizer {opt.spec or opt.name!r}", s, new)
        if fault is not None:
            raise OptbenchError(fault)
        return new
    return step


def _optimizer_fault(problem, optimizer, n: int, dtype, data) -> Optional[str]:
    """What is wrong with ``optimizer``'s init/step on one start of ``problem``, in one line, or
    None: traced abstractly (``jax.eval_shape``, nothing runs), and only after building the run
    failed, so a working optimizer pays nothing. A step must take a :class:`State` and return
    one of the same structure, shapes and dtypes (the loop carries it)."""
    from optimizers.base import State
    name = f"optimizer {optimizer.spec or optimizer.name!r}"
    x = jax.ShapeDtypeStruct((n,), dtype)
    try:
        s0 = jax.eval_shape(lambda x, d: optimizer.init(_oracle(problem, d), x), x, data)
    except Exception as exc:   # noqa: BLE001 — reported in one line
        return f"{name}: init fails: {type(exc).__name__}: {first_line(exc)}"
    if not isinstance(s0, State):
        return f"{name}: init must return an optimizers.State, got {type(s0).__name__}"
    try:
        s1 = jax.eval_shape(lambda s, d: optimizer.step(_oracle(problem, d), s), s0, data)
    except Exception as exc:   # noqa: BLE001
        return f"{name}: step fails: {type(exc).__name__}: {first_line(exc)}"
    return _state_change(name, s0, s1)


def _compile_entry(key, problem, optimizer, n, chunk, tiling, xs, data, g, mi, lanes, whole, chunk_lanes, dev,
                   progress, record=True, fuse_loops=False, batch=0, storable=False):
    try:
        return _compile_entry_unchecked(key, problem, optimizer, n, chunk, tiling, xs, data, g, mi, lanes, whole,
                                        chunk_lanes, dev, progress, record, fuse_loops, batch, storable)
    except OptbenchError:
        raise
    except Exception:
        # a plugin optimizer that breaks the loop's contract: say which part, in one line
        fault = _optimizer_fault(problem, optimizer, n, xs.dtype, data)
        if fault is None:
            raise
        raise OptbenchError(fault) from None


def _compile_entry_unchecked(key, problem, optimizer, n, chunk, tiling, xs, data, g, mi, lanes, whole, chunk_lanes,
                             dev, progress, record=True, fuse_loops=False, batch=0, storable=False):
    """Check the problem, build and compile the start and loop programs, store them under ``key``;
    returns (compile seconds, the entry). ``tiling`` = (tiles, tile lanes, live lanes, the running
    fraction at which the packed loop takes over); with more than one tile the entry also knows
    how to compile the packed loop (on first use, see :func:`_packed_exe`). ``record``: whether
    the programs write the history (see :func:`_build`)."""
    problem.check(xs.dtype, data)   # one-line errors for an unusable f, before anything is traced for real
    if tiling[0] > 1:   # a packed run: refused before its compile where XLA would abort the process
        _check_multi_output(xla_options(dev.platform, n, 0, fuse_loops))
    if progress is not None:
        progress("compile")
    t0 = time.perf_counter()
    cached = [] if storable else None   # for the program store: did JAX's cache serve one? (_store_program)
    start, advance, packed, first = _build(problem, optimizer, n, chunk, *tiling, record=record)
    data_size = _data_size(data)
    hist_sh = (chunk_lanes, chunk_lanes) if record else ()

    def on_lanes(shapes):   # the carry's shapes, each split along its batch axis
        return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=lanes), shapes)

    k_spec = jax.ShapeDtypeStruct((2 + (chunk if record else 0),), jnp.int32, sharding=whole)
    if record:
        # every per-lane array is split along its batch axis (history chunks: axis 1); the
        # shardings are pytree prefixes, so the state's structure comes from the one trace
        row_lanes = jax.sharding.NamedSharding(lanes.mesh, jax.sharding.PartitionSpec(None, "batch"))
        start_low = jax.jit(start, out_shardings=(lanes, row_lanes)).lower(xs, data, g, mi)
        carry_shape = start_low.out_info[0]
        array_bytes = _largest_array_bytes(carry_shape)
        row = start_low.out_info[1]
        if tiling[0] > 1:   # the chunks' rows name each slot's start in one more int field
            row = (row[0], jax.ShapeDtypeStruct((row[1].shape[0] + 1,) + row[1].shape[1:], row[1].dtype))
        hist_spec = tuple(jax.ShapeDtypeStruct((chunk,) + r.shape, r.dtype, sharding=chunk_lanes) for r in row)
        carry_spec = on_lanes(carry_shape)
        # XLA compiles the small start program on a second thread while this one lowers and
        # compiles the loop (XLA releases the GIL): a cold compile is the longer of the two,
        # not their sum
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            start_fut = pool.submit(compile_lowered, start_low, dev, n, data_size, fuse_loops, batch, cached, array_bytes)
            adv_exe = jax.jit(advance, donate_argnums=(0, 1), out_shardings=(lanes, whole, hist_sh)).lower(
                carry_spec, hist_spec, data, g, mi, k_spec)
            adv_exe = compile_lowered(adv_exe, dev, n, data_size, fuse_loops, batch, cached, array_bytes)
            start_exe = start_fut.result()
        exes = (start_exe, adv_exe)
    else:
        # without history one program starts the run and loops to its end (or to the packed
        # tail): one dispatch and one read of the progress per run instead of two programs'
        # (measured on 2-D Newton, 10³ starts: 0.82 against 0.90 ms a run)
        first_low = jax.jit(first, out_shardings=(lanes, whole, ())).lower(xs, data, g, mi, k_spec)
        carry_shape = first_low.out_info[0]
        array_bytes = _largest_array_bytes(carry_shape)
        carry_spec = on_lanes(carry_shape)
        hist_spec = ()
        exes = (None, compile_lowered(first_low, dev, n, data_size, fuse_loops, batch, cached, array_bytes))
    compile_s = time.perf_counter() - t0
    with _KEY_LOCKS_GUARD:
        _STATS["compiles"] += 1
    info = {"hist": tuple((h.shape, h.dtype) for h in hist_spec), "chunk_lanes": chunk_lanes, "tiling": tiling,
            "storable": storable and not any(cached)}
    if tiling[0] > 1:
        def compile_packed():
            perm_spec = jax.ShapeDtypeStruct((carry_shape[1].shape[0],), jnp.int32, sharding=lanes)
            low = jax.jit(packed, donate_argnums=(0, 1), out_shardings=(lanes, whole, hist_sh)).lower(
                tuple(carry_spec) + (perm_spec,), hist_spec, data, g, mi, k_spec)
            return compile_lowered(low, dev, n, data_size, fuse_loops, batch, array_bytes=array_bytes)
        info["compile_packed"] = compile_packed
    # keep the objects alive so their ids stay valid; "hist" describes the history buffers
    info["alive"] = _alive(problem)
    entry = (exes, problem, optimizer, info)
    _remember(key, entry)
    return compile_s, entry


def _warm_up(key, entry, xs, data, g, zero, whole, history: bool) -> None:
    """Run a freshly compiled entry once, for one iteration, untimed (``zero``: the run's initial
    progress array, which no program donates).

    The first execution of an XLA executable pays one-time costs (loading and linking its
    kernels, first-touch allocations) that later executions do not: timed, they went into the
    first solve's ``run_s`` (2 starts of himmelblau × gd, 50 iterations: 40 ms the first run,
    0.28 ms the next). They are neither the compile nor the run: reported in neither."""
    exes = entry[0]
    one = _put(np.asarray(1, np.int32), whole)
    if history:
        carry, _ = exes[0](xs, data, g, one)
        hist = _history_buffer(key, entry[3])
        carry, kv, hist = exes[1](carry, hist, data, g, one, zero)
        jax.block_until_ready((carry, kv, hist))
        _release_history(key, [hist])
    else:
        jax.block_until_ready(exes[1](xs, data, g, one, zero))


def _packed_exe(key, entry):
    """The packed loop of ``entry`` (see :func:`_build`) and the seconds spent compiling it now:
    it is compiled the first time a run of this program reaches its tail (most starts
    finished), never for runs that do not (most runs of a few dozen iterations)."""
    info = entry[3]
    with _key_lock(key):
        if "packed" in info:
            return info["packed"], 0.0
        t0 = time.perf_counter()
        info["packed"] = info["compile_packed"]()
        with _KEY_LOCKS_GUARD:
            _STATS["compiles"] += 1
        return info["packed"], time.perf_counter() - t0


def _lookup(key):
    """The compiled entry for ``key`` (marked recently used), or None."""
    with _KEY_LOCKS_GUARD:
        entry = _COMPILED.get(key)
        if entry is not None:
            _COMPILED.move_to_end(key)
        return entry


def _remember(key, entry) -> None:
    """Keep ``entry``; beyond :data:`COMPILED_MAX` programs the least recently used one goes (with
    its spare history buffers); a later solve of it compiles again."""
    with _KEY_LOCKS_GUARD:
        _COMPILED[key] = entry
        _COMPILED.move_to_end(key)
        while len(_COMPILED) > max(1, COMPILED_MAX):
            old_key, _ = _COMPILED.popitem(last=False)
            with _POOL_LOCK:
                _POOL.pop(old_key, None)


#: bytes of spare history buffers kept for reuse, over all compiled programs (at most an eighth
#: of the memory available on their device). Runs that take turns (optbench perf's interleaved
#: rounds, a suite's cells) cycle through their programs, so a pool smaller than all their
#: buffers keeps none of them: with 256 MB, nine optbench rows of `optbench perf` at 10⁴ starts
#: each fetched fresh buffers every run (zero-filled and paged in: gauss-newton 2.9 ms a run
#: instead of 1.4 ms, measured in one process).
HISTORY_POOL_BYTES = 1 << 30
_POOL: "collections.OrderedDict[Any, List[Any]]" = collections.OrderedDict()
_POOL_LOCK = threading.Lock()


def _nbytes(bufs) -> int:
    return sum(a.nbytes for a in bufs)


def _history_buffer(key, info):
    """A (float chunk, int chunk) buffer pair for one ``advance`` call, which donates it and
    returns it filled. Buffers from earlier runs of the same program are reused: a fresh chunk
    is a large allocation (32 rows × F × B numbers) whose zero-fill and first-touch page faults
    cost 10–20 % of a 2-D Newton run at 10³–10⁴ starts (measured with ``jax.profiler``)."""
    with _POOL_LOCK:
        spare = _POOL.get(key)
        if spare:
            _POOL.move_to_end(key)
            return spare.pop()
    if jax.process_count() > 1:   # each process supplies its own shards of a global array
        return tuple(_put(np.zeros(shape, dtype), info["chunk_lanes"]) for shape, dtype in info["hist"])
    return tuple(jnp.zeros(shape, dtype, device=info["chunk_lanes"]) for shape, dtype in info["hist"])


def _release_history(key, bufs) -> None:
    """Keep a run's history buffers for the next run of the same program (least recently used
    programs' buffers are dropped beyond :data:`HISTORY_POOL_BYTES`). Host views of them must be
    gone: a buffer still viewed is copied, not overwritten, when donated."""
    if not bufs:
        return
    with _POOL_LOCK:
        _POOL.setdefault(key, []).extend(bufs)
        _POOL.move_to_end(key)
        total = sum(_nbytes(h) for spare in _POOL.values() for h in spare)
        limit = HISTORY_POOL_BYTES
        if total > (64 << 20):
            avail = _limits.available_bytes(next(iter(bufs[0][0].devices())))
            limit = limit if avail is None else min(limit, avail // 8)
        while total > limit and _POOL:
            old_key, spare = next(iter(_POOL.items()))
            drop = spare.pop(0)
            total -= _nbytes(drop)
            if not spare:
                del _POOL[old_key]


_KEY_LOCKS: Dict[Any, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(key) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def precompile(problem, optimizer, x0s=None, *, max_iter: int = 500, gtol: float = 1e-8, dtype: str = "float64",
               device: Optional[str] = None, pack: bool = False, history: bool = True, repeats: int = 1,
               progress: Optional[Any] = None, fuse_loops: bool = False) -> float:
    """Compile what :func:`solve` with these arguments will run, without running it; returns the
    compile seconds (0.0 if already compiled). The next matching ``solve`` reports those seconds
    as its ``compile_s``. Safe to call from several threads at once (XLA compiles without the
    GIL, so a suite's cells compile in parallel; two calls for the same program compile once)."""
    return solve(problem, optimizer, x0s, max_iter=max_iter, gtol=gtol, dtype=dtype, device=device, pack=pack,
                 history=history, repeats=repeats, progress=progress, fuse_loops=fuse_loops, _compile_only=True)


def gtol_in(gtol: float, dtype) -> np.ndarray:
    """``gtol`` in the run's dtype, rounded toward zero: the largest number of that dtype ≤ gtol,
    so a start the loop calls ``converged`` has ‖∇f‖ ≤ gtol as given, not merely ≤ gtol rounded
    to the nearest float32 (1e-3 rounds up, to 0.0010000000475: a float32 start with ‖∇f‖ equal
    to that was reported converged at gtol = 1e-3). A gtol beyond the dtype's range becomes its
    largest finite number, without numpy's overflow warning on the console."""
    with np.errstate(over="ignore"):
        t = np.asarray(gtol, dtype)
    if float(t) > gtol:
        t = np.nextafter(t, np.zeros((), dtype))
    return t


def success_tol(f_star: float, dtype: str = "float64") -> float:
    """How far above a known f* a start may end and count as solved: max(1e-6, τ·|f*|), τ = 1e-6
    in float64 (so 1e-6·max(1, |f*|)) and √ε ≈ 3.45e-4 in float32 (see :data:`SUCCESS_RTOL`)."""
    return max(SUCCESS_ATOL, SUCCESS_RTOL[dtype] * abs(f_star))


#: f in float64 over a batch of points, per problem (:func:`f_in_float64`), least recently used last
_F64: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
_F64_MAX = 32


def f_in_float64(problem, xs) -> np.ndarray:
    """f at each row of ``xs`` ((B, n)) evaluated in float64 with the problem's data in float64:
    what a float32 run's success is judged on. A float32 f carries rounding of its own —
    MGH Meyer (f* = 87.9459, a sum of squares of residuals against y ≈ 10⁴) reads 87.83–87.96 in
    float32 at points where float64 gives 88.05–88.07 — which exceeds the float32 tolerance
    (√ε·|f*| = 0.03) on either side of f*."""
    key = _key(problem)
    hit = _F64.get(key)
    if hit is None:
        fn = jax.jit(jax.vmap(lambda x, d: problem.objective(x, d), in_axes=(0, None)))
        hit = (fn, _alive(problem))
        _F64[key] = hit
        while len(_F64) > _F64_MAX:
            _F64.popitem(last=False)
    _F64.move_to_end(key)
    # the data cast for this call only, not kept: a large float32 data set (linreg at 2·10⁶×50,
    # 400 MB) would otherwise stay in memory twice its size for as long as the entry lives
    data = None if problem.data is None else _cast_data(problem.data, jnp.float64)
    with np.errstate(all="ignore"):
        return np.asarray(hit[0](jnp.asarray(xs, jnp.float64), data), np.float64)


def result_success(problem, code, fun, x, dtype: str) -> np.ndarray:
    """:func:`success_mask` of a run's final statuses, values and points; a float32 run is judged
    on f evaluated in float64 at its x (:func:`f_in_float64`): its own float32 value carries
    rounding that can exceed the tolerance, on either side of f* (optbench's runs and scipy's)."""
    judged = fun if dtype != "float32" or problem.f_star is None else f_in_float64(problem, np.asarray(x))
    return success_mask(code, judged, problem.f_star, dtype)


def success_mask(code, fun, f_star, dtype: str = "float64") -> np.ndarray:
    """Which starts solved the problem.

    Where f* is unknown: the start ``converged`` (‖∇f‖ ≤ gtol). Where f* is known (``fun``: a
    float32 run's f evaluated in float64 at its x, :func:`f_in_float64`): f − f* ≤
    :func:`success_tol` (1e-6·max(1, |f*|) in float64) at a start that stopped by itself —
    ``converged``, or reporting that it can make no further progress (``stalled``: no step changes
    x in floating point; ``linesearch_failed``: no step lowers f measurably, after a restart along
    −∇f for the methods that restart; ``singular``) — not one cut off by ``max_iter``. At the known minimum
    those reports mean the floor of floating point was reached: an ill-conditioned fit's remaining
    decrease is below f's resolution while ‖∇f‖ is still above gtol (NIST's Chwirut1: f at the
    certified value to 12 digits, ‖∇f‖ = 1.6e-3 where LM stops, 3.2e-4 at the certified
    parameters themselves). The status keeps saying how each start ended."""
    code = np.asarray(code)
    if f_star is None:
        return code == STATUS_CONVERGED
    fun = np.asarray(fun, dtype=np.float64)
    near = np.isfinite(fun) & (fun - f_star <= success_tol(f_star, dtype))
    return near & np.isin(code, _STOPPED_ITSELF)


def solve(problem, optimizer, x0s=None, *, max_iter: int = 500, gtol: float = 1e-8, dtype: str = "float64",
          repeats: int = 1, device: Optional[str] = None, progress: Optional[Any] = None, pack: bool = False,
          history: bool = True, fuse_loops: bool = False, _compile_only: bool = False) -> Result:
    """Run ``optimizer`` on ``problem`` from each start in ``x0s`` ((n,) or (B, n); default the
    problem's x0), compiled, batched over starts, with full history (unless ``history=False``).

    Terminates each start when ‖∇f‖ ≤ ``gtol`` (``converged``), after ``max_iter`` steps
    (``max_iter``), on a non-finite f, gradient or x (``diverged``), or when the optimizer
    reports failure (``linesearch_failed``, ``singular``, ``stalled``). ``success``
    (:func:`success_mask`): converged; where f* is known, f − f* ≤ 1e-6·max(1, |f*|) (float32:
    max(1e-6, 3.45e-4·|f*|), f evaluated in float64 at the returned x) at a start that stopped by itself (any status but ``max_iter`` and
    ``diverged``). ``progress(phase)``, if given, is
    called with ``"compile"`` and ``"run"`` as those phases begin (for a progress bar).

    ``pack=True`` packs the tail of a large batch (at least 2 * :data:`PACK_TILE_MIN` starts on
    one device): once at most half the starts still run, only the tiles of the batch that hold
    running starts are stepped (see :func:`_build`). It costs one more compile (of the packed
    loop, on the first run that reaches a tail, counted in ``compile_s``) and pays where the
    slowest starts take many more iterations than the median. Results agree with the unpacked
    run to rounding (XLA's code for a batched operation may differ with the batch size).

    ``history=False`` records no per-iteration history (``Result.trace`` is None): the final
    state of every start is returned as usual, but the loop writes no rows and nothing is copied
    back per iteration. For throughput (the hand-written kernels of ``optbench perf`` record
    nothing either) and for batches whose history would not fit in memory (B starts ×
    max_iter + 1 rows × about ten numbers).

    ``fuse_loops=True`` (CPU) compiles each while loop of the run as one function instead of a
    sequence of kernels (:data:`FUSE_LOOPS_BACKEND`): several times fewer dispatches per step,
    which pays for batches of small problems up to about 10⁴ 2-D starts on a 2-core machine and
    loses for larger ones. Its results differ from the default compilation's in the last bits (a
    few starts may take other iteration counts); a loop sharded over devices is never fused.
    """
    for arg, cls, what in ((problem, _problems.Problem, "problem"), (optimizer, _optimizers.Optimizer, "optimizer")):
        if not isinstance(arg, (str, cls)):   # not "empty name in spec <the object's whole repr>"
            raise OptbenchError(f"{what} must be a spec string or an instance of {what}s.{cls.__name__}, "
                                f"got {type(arg).__module__}.{type(arg).__name__}")
    problem = _problems.get(problem)
    optimizer = _optimizers.get(optimizer)
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or not 1 <= max_iter < 2 ** 31:
        raise OptbenchError(f"max_iter must be a positive integer below 2**31, got {max_iter!r}")
    max_iter = int(max_iter)
    if (not isinstance(gtol, (int, float, np.integer, np.floating)) or isinstance(gtol, bool)
            or not (gtol >= 0 and np.isfinite(gtol))):
        raise OptbenchError(f"gtol must be a finite number >= 0, got {gtol!r}")
    gtol = float(gtol)
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
        raise OptbenchError(f"repeats must be a positive integer, got {repeats!r}")
    repeats = int(repeats)
    if not isinstance(history, bool):
        raise OptbenchError(f"history must be True or False, got {history!r}")
    try:   # a numpy dtype or type names the same thing as its string
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except (TypeError, ValueError):
        pass
    if dtype not in DTYPES:
        raise OptbenchError(f"dtype must be float64 or float32, got {dtype!r}")
    if optimizer.needs_residuals and not problem.has_residuals:
        raise OptbenchError(f"optimizer {optimizer.spec!r} needs a least-squares problem; {problem.spec!r} has no residuals")
    x0s = problem.x0 if x0s is None else x0s
    x0s = real_array(x0s, "starts", "an array of real numbers, shape (n,) or (B, n)")
    single = x0s.ndim == 1
    if single:
        x0s = x0s[None, :]
    if x0s.ndim != 2 or x0s.shape[0] < 1:
        raise OptbenchError(f"starts must have shape (n,) or (B, n), got {x0s.shape}")
    if x0s.shape[1] != problem.dim:
        raise OptbenchError(f"starts have dimension {x0s.shape[1]} but problem {problem.spec!r} has dim {problem.dim}")
    if not np.all(np.isfinite(x0s)):
        raise OptbenchError("starts contain non-finite values")
    if dtype == "float32" and np.any(np.abs(x0s) > np.finfo(np.float32).max):
        raise OptbenchError(f"starts hold values beyond float32's range (largest |x| = {np.max(np.abs(x0s)):.3g}, "
                            f"float32 ends at {float(np.finfo(np.float32).max):.3g}); run in float64")

    devs = resolve_devices(device)
    dev = devs[0]
    _limits.check(problem, optimizer, x0s.shape[0], int(max_iter), dtype, dev, history=history)  # refuse what cannot fit
    enable_compilation_cache()
    jdtype = jnp.dtype(dtype)
    b, n = x0s.shape
    nd = len(devs)
    bp = -(-b // nd) * nd                  # the batch padded to a multiple of the device count
    if not isinstance(pack, bool):
        raise OptbenchError(f"pack must be True or False, got {pack!r}")
    if not isinstance(fuse_loops, bool):
        raise OptbenchError(f"fuse_loops must be True or False, got {fuse_loops!r}")
    if fuse_loops and dev.platform != "cpu":
        raise OptbenchError(f"fuse_loops=True is a setting of XLA's CPU compiler; this run is on {dev.platform}")
    tiles, tile = _tiling(bp, nd) if pack else (1, bp)
    slots = tiles * tile if tiles > 1 else bp   # packed: whole tiles (the spare slots hold no start)
    x0p = np.concatenate([x0s, np.repeat(x0s[-1:], slots - b, axis=0)]) if slots > b else x0s
    mesh = jax.sharding.Mesh(np.array(devs), ("batch",))
    lanes = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    chunk_lanes = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, None, "batch"))
    with jax.default_device(dev):
        xs = _put(x0p.astype(jdtype), lanes)
        data = _put(jax.tree_util.tree_map(np.asarray, _cast_data(problem.data, jdtype)), whole)
        g = _put(gtol_in(gtol, jdtype), whole)
        mi = _put(np.asarray(max_iter, np.int32), whole)
        chunk = int(HISTORY_CHUNK)
        zero = _put(np.zeros(2 + (chunk if history else 0), np.int32), whole)
        tiling = (tiles, tile, bp, float(PACK_RUNNING_MAX))
        key = (_key(problem), _key(optimizer), bp, n, dtype, chunk, tiling, history, tuple(d.id for d in devs),
               jax.tree_util.tree_structure(data), tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(data)),
               bool(fuse_loops), small_batch(b, n), _xla_settings())
        compile_s = 0.0
        entry = _lookup(key)
        if entry is None:
            with _key_lock(key):   # another thread may be compiling the same program: wait for it
                entry = _lookup(key)
                if entry is None:
                    pkey = _program_key(problem, optimizer, devs, b, bp, n, dtype, chunk, tiling, history, data,
                                        fuse_loops)
                    t0 = time.perf_counter()
                    entry = _load_program(pkey, problem, optimizer, dev, chunk_lanes, tiling)
                    if entry is not None:   # from the program store: what it cost is the compile column's
                        compile_s = time.perf_counter() - t0
                        _remember(key, entry)
                    else:
                        compile_s, entry = _compile_entry(key, problem, optimizer, n, chunk, tiling, xs, data, g, mi,
                                                          lanes, whole, chunk_lanes, dev, progress, record=history,
                                                          fuse_loops=fuse_loops, batch=b, storable=pkey is not None)
                        _store_program(pkey, entry)
                    # run once, untimed and unreported: compile_s stays the compile alone, like
                    # the ahead-of-time compile times perf reports for the peers
                    _warm_up(key, entry, xs, data, g, zero, whole, history)
                    if _compile_only:
                        entry[3]["pending_compile_s"] = compile_s
        if _compile_only:
            return compile_s
        # compile seconds of a precompile() not yet reported by a solve
        compile_s = compile_s or entry[3].pop("pending_compile_s", 0.0)
        start_exe, adv_exe = entry[0]
        if progress is not None:
            progress("run")
        times = []
        chunks: List[Any] = []

        def to_tail(carry):
            """The packed loop (compiled on first use) and the carry it takes: the plain loop's,
            plus each slot's start; and the seconds spent compiling it now."""
            packed, c_s = _packed_exe(key, entry)
            return packed, tuple(carry) + (_put(np.arange(slots, dtype=np.int32), lanes),), c_s

        for _ in range(repeats):
            _release_history(key, [h for h, _ in chunks])   # the previous repeat's rows are not kept
            t0 = _clock()
            paused = 0.0
            # chunks: (history buffer, its row segments (first row, rows, stepped slots per row or
            # None where the plain loop recorded every slot))
            chunks, k, kv, packed, packed_at = [], 0, zero, None, None
            if not history:
                # one program starts the run and takes it to its end or, with pack=True, to the
                # tail, which the packed loop then takes to its end
                carry, kv, _ = adv_exe(xs, data, g, mi, kv)
                k, more = (int(v) for v in _read_replicated(kv)[:2])
                if more:
                    t1 = _clock()
                    packed, carry, c_s = to_tail(carry)
                    packed_at, compile_s = k, compile_s + c_s
                    paused += _clock() - t1   # a first compile is not run time
                    carry, kv, _ = packed(carry, (), data, g, mi, _put(np.array([k, 0], np.int32), whole))
                    k = int(_read_replicated(kv)[0])
                if nd > 1:
                    jax.block_until_ready(carry)   # see below
                times.append(_clock() - t0 - paused)
                continue
            carry, row0 = start_exe(xs, data, g, mi)
            while True:
                if packed is None:
                    carry, kv, hist = adv_exe(carry, _history_buffer(key, entry[3]), data, g, mi, kv)
                    segs, j0 = [], 0
                else:
                    if j0:   # carry on in the chunk the plain loop left
                        hist, segs = chunks.pop()
                    else:
                        hist, segs = _history_buffer(key, entry[3]), []
                    kv = _put(np.array([k, j0] + [0] * chunk, np.int32), whole)
                    carry, kv, hist = packed(carry, hist, data, g, mi, kv)
                kh = _read_replicated(kv)   # waits for the chunk: iterations so far, go on?, tiles per row
                k_new, more = int(kh[0]), int(kh[1])
                rows = k_new - k
                segs = segs + [(j0, rows, None if packed is None else kh[2 + j0:2 + j0 + rows] * tile)]
                chunks.append((hist, segs))
                k, j0 = k_new, j0 + rows
                if not more:
                    break
                if j0 == chunk:
                    j0 = 0
                elif packed is None:
                    # the plain loop stopped early: the tail begins (at most PACK_RUNNING_MAX of the
                    # slots run). From here on only the tiles that hold running starts are stepped,
                    # carrying on in this chunk's buffer
                    t1 = _clock()
                    packed, carry, c_s = to_tail(carry)
                    packed_at, compile_s = k, compile_s + c_s
                    paused += _clock() - t1   # a first compile is not run time
            if nd > 1:
                # on one device the read of the last program's progress waited for that program,
                # which wrote the carry too (an executable's outputs are ready together); on
                # several, it waited for one device's share only. Blocking on every carried
                # array as well cost 2-D newton about 25 µs a run at 10³ starts, 2 % of it
                jax.block_until_ready(carry)
            times.append(_clock() - t0 - paused)
    # the optimizer's own state (aux: BFGS matrices, L-BFGS memories, optax states) is not
    # reported: it stays on the device instead of being copied (or, across processes, gathered)
    # to the host and dropped
    carry = _to_host((carry[0]._replace(aux=()),) + tuple(carry[1:]))
    if len(carry) == 5:
        # slots back to starts: slot i holds start perm[i], so start q is in slot argsort(perm)[q]
        s, code, nit, gn, perm = carry
        where = np.argsort(np.asarray(perm), kind="stable")[:b]
    else:
        s, code, nit, gn = carry
        where = slice(0, b)
    bufs = [h for h, _ in chunks]
    trace = None
    if history:
        row0 = {k: v[0] for k, v in _unpack_chunk(tuple(a[None] for a in _to_host(row0)), n).items()}
        trace = _assemble_trace(row0, [(_to_host(h), segs) for h, segs in chunks], k, int(max_iter), n, b)
    del chunks   # the host views of the buffers go before the buffers are lent again
    _release_history(key, bufs)
    # the optimizer's own state (aux: a BFGS matrix per start, an optax state that may hold PRNG
    # keys, which have no NumPy form) stays on the device: a Result reports none of it
    s = jax.tree_util.tree_map(lambda a: np.asarray(a)[where], s._replace(aux=()))
    code, nit = np.asarray(code)[where], np.asarray(nit)[where]
    fun = np.asarray(s.f, dtype=np.float64)
    code = np.asarray(code)
    names = np.array(STATUS_NAMES, dtype=object)[code].astype(str)
    success = result_success(problem, code, fun, s.x, dtype)
    # the norm the convergence test used (a diverged start's may read inf: its gradient squared
    # past the float range)
    grad_norm = np.asarray(gn)[where]
    res = Result(x=np.asarray(s.x), fun=fun, grad_norm=grad_norm, nit=np.asarray(nit),
                 nfev=np.asarray(s.nfev), njev=np.asarray(s.njev), nhev=np.asarray(s.nhev), nhvp=np.asarray(s.nhvp),
                 status=names, status_code=code, success=success, trace=trace, x0=x0s, problem=problem.spec,
                 optimizer=optimizer.spec, dtype=dtype, max_iter=int(max_iter), gtol=float(gtol), compile_s=compile_s,
                 run_s=float(np.median(times)), run_s_all=times, iterations_run=int(k), f_star=problem.f_star,
                 device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}", packed_at=packed_at)
    return _squeeze(res) if single else res


def _assemble_trace(row0, chunks, k: int, max_iter: int, n: int, b: int) -> Trace:
    """The history from row 0 and the chunks' rows: (B, k + 1) recorded columns, read as
    (B, max_iter + 1) with the flat tail after column k (see :class:`Trace`).

    ``chunks`` holds ((float chunk, int chunk), segments), a segment being (first row, rows,
    stepped): ``stepped`` is None where the plain loop recorded every slot (slot i is start i)
    or, for the packed loop, per row the slots it recorded (its first ``stepped[r]``), whose
    start is the int chunk's last field. A start absent from a row had finished (only tiles
    holding running starts are stepped), so its columns there repeat its last recorded one."""
    fields = {}
    for key, v0 in row0.items():
        v0 = np.asarray(v0)[:b]
        fields[key] = np.empty((b, k + 1) + v0.shape[1:], v0.dtype)
        fields[key][:, 0] = v0
    col, first_packed, written = 1, None, None
    for (fl, it), segs in chunks:
        for r0, j, stepped in segs:
            if j == 0:
                continue
            h = _unpack_chunk((fl[r0:r0 + j], it[r0:r0 + j]), n)
            if stepped is None:
                for key, a in fields.items():
                    a[:, col:col + j] = np.swapaxes(h[key][:, :b], 0, 1)
                if written is not None:
                    written[:, col - first_packed:col - first_packed + j] = True
            else:
                if written is None:
                    first_packed = col
                    written = np.zeros((b, k + 1 - col), bool)
                stepped = np.asarray(stepped[:j], np.int64)
                rr, ss = np.nonzero(np.arange(fl.shape[2])[None, :] < stepped[:, None])
                start = it[r0 + rr, it.shape[1] - 1, ss].astype(np.int64)
                keep = start < b                                          # spare slots hold no start
                rr, ss, start = rr[keep], ss[keep], start[keep]
                flat = start * (k + 1) + col + rr          # (start, column) as one index
                for key, a in fields.items():
                    a.reshape((b * (k + 1),) + a.shape[2:])[flat] = h[key][rr, ss]
                written.reshape(-1)[start * written.shape[1] + col - first_packed + rr] = True
            col += j
    if written is not None and not written.all():
        # a start is unrecorded only where it had finished, so there it holds its final value:
        # the one in its last recorded column (the column before the packed rows, recorded for
        # every start, where it has none after)
        cols = written.shape[1]
        last = np.where(written.any(axis=1), first_packed + cols - 1 - np.argmax(written[:, ::-1], axis=1),
                        first_packed - 1)
        lanes = np.arange(b)
        for key, a in fields.items():
            final = a[lanes, last]
            tail = a[:, first_packed:]
            mask = written.reshape(written.shape + (1,) * (a.ndim - 2))
            np.copyto(tail, np.expand_dims(final, 1), where=~mask)
    return Trace(**fields, length=max_iter + 1)


def _squeeze(res: Result) -> Result:
    per_start = ("x", "fun", "grad_norm", "nit", "nfev", "njev", "nhev", "nhvp", "status", "status_code", "success", "x0")
    res = dataclasses.replace(res, **{k: getattr(res, k)[0] for k in per_start})
    if res.trace is not None:
        res.trace = res.trace.select(0)
    return res
