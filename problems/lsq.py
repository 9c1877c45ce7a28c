"""‖Xw − y‖² whose gradient reads X once: row blocks that stay in cache.

XLA's CPU code for a gradient of ‖Xw − y‖² makes two passes over X (Xw, then Xᵀr), and the
transposed one is strided and slow; for a tall X the gradient is bandwidth-bound, so reading X
once per gradient is what matters. :func:`sse` is that f: a single-pass blocked derivative on
CPU (``custom_jvp``, so gradients, Hessian-vector products and Hessians all work), the plain form
on other devices.

Measured (``optbench perf --large --cases linreg``: X 2·10⁶×50 float32, this 2-core EPYC with
1 MiB L2 per core and a 32 MiB L3; streaming read of X, numpy ``dot(X, X)``, ≈ 14 ms on a quiet
machine): one gradient ≈ 31–35 ms in 3–8 MiB blocks, 40–50 ms in 0.8–1.6 MiB ones (each trip
has a fixed cost: XLA copies the block for the matrix-vector product and hands work to its
thread pool), against ≈ 58 ms for numpy's two passes and ≈ 100 ms for XLA's plain form. The
gradient's column sum Σ rᵢxᵢ is written as a reduction, not ``r @ X_b`` (36 → 31 ms at 3.2 MiB
blocks). Tried and not kept (a helper's measurements, ms per gradient): ``unroll`` 2–8 (42–78),
two independent half-loops (no gain), a carried prefetched next block (39–52), batched
``einsum`` over several blocks (65–130), ``X_b w`` as a row reduction or a sum of column slices
inside the loop (42–75), ``X_bᵀ r`` (94–167).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


BLOCK_BYTES = 4 << 20
"""Default row-block size: about 4 MiB of X (≈ 21 000 rows of 50 float32), inside the L3 cache
even when neighbours share it. Each trip of the block loop has a fixed cost (the block copy XLA
makes for the matrix-vector product, thread-pool hand-offs: tens of µs), so L2-sized blocks lose
more to the trips than they gain from L2; see the module docstring for the figures."""


def block_rows_for(x, block_rows=None) -> int:
    """Rows per block: ``block_rows`` if given; else the rows of X split evenly into the fewest
    blocks of at most :data:`BLOCK_BYTES` (so the tail block is short: fewer rows than blocks)."""
    m, d = x.shape
    if block_rows is None:
        per_block = max(1, BLOCK_BYTES // max(1, d * jnp.dtype(x.dtype).itemsize))
        block_rows = m // max(1, -(-m // per_block))
    return max(1, min(int(block_rows), m))


def _blocks(x, y, block_rows):
    """(nb, block, tail): ``block(i)`` is the i-th full row block (X_b, y_b) of ``block_rows``
    rows, cut from X where it lies (a dynamic slice: no copy of X), and ``tail`` the rows after
    the last full block (possibly none). Slicing X to a multiple of the block and reshaping it
    would copy all of X whenever the rows do not divide evenly (measured: a 400 MB X, 136 ms a
    gradient against 31 ms)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    m = x.shape[0]
    block_rows = block_rows_for(x, block_rows)
    nb = m // block_rows
    cut = nb * block_rows

    def block(i):
        start = i * block_rows
        return (jax.lax.dynamic_slice_in_dim(x, start, block_rows, 0),
                jax.lax.dynamic_slice_in_dim(y, start, block_rows, 0))

    return nb, block, (x[cut:], y[cut:])


def sse_value_and_grad_blocked(w, x, y, block_rows=None):
    """(‖Xw − y‖², 2Xᵀ(Xw − y)) in ONE pass over X: for each row block X_b (default ≈ 4 MiB,
    resident in L3, :func:`block_rows_for`), r_b = X_b w − y_b and then Σ r_b,i x_b,i (a column
    reduction) while X_b is still in cache. XLA's own CPU code for Xᵀr on the whole X is a
    separate, strided pass (measured ~10× slower than streaming X once). Rows beyond the last
    full block are handled as one short block. The
    accumulation order differs from a plain X.T @ r: results agree to rounding, not bit for bit."""
    nb, block, (xt, yt) = _blocks(x, y, block_rows)
    dt = jnp.result_type(w, xt)

    def body(i, c):
        f, g = c
        blk, yb = block(i)
        r = blk @ w - yb
        # Σᵢ rᵢ·xᵢ as a column reduction, not ``r @ blk``: XLA's CPU code for the vector-matrix
        # product is the slower of the two here (see the module docstring for the figures)
        return f + jnp.dot(r, r), g + jnp.sum(blk * r[:, None], axis=0)

    rt = xt @ w - yt
    f, g = jax.lax.fori_loop(0, nb, body, (jnp.dot(rt, rt).astype(dt), (rt @ xt).astype(dt)))
    return f, 2.0 * g


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def sse_blocked(w, x, y, block_rows=None):
    """f(w) = ‖Xw − y‖² whose derivative is computed by :func:`sse_value_and_grad_blocked`.

    A ``custom_jvp`` (not ``custom_vjp``) so that reverse mode (gradient), forward-over-reverse
    (Hessian-vector products) and ``jax.hessian`` all work: the tangent rule is ⟨∇f, ẇ⟩ with
    ∇f from the single-pass loop, which JAX can differentiate again.
    """
    nb, block, (xt, yt) = _blocks(x, y, block_rows)

    def body(i, f):
        blk, yb = block(i)
        r = blk @ w - yb
        return f + jnp.dot(r, r)

    rt = xt @ w - yt
    return jax.lax.fori_loop(0, nb, body, jnp.dot(rt, rt).astype(jnp.result_type(w, xt)))


@sse_blocked.defjvp
def _sse_blocked_jvp(block_rows, primals, tangents):
    w, x, y = primals
    dw = tangents[0]
    f, g = sse_value_and_grad_blocked(w, x, y, block_rows)
    # data tangents (dX, dy) are ignored: the data is a constant of the problem
    return f, jnp.dot(g, dw)


def sse(w, x, y, block_rows=None):
    """‖Xw − y‖², single-pass blocked derivative on CPU, the plain form elsewhere.

    ``lax.platform_dependent`` picks the branch when the program is lowered for its device, so
    one problem definition is fast on both: the CPU's transposed matrix-vector product is slow
    and the blocked loop fixes that; on a GPU the plain ``X.T @ r`` is one well-tuned kernel and
    a loop over small blocks would serialise it. ``linreg`` uses it as its f.
    """
    return jax.lax.platform_dependent(
        w, x, y, cpu=lambda w, x, y: sse_blocked(w, x, y, block_rows),
        default=lambda w, x, y: jnp.sum(jnp.square(x @ w - y)))
