"""‖Xw − y‖² whose gradient reads X once: X stored as Xᵀ, column blocks that stay in cache.

XLA's CPU code for a gradient of ‖Xw − y‖² makes two passes over X (Xw, then Xᵀr); for a tall X
the gradient is bandwidth-bound, so reading X once per gradient is what matters. The functions
here take the data *transposed*, ``xt`` = Xᵀ of shape (d, m), features by rows, C order: then a
block of rows is a (d, B) slab of ``xt``, both products on it (``w @ x_b`` and ``x_b @ r_b``) are
matrix-vector products whose inner loop runs along a contiguous row of B numbers, and the block
is read from memory once (XLA copies it out of ``xt``, at streaming speed) and then used twice
from cache. :func:`sse` is that f: a single-pass blocked derivative on CPU (``custom_jvp``, so
gradients, Hessian-vector products and Hessians all work), the plain form on other devices.

Measured (``optbench perf --large --cases linreg``: X 2·10⁶×50 float32, this 2-core EPYC with
1 MiB L2 per core and a 32 MiB L3; streaming read of X, numpy ``dot`` of X with itself, ≈ 13 ms
on a quiet machine), one gradient, interleaved in one process: ≈ 20–21 ms with X stored as Xᵀ in
≈ 4 MiB column blocks (read at 62–65 % of the streaming rate; per block a 136 µs copy that is the
read, then two 34 µs products from cache), against 27–29 ms for the same loop over row blocks of
a row-major X (whose products run along rows of only d = 50 numbers), ≈ 58 ms for numpy's two
passes and ≈ 100 ms for XLA's plain form. Blocks of 1–2 MiB cost 29–36 ms (each trip has a fixed
cost); a loop that copies the next block while multiplying the current one, YNNPACK for the two
products, and a reduction in place of either product were not faster.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


BLOCK_BYTES = 4 << 20
"""Default block size: about 4 MiB of X (≈ 21 000 rows of 50 float32), inside the L3 cache even
when neighbours share it. Each trip of the block loop has a fixed cost (tens of µs), so L2-sized
blocks lose more to the trips than they gain from L2; see the module docstring for the figures."""


def block_rows_for(xt, block_rows=None) -> int:
    """Rows of X per block for data stored as ``xt`` = Xᵀ (d, m): ``block_rows`` if given; else
    the m rows split evenly into the fewest blocks of at most :data:`BLOCK_BYTES` (so the tail
    block is short: fewer rows than blocks)."""
    d, m = xt.shape
    if block_rows is None:
        per_block = max(1, BLOCK_BYTES // max(1, d * jnp.dtype(xt.dtype).itemsize))
        block_rows = m // max(1, -(-m // per_block))
    return max(1, min(int(block_rows), m))


def _blocks(xt, y, block_rows):
    """(nb, block, tail): ``block(i)`` is the i-th full block (X_bᵀ of shape (d, B), y_b) of
    ``block_rows`` rows of X, cut from ``xt`` where it lies (a dynamic slice), and ``tail`` the
    rows after the last full block (possibly none). Slicing to a multiple of the block and
    reshaping would copy all of X whenever the rows do not divide evenly."""
    xt, y = jnp.asarray(xt), jnp.asarray(y)
    m = xt.shape[1]
    block_rows = block_rows_for(xt, block_rows)
    nb = m // block_rows
    cut = nb * block_rows

    def block(i):
        start = i * block_rows
        return (jax.lax.dynamic_slice_in_dim(xt, start, block_rows, 1),
                jax.lax.dynamic_slice_in_dim(y, start, block_rows, 0))

    return nb, block, (xt[:, cut:], y[cut:])


def sse_value_and_grad_blocked(w, xt, y, block_rows=None):
    """(‖Xw − y‖², 2Xᵀ(Xw − y)) in ONE pass over X, for X stored as ``xt`` = Xᵀ (d, m): for each
    block of rows (default ≈ 4 MiB, resident in L3, :func:`block_rows_for`), r_b = w·X_bᵀ − y_b
    and then X_bᵀ r_b while the block is still in cache. Rows beyond the last full block are
    handled as one short block. The accumulation order differs from a plain Xᵀr: results agree
    to rounding, not bit for bit."""
    nb, block, (xtail, ytail) = _blocks(xt, y, block_rows)
    dt = jnp.result_type(w, xtail, ytail)   # the loop carries f and g in the type r has

    def body(i, c):
        f, g = c
        xb, yb = block(i)
        r = w @ xb - yb
        return f + jnp.dot(r, r), g + xb @ r

    rt = w @ xtail - ytail
    f, g = jax.lax.fori_loop(0, nb, body, (jnp.dot(rt, rt).astype(dt), (xtail @ rt).astype(dt)))
    return f, 2.0 * g


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def sse_blocked(w, xt, y, block_rows=None):
    """f(w) = ‖Xw − y‖² (X stored as ``xt`` = Xᵀ) whose derivative is computed by
    :func:`sse_value_and_grad_blocked`.

    A ``custom_jvp`` (not ``custom_vjp``) so that reverse mode (gradient), forward-over-reverse
    (Hessian-vector products) and ``jax.hessian`` all work: the tangent rule is ⟨∇f, ẇ⟩ with
    ∇f from the single-pass loop, which JAX can differentiate again.
    """
    nb, block, (xtail, ytail) = _blocks(xt, y, block_rows)

    def body(i, f):
        xb, yb = block(i)
        r = w @ xb - yb
        return f + jnp.dot(r, r)

    rt = w @ xtail - ytail
    return jax.lax.fori_loop(0, nb, body, jnp.dot(rt, rt).astype(jnp.result_type(w, xtail, ytail)))


@sse_blocked.defjvp
def _sse_blocked_jvp(block_rows, primals, tangents):
    w, xt, y = primals
    dw = tangents[0]
    f, g = sse_value_and_grad_blocked(w, xt, y, block_rows)
    # data tangents (dX, dy) are ignored: the data is a constant of the problem
    return f, jnp.dot(g, dw)


def sse(w, xt, y, block_rows=None):
    """‖Xw − y‖² for X stored as ``xt`` = Xᵀ (d, m): single-pass blocked derivative on CPU, the
    plain form elsewhere.

    ``lax.platform_dependent`` picks the branch when the program is lowered for its device, so
    one problem definition is fast on both: on the CPU the blocked loop reads X once per
    gradient; on a GPU the plain products are each one well-tuned kernel and a loop over small
    blocks would serialise them. ``linreg`` uses it as its f.
    """
    return jax.lax.platform_dependent(
        w, xt, y, cpu=lambda w, xt, y: sse_blocked(w, xt, y, block_rows),
        default=lambda w, xt, y: jnp.sum(jnp.square(w @ xt - y)))
