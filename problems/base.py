"""The Problem record: an objective (or residual vector), a start, a box and the known minimum.

Convention, used everywhere in optbench: a least-squares problem defines residuals r(x) and
f(x) = Σ rᵢ(x)² (no ½), the convention of Moré, Garbow & Hillstrom (1981) and of NIST StRD's
certified residual sums of squares. A root-finding problem is a square residual system with f* = 0.

Problem data (a regression's X and y, a NIST dataset) is held in ``data`` and passed to ``f`` and
``residuals`` as a second argument, so that it enters compiled code as an argument rather than as
a baked-in constant. Without ``data`` the functions take x alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from optbench_core import OptbenchError, first_line, real_array

jax.config.update("jax_enable_x64", True)


#: most numbers one array of a problem's data (a design matrix, a dense matrix, a residual
#: Jacobian) may hold, 1.6 GB in float64: a factory refuses beyond it in one line instead of
#: filling the machine's memory
MAX_ENTRIES = 2e8


@dataclasses.dataclass(eq=False)
class Problem:
    """An unconstrained minimisation problem.

    Exactly one of ``f`` and ``residuals`` is required; given residuals, f = Σ r². ``x0`` is the
    standard start, ``bounds`` a box (lo, hi) used to draw random starts and to draw contours
    (default: x0 ± max(1, |x0|)). ``f_star``/``x_star`` are the known minimum if any;
    ``minima`` lists further known minimisers (all with value ``f_star``) and
    ``local_minima`` known non-global stationary points as (x, f) pairs. ``info`` holds
    metadata that is neither data nor function (NIST difficulty, the value a paper quotes, the
    constrained minimum behind a Lagrange system); it never enters compiled code.
    """

    name: str
    f: Optional[Callable] = None
    x0: Any = None
    residuals: Optional[Callable] = None
    f_star: Optional[float] = None
    x_star: Any = None
    bounds: Optional[Tuple[Any, Any]] = None
    tags: Sequence[str] = ()
    data: Any = None
    dim: Optional[int] = None
    minima: Sequence[Any] = ()
    local_minima: Sequence[Tuple[Any, float]] = ()
    description: str = ""
    spec: str = ""
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise OptbenchError("a problem needs a non-empty name")
        if self.f is None and self.residuals is None:
            raise OptbenchError(f"problem {self.name!r} needs f or residuals")
        if self.f is not None and not callable(self.f):
            raise OptbenchError(f"problem {self.name!r}: f is not callable")
        if self.residuals is not None and not callable(self.residuals):
            raise OptbenchError(f"problem {self.name!r}: residuals is not callable")
        if self.x0 is None:
            raise OptbenchError(f"problem {self.name!r} needs a standard start x0")
        x0 = real_array(self.x0, f"problem {self.name!r}: x0")
        if x0.ndim == 0:
            x0 = x0.reshape(1)
        if x0.ndim != 1 or x0.size == 0:
            raise OptbenchError(f"problem {self.name!r}: x0 must be a non-empty vector, got shape {x0.shape}")
        if not np.all(np.isfinite(x0)):
            raise OptbenchError(f"problem {self.name!r}: x0 has non-finite entries")
        self.x0 = x0
        if self.dim is None:
            self.dim = int(x0.size)
        elif not isinstance(self.dim, (int, np.integer)) or isinstance(self.dim, bool):
            raise OptbenchError(f"problem {self.name!r}: dim must be an integer, got {self.dim!r}")
        elif int(self.dim) != x0.size:
            raise OptbenchError(f"problem {self.name!r}: dim={self.dim} but x0 has {x0.size} entries")
        if self.x_star is not None:
            xs = real_array(self.x_star, f"problem {self.name!r}: x_star").reshape(-1)
            if xs.size != self.dim:
                raise OptbenchError(f"problem {self.name!r}: x_star has {xs.size} entries, dim is {self.dim}")
            self.x_star = xs
        if self.bounds is None:
            half = np.maximum(1.0, np.abs(x0))
            self.bounds = (x0 - half, x0 + half)
        try:
            lo = np.broadcast_to(real_array(self.bounds[0], f"problem {self.name!r}: bounds"), (self.dim,)).copy()
            hi = np.broadcast_to(real_array(self.bounds[1], f"problem {self.name!r}: bounds"), (self.dim,)).copy()
        except (TypeError, ValueError, IndexError) as e:
            raise OptbenchError(f"problem {self.name!r}: bounds must be (lo, hi), each a number or {self.dim} numbers ({e})") from None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise OptbenchError(f"problem {self.name!r}: bounds must be finite with lo < hi")
        self.bounds = (lo, hi)
        self.tags = (self.tags,) if isinstance(self.tags, str) else tuple(self.tags)
        self._check_data()
        if self.f_star is not None:
            try:
                self.f_star = float(self.f_star)
            except (TypeError, ValueError):
                self.f_star = float("nan")
            if not np.isfinite(self.f_star):
                raise OptbenchError(f"problem {self.name!r}: f_star must be a finite number or None (unknown)")
        if self.f_star is None and "root" in self.tags and self.residuals is not None:
            # F(x) = 0 is the goal: Σ r² = 0 at a root, and a start that ends at a stationary
            # point of Σ r² that is no root (J singular, F ≠ 0: x² + 1 from x = 0) is no success
            self.f_star = 0.0
        if not self.spec:
            self.spec = self.name

    def _check_data(self) -> None:
        """``data`` is passed to compiled code: every leaf must be numbers (a one-line error
        naming the leaf otherwise, where JAX would raise deep inside a solve)."""
        if self.data is None:
            return
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.data)[0]:
            where = "data" + jax.tree_util.keystr(path)
            try:
                kind = np.asarray(leaf).dtype.kind
            except (TypeError, ValueError) as exc:   # ragged nesting
                raise OptbenchError(f"problem {self.name!r}: {where} is not an array ({first_line(exc)})") from None
            if kind not in "biufc":
                raise OptbenchError(f"problem {self.name!r}: {where} must be numbers (arrays or scalars), "
                                    f"got {type(leaf).__name__} of dtype {np.asarray(leaf).dtype}")

    # -- evaluation -------------------------------------------------------------------------
    @property
    def has_residuals(self) -> bool:
        return self.residuals is not None

    def objective(self, x, data=None):
        """f(x) (with the problem's data as second argument where it has data)."""
        if self.f is not None:
            return self.f(x) if self.data is None else self.f(x, data)
        r = self.residual_vector(x, data)
        return jnp.sum(r * r)

    def residual_vector(self, x, data=None):
        if self.residuals is None:
            raise OptbenchError(f"problem {self.name!r} has no residuals")
        r = self.residuals(x) if self.data is None else self.residuals(x, data)
        return jnp.reshape(r, (-1,))

    def __call__(self, x):
        """f at one point, with the problem's own data (convenience for users and tests)."""
        return self.objective(jnp.asarray(x), self.data)

    def check(self, dtype=jnp.float64, data=None) -> None:
        """Evaluate f once at x0 (abstractly) and raise a one-line error if it is unusable;
        ``dtype`` and ``data`` as the run has them (a float32 run's x and its cast data: traced in
        float64 with the data as given, an f that works only in float32 was refused, and one that
        fails only in float32 was blamed on the optimizer)."""
        x = jax.ShapeDtypeStruct((self.dim,), dtype)
        data = self.data if data is None else data
        try:
            out = jax.eval_shape(lambda x, d: self.objective(x, d), x, data)
            if self.residuals is not None:
                r = jax.eval_shape(lambda x, d: self.residual_vector(x, d), x, data)
                if r.shape[0] == 0:
                    raise OptbenchError(f"problem {self.name!r}: residuals are empty")
        except OptbenchError:
            raise
        except Exception as exc:  # a user's function failing to trace: report, don't crash
            msg = first_line(exc)
            raise OptbenchError(f"problem {self.name!r}: f fails at x0 of dim {self.dim}: {type(exc).__name__}: {msg}") from None
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise OptbenchError(f"problem {self.name!r}: f must return a scalar array, got {type(out).__name__}")
        if out.shape != ():
            raise OptbenchError(f"problem {self.name!r}: f must return a scalar, got shape {out.shape}")
        if not jnp.issubdtype(out.dtype, jnp.floating):  # autodiff needs a real floating value
            raise OptbenchError(f"problem {self.name!r}: f must return a floating-point value, got {out.dtype}")

    def known_minimisers(self):
        """All known global minimisers (x_star first), as an (k, dim) array (k may be 0)."""
        pts = []
        if self.x_star is not None:
            pts.append(self.x_star)
        pts.extend(np.asarray(m, dtype=np.float64).reshape(-1) for m in self.minima)
        return np.array(pts).reshape(-1, self.dim)

    def random_starts(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` starts: the standard x0 first, then n−1 drawn uniformly in the box.

        The draw depends only on (seed, problem name), so every optimizer sees the same starts.
        """
        if n < 1:
            raise OptbenchError(f"number of starts must be at least 1, got {n}")
        # the draw takes a 32-bit seed: a wider or negative one would alias another (2³² and −1
        # drew seed 0's and seed 4294967295's starts)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
            raise OptbenchError(f"seed must be an integer from 0 to 4294967295, got {seed!r}")
        import zlib
        rng = np.random.default_rng([int(seed), zlib.crc32(self.spec.encode())])
        lo, hi = self.bounds
        rand = lo + (hi - lo) * rng.random((n - 1, self.dim))
        return np.vstack([self.x0[None, :], rand])
