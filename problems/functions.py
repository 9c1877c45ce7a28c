"""Classic smooth test functions with known minima.

Sources: Rosenbrock (1960), "An automatic method for finding the greatest or least value of a
function", Comput. J. 3:175–184 — the n-dim form Σ 100(x_{i+1} − x_i²)² + (1 − x_i)² with
minimum 0 at (1, …, 1) and the standard start (−1.2, 1, −1.2, 1, …); Himmelblau (1972),
"Applied Nonlinear Programming", four minima of value 0. The two-variable functions (Beale,
Booth, Matyas, the camels, Goldstein–Price, McCormick) and the scalable Styblinski–Tang,
Rastrigin and Ackley are as catalogued by Jamil & Yang (2013), "A literature survey of benchmark
functions for global optimisation problems", Int. J. Math. Model. Numer. Optim. 4(2):150–194
(arXiv:1308.4008), and Surjanovic & Bingham's Virtual Library of Simulation Experiments; the
minima quoted there to 4–6 digits are given here to full double precision, refined by Newton's
method on ∇f (the quoted digits agree; ``info["f_star_quoted"]`` keeps the quoted value).

Those catalogues give boxes but no standard starts for the global-optimisation functions; the
x0 chosen here is stated in each docstring. Every function is dtype-generic: constants are Python
scalars, so a float32 x gives a float32 f.
"""
from __future__ import annotations

import math

import numpy as np
import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import MAX_ENTRIES, Problem
from .registry import register


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptbenchError(msg)


def _box(dim: int, lo: float, hi: float):
    return (np.full(dim, float(lo)), np.full(dim, float(hi)))


@register("sphere", family="classic", dims="any (dim, default 2)", dim_param="dim",
          tags=("classic", "convex", "scalable"))
def sphere(dim: int = 2) -> Problem:
    """Sphere Σ xᵢ²; f* = 0 at 0 (Jamil & Yang 2013); x0 = (1, …, 1), box [−5.12, 5.12]ⁿ."""
    _need(dim >= 1, f"sphere needs dim >= 1, got {dim}")

    def residuals(x):
        return x

    return Problem(name="sphere", residuals=residuals, x0=np.ones(dim), f_star=0.0, x_star=np.zeros(dim),
                   bounds=_box(dim, -5.12, 5.12), tags=("classic", "convex", "scalable", "least-squares"),
                   description="Σ xᵢ²")


@register("rosenbrock", family="classic", dims="n ≥ 2 (dim, default 2)", dim_param="dim",
          tags=("classic", "nonconvex", "scalable", "least-squares"))
def rosenbrock(dim: int = 2) -> Problem:
    """Rosenbrock's banana valley, n-dim chained form; f* = 0 at (1, …, 1), x0 = (−1.2, 1, …).

    Residuals rᵢ = 10(x_{i+1} − xᵢ²) and 1 − xᵢ, so Σ r² is the same f (Rosenbrock 1960).
    """
    _need(dim >= 2, f"rosenbrock needs dim >= 2, got {dim}")

    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def residuals(x):
        return jnp.concatenate([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]])

    x0 = np.where(np.arange(dim) % 2 == 0, -1.2, 1.0)
    return Problem(name="rosenbrock", f=f, residuals=residuals, x0=x0, f_star=0.0, x_star=np.ones(dim),
                   bounds=(-2.0 * np.ones(dim), 2.0 * np.ones(dim)),
                   tags=("classic", "nonconvex", "scalable", "least-squares"),
                   description="Σ 100(x_{i+1} − x_i²)² + (1 − x_i)²")


_HIMMELBLAU_MINIMA = (
    # (3, 2) is exact; the other three are roots of the gradient found to full double precision
    # by Newton's method on ∇f (the values quoted in Himmelblau 1972 to 6 digits agree).
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)


@register("himmelblau", family="classic", dims="2", tags=("classic", "nonconvex", "least-squares"))
def himmelblau() -> Problem:
    """Himmelblau's function (x² + y − 11)² + (x + y² − 7)²; four global minima, f* = 0."""

    def residuals(x):
        return jnp.stack([x[0] ** 2 + x[1] - 11.0, x[0] + x[1] ** 2 - 7.0])

    return Problem(name="himmelblau", residuals=residuals, x0=np.array([0.0, 0.0]), f_star=0.0,
                   x_star=np.array(_HIMMELBLAU_MINIMA[0]), minima=[np.array(m) for m in _HIMMELBLAU_MINIMA[1:]],
                   bounds=(np.array([-5.0, -5.0]), np.array([5.0, 5.0])), tags=("classic", "nonconvex", "least-squares"),
                   description="(x² + y − 11)² + (x + y² − 7)²")


@register("beale", family="classic", dims="2", tags=("classic", "nonconvex", "least-squares"))
def beale() -> Problem:
    """Beale (1958): Σᵢ (yᵢ − x(1 − yⁱ))², y = (1.5, 2.25, 2.625); f* = 0 at (3, 0.5).

    x0 = (1, 1), the start of Moré, Garbow & Hillstrom (1981, problem 5); box [−4.5, 4.5]².
    """

    def residuals(v):
        x, y = v[0], v[1]
        return jnp.stack([1.5 - x * (1.0 - y), 2.25 - x * (1.0 - y ** 2), 2.625 - x * (1.0 - y ** 3)])

    return Problem(name="beale", residuals=residuals, x0=np.array([1.0, 1.0]), f_star=0.0, x_star=np.array([3.0, 0.5]),
                   bounds=_box(2, -4.5, 4.5), tags=("classic", "nonconvex", "least-squares"),
                   description="(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²")


@register("booth", family="classic", dims="2", tags=("classic", "convex", "quadratic", "least-squares"))
def booth() -> Problem:
    """Booth: (x + 2y − 7)² + (2x + y − 5)²; f* = 0 at (1, 3) (Jamil & Yang 2013).

    A convex quadratic with κ = 9; x0 = (0, 0) (chosen), box [−10, 10]².
    """

    def residuals(v):
        return jnp.stack([v[0] + 2.0 * v[1] - 7.0, 2.0 * v[0] + v[1] - 5.0])

    return Problem(name="booth", residuals=residuals, x0=np.zeros(2), f_star=0.0, x_star=np.array([1.0, 3.0]),
                   bounds=_box(2, -10.0, 10.0), tags=("classic", "convex", "quadratic", "least-squares"),
                   description="(x + 2y − 7)² + (2x + y − 5)²")


@register("matyas", family="classic", dims="2", tags=("classic", "convex", "quadratic"))
def matyas() -> Problem:
    """Matyas: 0.26(x² + y²) − 0.48xy; f* = 0 at (0, 0) (Jamil & Yang 2013).

    A flat convex quadratic: Hessian [[0.52, −0.48], [−0.48, 0.52]], eigenvalues 0.04 and 1
    (κ = 25); x0 = (5, −3) (chosen), box [−10, 10]².
    """

    def f(v):
        return 0.26 * (v[0] ** 2 + v[1] ** 2) - 0.48 * v[0] * v[1]

    return Problem(name="matyas", f=f, x0=np.array([5.0, -3.0]), f_star=0.0, x_star=np.zeros(2),
                   bounds=_box(2, -10.0, 10.0), tags=("classic", "convex", "quadratic"),
                   description="0.26(x² + y²) − 0.48xy")


@register("three-hump-camel", family="classic", dims="2", tags=("classic", "nonconvex", "multimodal"))
def three_hump_camel() -> Problem:
    """Three-hump camel: 2x² − 1.05x⁴ + x⁶/6 + xy + y²; f* = 0 at (0, 0) (Jamil & Yang 2013).

    Two further local minima, f = 0.298638… at ±(1.74755…, −0.87378…) (Newton-refined).
    x0 = (2, −1) (chosen; near a local minimum), box [−5, 5]².
    """

    def f(v):
        x, y = v[0], v[1]
        return 2.0 * x ** 2 - 1.05 * x ** 4 + x ** 6 / 6.0 + x * y + y ** 2

    loc = np.array([1.7475523458302893, -0.8737761729151446])
    return Problem(name="three-hump-camel", f=f, x0=np.array([2.0, -1.0]), f_star=0.0, x_star=np.zeros(2),
                   local_minima=[(loc, 0.2986384422368604), (-loc, 0.2986384422368604)],
                   bounds=_box(2, -5.0, 5.0), tags=("classic", "nonconvex", "multimodal"),
                   description="2x² − 1.05x⁴ + x⁶/6 + xy + y²")


@register("six-hump-camel", family="classic", dims="2", tags=("classic", "nonconvex", "multimodal"))
def six_hump_camel() -> Problem:
    """Six-hump camel: (4 − 2.1x² + x⁴/3)x² + xy + (4y² − 4)y²; f* = −1.0316284534898774.

    Two global minima ±(0.0898420131…, −0.7126564030…) (Jamil & Yang 2013 quote
    −1.0316 at ±(0.0898, −0.7126); digits Newton-refined) and four local minima (f = −0.21546…
    and 2.10425…). x0 = (−1.5, 1.0) (chosen), box [−3, 3] × [−2, 2].
    """

    def f(v):
        x, y = v[0], v[1]
        return (4.0 - 2.1 * x ** 2 + x ** 4 / 3.0) * x ** 2 + x * y + (4.0 * y ** 2 - 4.0) * y ** 2

    g = np.array([0.08984201310031806, -0.7126564030207396])
    l1 = np.array([-1.7036067149699807, 0.7960835686726252])
    l2 = np.array([1.6071047529201974, 0.5686514548841314])
    return Problem(name="six-hump-camel", f=f, x0=np.array([-1.5, 1.0]), f_star=-1.0316284534898774, x_star=g,
                   minima=[-g], local_minima=[(l1, -0.21546382438371725), (-l1, -0.21546382438371725),
                                              (l2, 2.1042503103112584), (-l2, 2.1042503103112584)],
                   bounds=(np.array([-3.0, -2.0]), np.array([3.0, 2.0])), tags=("classic", "nonconvex", "multimodal"),
                   description="(4 − 2.1x² + x⁴/3)x² + xy + (4y² − 4)y²", info={"f_star_quoted": -1.0316})


@register("goldstein-price", family="classic", dims="2", tags=("classic", "nonconvex", "multimodal"))
def goldstein_price() -> Problem:
    """Goldstein & Price (1971): f* = 3 at (0, −1); local minima 30, 84, 840 (all exact).

    Goldstein, A. A. & Price, J. F. (1971), "On descent from local minima", Math. Comp. 25:569–574.
    The local minimisers (−0.6, −0.4), (1.8, 0.2), (1.2, 0.8) are exact: ∇f vanishes there in
    rational arithmetic. x0 = (−0.5, 0.5) (chosen), box [−2, 2]².
    """

    def f(v):
        x, y = v[0], v[1]
        a = 1.0 + (x + y + 1.0) ** 2 * (19.0 - 14.0 * x + 3.0 * x ** 2 - 14.0 * y + 6.0 * x * y + 3.0 * y ** 2)
        b = 30.0 + (2.0 * x - 3.0 * y) ** 2 * (18.0 - 32.0 * x + 12.0 * x ** 2 + 48.0 * y - 36.0 * x * y + 27.0 * y ** 2)
        return a * b

    return Problem(name="goldstein-price", f=f, x0=np.array([-0.5, 0.5]), f_star=3.0, x_star=np.array([0.0, -1.0]),
                   local_minima=[(np.array([-0.6, -0.4]), 30.0), (np.array([1.8, 0.2]), 84.0),
                                 (np.array([1.2, 0.8]), 840.0)],
                   bounds=_box(2, -2.0, 2.0), tags=("classic", "nonconvex", "multimodal"),
                   description="[1 + (x+y+1)²(19 − 14x + 3x² − 14y + 6xy + 3y²)]·[30 + (2x−3y)²(…)]")


@register("mccormick", family="classic", dims="2", tags=("classic", "nonconvex"))
def mccormick() -> Problem:
    """McCormick: sin(x + y) + (x − y)² − 1.5x + 2.5y + 1; f* = −√3/2 − π/3 at (½ − π/3, −½ − π/3).

    Closed form: ∇f = 0 gives x − y = 1 and cos(x + y) = −½; the minimum takes x + y = −2π/3
    (Jamil & Yang 2013 quote −1.9133 at (−0.547, −1.547)). The branch x + y = 4π/3 is a
    local minimum in the box [−1.5, 4] × [−3, 4]. x0 = (0, 0) (chosen).
    """

    def f(v):
        x, y = v[0], v[1]
        return jnp.sin(x + y) + (x - y) ** 2 - 1.5 * x + 2.5 * y + 1.0

    def value(x, y):
        return math.sin(x + y) + (x - y) ** 2 - 1.5 * x + 2.5 * y + 1.0

    xs = np.array([0.5 - math.pi / 3.0, -0.5 - math.pi / 3.0])
    xl = np.array([0.5 + 2.0 * math.pi / 3.0, -0.5 + 2.0 * math.pi / 3.0])
    return Problem(name="mccormick", f=f, x0=np.zeros(2), f_star=-math.sqrt(3.0) / 2.0 - math.pi / 3.0, x_star=xs,
                   local_minima=[(xl, value(*xl))], bounds=(np.array([-1.5, -3.0]), np.array([4.0, 4.0])),
                   tags=("classic", "nonconvex"), description="sin(x + y) + (x − y)² − 1.5x + 2.5y + 1",
                   info={"f_star_quoted": -1.9133})


# root of 4x³ − 32x + 5 = 0 (∂/∂x of ½(x⁴ − 16x² + 5x)) to double precision, by Newton's method
_ST_MIN = -2.903534027771177
_ST_LOCAL = 2.746802770990837


def _st_value(x: float) -> float:
    return 0.5 * (x ** 4 - 16.0 * x ** 2 + 5.0 * x)


@register("styblinski-tang", family="classic", dims="any (dim, default 2)", dim_param="dim",
          tags=("classic", "nonconvex", "multimodal", "scalable"))
def styblinski_tang(dim: int = 2) -> Problem:
    """Styblinski & Tang (1990): ½ Σ (xᵢ⁴ − 16xᵢ² + 5xᵢ); f* = −39.16616570377142·n.

    Separable; each coordinate has a global minimiser −2.9035340277711… and a local one
    2.7468027709908… (roots of 4x³ − 32x + 5), so 2ⁿ − 1 local minima; the all-local corner is
    recorded. Jamil & Yang (2013) quote −39.16599·n (a 5-digit rounding of x*).
    x0 = (0, …, 0) (chosen), box [−5, 5]ⁿ.
    """
    _need(dim >= 1, f"styblinski-tang needs dim >= 1, got {dim}")

    def f(x):
        return 0.5 * jnp.sum(x ** 4 - 16.0 * x ** 2 + 5.0 * x)

    return Problem(name="styblinski-tang", f=f, x0=np.zeros(dim), f_star=dim * _st_value(_ST_MIN),
                   x_star=np.full(dim, _ST_MIN), local_minima=[(np.full(dim, _ST_LOCAL), dim * _st_value(_ST_LOCAL))],
                   bounds=_box(dim, -5.0, 5.0), tags=("classic", "nonconvex", "multimodal", "scalable"),
                   description="½ Σ (xᵢ⁴ − 16xᵢ² + 5xᵢ)", info={"f_star_quoted": -39.16599 * dim})


@register("rastrigin", family="classic", dims="any (dim, default 2)", dim_param="dim",
          tags=("classic", "nonconvex", "multimodal", "scalable"))
def rastrigin(dim: int = 2) -> Problem:
    """Rastrigin: 10n + Σ (xᵢ² − 10 cos 2πxᵢ); f* = 0 at 0, a local minimum near every integer point.

    Rastrigin (1974); Jamil & Yang (2013). x0 = (2.5, …, 2.5) (chosen, between two
    local minima), box [−5.12, 5.12]ⁿ. The local minimum near (1, …, 1) is recorded (it sits at
    the root of x + 10π sin 2πx = 0 near 1, refined by Newton's method: x = 0.994958636…).

    Evaluated as Σ (xᵢ² + 20 sin²(πxᵢ)), the same function (1 − cos 2θ = 2 sin²θ) without the
    cancellation of 10n against 10 Σ cos 2πxᵢ near x* = 0, which left f − f* at rounding level
    there (relative error 5e-7 at xᵢ = 1e-6).
    """
    _need(dim >= 1, f"rastrigin needs dim >= 1, got {dim}")

    def f(x):
        s = jnp.sin(math.pi * x)
        return jnp.sum(x * x + 20.0 * s * s)

    xl = _rastrigin_local_one()
    fl = dim * (xl ** 2 + 20.0 * math.sin(math.pi * xl) ** 2)
    return Problem(name="rastrigin", f=f, x0=np.full(dim, 2.5), f_star=0.0, x_star=np.zeros(dim),
                   local_minima=[(np.full(dim, xl), fl)], bounds=_box(dim, -5.12, 5.12),
                   tags=("classic", "nonconvex", "multimodal", "scalable"),
                   description="10n + Σ (xᵢ² − 10 cos 2πxᵢ)")


def _rastrigin_local_one() -> float:
    """The stationary point of x² − 10 cos 2πx near 1: root of 2x + 20π sin 2πx, by Newton."""
    x = 1.0
    for _ in range(30):
        g = 2.0 * x + 20.0 * math.pi * math.sin(2.0 * math.pi * x)
        h = 2.0 + 40.0 * math.pi ** 2 * math.cos(2.0 * math.pi * x)
        x -= g / h
    return x


def _safe_norm(x):
    """‖x‖ with gradient 0 (a subgradient) at x = 0 instead of NaN: the double-where trick."""
    sq = jnp.sum(x * x)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


@register("ackley", family="classic", dims="any (dim, default 2)", dim_param="dim",
          tags=("classic", "nonconvex", "multimodal", "scalable", "nonsmooth-at-min"))
def ackley(dim: int = 2) -> Problem:
    """Ackley (1987): −20 exp(−0.2 ‖x‖/√n) − exp(Σ cos(2πxᵢ)/n) + 20 + e; f* = 0 at 0.

    Jamil & Yang (2013). Not differentiable at x* (a cone: f ≈ 4‖x‖/√n); the gradient
    returned there is 0, a valid subgradient. x0 = (2.5, …, 2.5) (chosen), box [−32.768, 32.768]ⁿ.

    Evaluated without cancellation, as −20 expm1(−0.2r) − e·expm1(−(2/n) Σ sin²(πxᵢ)) (the same
    function: cos 2θ = 1 − 2 sin²θ): written as above, four terms of size ~20 cancel near x*, so
    f − f* was rounding there (4.4e-16 at x* itself with jax 0.12's exp(1), one ulp from e, and
    8.8e-6 relative error at ‖x‖ = 1e-12), exactly where a benchmark reads f − f*.
    """
    _need(dim >= 1, f"ackley needs dim >= 1, got {dim}")

    def f(x):
        n = x.shape[0]
        r = _safe_norm(x) / math.sqrt(n)
        s = jnp.sin(math.pi * x)
        return -20.0 * jnp.expm1(-0.2 * r) - math.e * jnp.expm1(-2.0 * jnp.sum(s * s) / n)

    return Problem(name="ackley", f=f, x0=np.full(dim, 2.5), f_star=0.0, x_star=np.zeros(dim),
                   bounds=_box(dim, -32.768, 32.768),
                   tags=("classic", "nonconvex", "multimodal", "scalable", "nonsmooth-at-min"),
                   description="−20 exp(−0.2‖x‖/√n) − exp(mean cos 2πx) + 20 + e")


@register("quadratic", family="classic", dims="any (dim, default 2)", dim_param="dim",
          tags=("convex", "quadratic", "scalable"))
def quadratic(dim: int = 2, cond: float = 100.0, rotate: bool = True, seed: int = 0) -> Problem:
    """Convex quadratic ½ (x − 1)ᵀ A (x − 1), A with eigenvalues log-spaced in [1, cond]; f* = 0 at x = 1.

    With ``rotate`` the eigenvectors are a random orthogonal basis (seeded), else the axes.
    """
    _need(dim >= 1, f"quadratic needs dim >= 1, got {dim}")
    # it builds dense dim×dim matrices (the rotation, A): bounded like the other problems' data
    _need(dim * dim <= MAX_ENTRIES, f"quadratic: dim = {dim} makes {dim}×{dim} matrices, too large to build "
                                    f"(limit dim² <= 2e8)")
    _need(cond >= 1.0, f"quadratic needs cond >= 1, got {cond}")
    _need(seed >= 0, f"quadratic needs seed >= 0, got {seed}")
    lam = np.logspace(0.0, np.log10(cond), dim) if dim > 1 else np.array([1.0])
    if rotate and dim > 1:
        q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        q = q * np.sign(np.diag(r))
    else:
        q = np.eye(dim)
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)

    def f(x, data):
        e = x - 1.0
        return 0.5 * e @ (data["A"] @ e)

    return Problem(name="quadratic", f=f, x0=np.zeros(dim), f_star=0.0, x_star=np.ones(dim),
                   data={"A": a, "eigenvalues": lam}, bounds=(-np.ones(dim), 3.0 * np.ones(dim)),
                   tags=("convex", "quadratic", "scalable"),
                   # κ of the A built, not the cond asked for: at dim = 1 A = [1], κ = 1 whatever cond is
                   description=f"½(x−1)ᵀA(x−1), κ(A) = {lam[-1] / lam[0]:g}")
