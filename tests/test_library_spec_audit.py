"""Audit of the problem library's plumbing: spec strings, the formula translator, the classic
test functions and the root-finding / Lagrange systems, each checked against an independent
reading.

- Classic functions (problems/functions.py): every f and ∇f written again by hand in numpy and
  compared at x0 and random points of the box; every stated minimiser checked by the hand
  formulas, by scipy.optimize.minimize started near it, and against the values the literature
  quotes (Jamil & Yang 2013 survey; Himmelblau 1972); for the 2-D functions the stated list of
  minima is shown complete in the box by solving ∇f = 0 from a grid of starts; Goldstein–Price's
  minimisers are checked exact in rational arithmetic.
- Root and Lagrange systems (problems/roots.py): residuals and Jacobians written by hand and
  compared with the library's residuals, jax.jacfwd and central differences; every stated root
  satisfies F = 0; the constrained minima re-found by scipy's SLSQP; root counts by scipy.
- Spec strings (problems/registry.py with optbench_core's parser): spacing, repeated, unknown and
  mistyped keys, ``none``, sizes, unicode, empty values — one line naming the problem and the
  key — and every registered problem's spec parsing back to the same problem.
- The formula translator (problems/expr.py): what it refuses, its limits (nesting depth, long
  sums), its order of evaluation. The shipped NIST models themselves are already compared with
  hand-written numpy models, all 27 nonlinear and 11 linear datasets at both starts and the
  certified values, in tests/test_problems_audit.py, so that is not repeated here.

The library's JAX functions are only called eagerly, on a few points (nothing is jitted).
"""
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import problems
from optbench_core import OptbenchError
from problems import expr
from problems.expr import Formula

PI = math.pi


# -- the classic functions, written again -------------------------------------------------------

def _himmelblau(v):
    x, y = v
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def _himmelblau_g(v):
    x, y = v
    a, b = x * x + y - 11, x + y * y - 7
    return np.array([4 * x * a + 2 * b, 2 * a + 4 * y * b])


_BEALE_C = ((1.5, 1), (2.25, 2), (2.625, 3))


def _beale(v):
    x, y = v
    return sum((c - x * (1 - y ** k)) ** 2 for c, k in _BEALE_C)


def _beale_g(v):
    x, y = v
    gx = sum(-2 * (c - x * (1 - y ** k)) * (1 - y ** k) for c, k in _BEALE_C)
    gy = sum(2 * (c - x * (1 - y ** k)) * x * k * y ** (k - 1) for c, k in _BEALE_C)
    return np.array([gx, gy])


def _booth(v):
    x, y = v
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _booth_g(v):
    x, y = v
    a, b = x + 2 * y - 7, 2 * x + y - 5
    return np.array([2 * a + 4 * b, 4 * a + 2 * b])


def _matyas(v):
    x, y = v
    return 0.26 * (x * x + y * y) - 0.48 * x * y


def _matyas_g(v):
    x, y = v
    return np.array([0.52 * x - 0.48 * y, 0.52 * y - 0.48 * x])


def _camel3(v):
    x, y = v
    return 2 * x * x - 1.05 * x ** 4 + x ** 6 / 6 + x * y + y * y


def _camel3_g(v):
    x, y = v
    return np.array([4 * x - 4.2 * x ** 3 + x ** 5 + y, x + 2 * y])


def _camel6(v):
    x, y = v
    return 4 * x * x - 2.1 * x ** 4 + x ** 6 / 3 + x * y - 4 * y * y + 4 * y ** 4


def _camel6_g(v):
    x, y = v
    return np.array([8 * x - 8.4 * x ** 3 + 2 * x ** 5 + y, x - 8 * y + 16 * y ** 3])


def _gp_parts(x, y):
    """Goldstein–Price as A·B with the partial derivatives of A and B (works on Fractions)."""
    u, w = x + y + 1, 2 * x - 3 * y
    p = 19 - 14 * x + 3 * x * x - 14 * y + 6 * x * y + 3 * y * y
    q = 18 - 32 * x + 12 * x * x + 48 * y - 36 * x * y + 27 * y * y
    a, b = 1 + u * u * p, 30 + w * w * q
    ap = 2 * u * p + u * u * (-14 + 6 * x + 6 * y)            # ∂A/∂x = ∂A/∂y (P_x = P_y)
    bx = 4 * w * q + w * w * (-32 + 24 * x - 36 * y)
    by = -6 * w * q + w * w * (48 - 36 * x + 54 * y)
    return a, b, ap, bx, by


def _gp(v):
    a, b, *_ = _gp_parts(*v)
    return a * b


def _gp_g(v):
    a, b, ap, bx, by = _gp_parts(*v)
    return np.array([ap * b + a * bx, ap * b + a * by])


def _mccormick(v):
    x, y = v
    return math.sin(x + y) + (x - y) ** 2 - 1.5 * x + 2.5 * y + 1


def _mccormick_g(v):
    x, y = v
    c = math.cos(x + y)
    return np.array([c + 2 * (x - y) - 1.5, c - 2 * (x - y) + 2.5])


def _sphere(v):
    return float(np.sum(v * v))


def _rosenbrock(v):
    return float(sum(100 * (v[i + 1] - v[i] ** 2) ** 2 + (1 - v[i]) ** 2 for i in range(len(v) - 1)))


def _rosenbrock_g(v):
    g = np.zeros(len(v))
    for i in range(len(v) - 1):
        g[i] += -400 * v[i] * (v[i + 1] - v[i] ** 2) - 2 * (1 - v[i])
        g[i + 1] += 200 * (v[i + 1] - v[i] ** 2)
    return g


def _st(v):
    return float(0.5 * np.sum(v ** 4 - 16 * v ** 2 + 5 * v))


def _rastrigin(v):
    return float(10 * len(v) + np.sum(v ** 2 - 10 * np.cos(2 * PI * v)))


def _ackley(v):
    n = len(v)
    r = math.sqrt(float(np.sum(v * v)) / n)
    return -20 * math.exp(-0.2 * r) - math.exp(float(np.sum(np.cos(2 * PI * v))) / n) + 20 + math.e


def _ackley_g(v):
    n = len(v)
    r = math.sqrt(float(np.sum(v * v)) / n)
    c = float(np.sum(np.cos(2 * PI * v))) / n
    return 4 * math.exp(-0.2 * r) * v / (n * r) + 2 * PI / n * np.sin(2 * PI * v) * math.exp(c)


CLASSIC = {   # spec → (f, ∇f), by hand
    "sphere:dim=3": (_sphere, lambda v: 2 * v),
    "rosenbrock": (_rosenbrock, _rosenbrock_g),
    "rosenbrock:dim=5": (_rosenbrock, _rosenbrock_g),
    "himmelblau": (_himmelblau, _himmelblau_g),
    "beale": (_beale, _beale_g),
    "booth": (_booth, _booth_g),
    "matyas": (_matyas, _matyas_g),
    "three-hump-camel": (_camel3, _camel3_g),
    "six-hump-camel": (_camel6, _camel6_g),
    "goldstein-price": (_gp, _gp_g),
    "mccormick": (_mccormick, _mccormick_g),
    "styblinski-tang:dim=3": (_st, lambda v: 0.5 * (4 * v ** 3 - 32 * v + 5)),
    "rastrigin:dim=3": (_rastrigin, lambda v: 2 * v + 20 * PI * np.sin(2 * PI * v)),
    "ackley:dim=3": (_ackley, _ackley_g),
}

# the standard starts, as the docstrings (and for Rosenbrock and Beale the literature) give them
X0 = {"sphere:dim=3": [1, 1, 1], "rosenbrock": [-1.2, 1], "rosenbrock:dim=5": [-1.2, 1, -1.2, 1, -1.2],
      "himmelblau": [0, 0], "beale": [1, 1], "booth": [0, 0], "matyas": [5, -3], "three-hump-camel": [2, -1],
      "six-hump-camel": [-1.5, 1], "goldstein-price": [-0.5, 0.5], "mccormick": [0, 0],
      "styblinski-tang:dim=3": [0, 0, 0], "rastrigin:dim=3": [2.5] * 3, "ackley:dim=3": [2.5] * 3}


def test_every_classic_function_is_covered():
    """A classic function added to the library must be added here too."""
    classic = {d["family"]: d["names"] for d in problems.families()}["classic"]
    covered = {s.partition(":")[0] for s in CLASSIC} | {"quadratic"}
    assert set(classic) == covered


@pytest.mark.parametrize("spec", list(CLASSIC))
def test_classic_value_and_gradient_match_the_hand_formulas(spec):
    f, g = CLASSIC[spec]
    p = problems.get(spec)
    assert np.array_equal(p.x0, np.array(X0[spec], float))
    lo, hi = p.bounds
    pts = [p.x0] + list(lo + (hi - lo) * np.random.default_rng(3).random((3, p.dim)))
    grad = jax.grad(lambda z: p.objective(z, p.data))
    for x in pts:
        fx, gx = f(x), g(x)
        assert float(p(x)) == pytest.approx(fx, rel=1e-13, abs=1e-13), x
        assert np.allclose(np.asarray(grad(jnp.asarray(x))), gx, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(gx).max())), x
    if p.has_residuals:   # f = Σ r² (no ½), the library's convention
        r = np.asarray(p.residual_vector(jnp.asarray(pts[1])))
        assert float(r @ r) == pytest.approx(f(pts[1]), rel=1e-13)


@pytest.mark.parametrize("spec", list(CLASSIC))
def test_stated_minima_are_minima(spec):
    """f(x*) = f* and ∇f(x*) = 0 by the hand formulas, a positive definite (finite-difference)
    Hessian, and BFGS started 1e-3 away returns to the same point and value; the same for every
    further global minimiser and every recorded local minimum."""
    f, g = CLASSIC[spec]
    p = problems.get(spec)
    pts = [(x, p.f_star) for x in p.known_minimisers()] + [(np.asarray(x, float), v) for x, v in p.local_minima]
    assert pts
    rng = np.random.default_rng(5)
    for x, val in pts:
        assert f(x) == pytest.approx(val, rel=1e-13, abs=1e-14), x
        if spec.startswith("ackley"):     # a cone at x* = 0: no gradient, no Hessian
            assert f(x + 1e-6) > f(x)
            continue
        assert np.linalg.norm(g(x)) <= 1e-9 * max(1.0, abs(val)), (x, g(x))
        h = 1e-5 * max(1.0, np.abs(x).max())
        hess = np.array([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(p.dim)])
        assert np.linalg.eigvalsh(0.5 * (hess + hess.T)).min() > 0, x
        res = optimize.minimize(f, x + 1e-3 * rng.standard_normal(p.dim), jac=g, method="BFGS",
                                options={"gtol": 1e-10})
        assert np.allclose(res.x, x, atol=1e-6) and res.fun == pytest.approx(val, rel=1e-9, abs=1e-12), (x, res.x)


# values as the literature quotes them (to the digits quoted): Jamil & Yang (2013); Himmelblau (1972)
QUOTED = {
    "himmelblau": (0.0, [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)], 6),
    "beale": (0.0, [(3.0, 0.5)], 12), "booth": (0.0, [(1.0, 3.0)], 12), "matyas": (0.0, [(0.0, 0.0)], 12),
    "three-hump-camel": (0.0, [(0.0, 0.0)], 12),
    "six-hump-camel": (-1.0316, [(0.0898, -0.7126), (-0.0898, 0.7126)], 4),
    "goldstein-price": (3.0, [(0.0, -1.0)], 12), "mccormick": (-1.9133, [(-0.54719, -1.54719)], 4),
    "styblinski-tang:dim=3": (-39.16599 * 3, [(-2.903534,) * 3], 4),
    "rastrigin:dim=3": (0.0, [(0.0,) * 3], 12), "ackley:dim=3": (0.0, [(0.0,) * 3], 12),
    "sphere:dim=3": (0.0, [(0.0,) * 3], 12), "rosenbrock:dim=5": (0.0, [(1.0,) * 5], 12),
}


@pytest.mark.parametrize("spec", list(QUOTED))
def test_minima_agree_with_the_quoted_values(spec):
    f_q, xs_q, digits = QUOTED[spec]
    p = problems.get(spec)
    tol = 10.0 ** -digits
    assert abs(p.f_star - f_q) <= 10 * tol * max(1.0, abs(f_q)), (p.f_star, f_q)
    mins = p.known_minimisers()
    assert len(mins) == len(xs_q)
    for xq in xs_q:    # every quoted minimiser is a stated one (any order)
        assert any(np.all(np.abs(m - np.array(xq)) <= 1.5 * tol) for m in mins), xq
    if "f_star_quoted" in p.info:
        assert p.info["f_star_quoted"] == pytest.approx(f_q, rel=1e-12)


def _minima_in_box(f, g, lo, hi, n=17):
    """Every local minimiser in the box: ∇f = 0 solved from an n × n grid of starts, kept where
    the finite-difference Hessian is positive definite; distinct to 1e-6."""
    found = []
    for a in np.linspace(lo[0], hi[0], n):
        for b in np.linspace(lo[1], hi[1], n):
            sol = optimize.root(g, [a, b], method="hybr", tol=1e-13)
            x = sol.x
            if np.any(x < lo - 1e-9) or np.any(x > hi + 1e-9):
                continue
            if np.linalg.norm(g(x)) > 1e-7 * max(1.0, np.abs(x).max()):
                continue
            hess = np.array([(g(x + 1e-5 * e) - g(x - 1e-5 * e)) / 2e-5 for e in np.eye(2)])
            if np.linalg.eigvalsh(0.5 * (hess + hess.T)).min() <= 1e-8:
                continue
            if not any(np.allclose(x, q, atol=1e-6) for q, _ in found):
                found.append((x, f(x)))
    return found


@pytest.mark.parametrize("spec", ["himmelblau", "beale", "booth", "matyas", "three-hump-camel", "six-hump-camel",
                                  "goldstein-price", "mccormick"])
def test_two_dimensional_minima_lists_are_complete(spec):
    """The global minimisers plus the recorded local minima are all the minima in the box
    (Himmelblau: exactly four, all of value 0; six-hump camel: 2 global and 4 local; ...)."""
    f, g = CLASSIC[spec]
    p = problems.get(spec)
    lo, hi = p.bounds
    found = _minima_in_box(f, g, lo, hi)
    stated = [(x, p.f_star) for x in p.known_minimisers()] + [(np.asarray(x, float), v) for x, v in p.local_minima]
    assert len(found) == len(stated), ([x for x, _ in found], [x for x, _ in stated])
    for x, v in found:
        match = [sv for sx, sv in stated if np.allclose(x, sx, atol=1e-6)]
        assert match and v == pytest.approx(match[0], rel=1e-10, abs=1e-12), x
    if spec == "himmelblau":
        assert len(found) == 4 and all(abs(v) < 1e-20 for _, v in found)


def test_goldstein_price_minimisers_are_exact_rationals():
    """∇f vanishes exactly at (0, −1), (−3/5, −2/5), (9/5, 1/5), (6/5, 4/5), where f = 3, 30, 84, 840."""
    p = problems.get("goldstein-price")
    exact = [((0, -1), 3), ((Fraction(-3, 5), Fraction(-2, 5)), 30), ((Fraction(9, 5), Fraction(1, 5)), 84),
             ((Fraction(6, 5), Fraction(4, 5)), 840)]
    stated = [(p.x_star, p.f_star)] + [(np.asarray(x), v) for x, v in p.local_minima]
    assert len(stated) == 4
    for (xy, val), (sx, sv) in zip(exact, stated):
        x, y = Fraction(xy[0]), Fraction(xy[1])
        a, b, ap, bx, by = _gp_parts(x, y)
        assert a * b == val and ap * b + a * bx == 0 and ap * b + a * by == 0
        assert sv == val and np.array_equal(sx, [float(x), float(y)])


def test_closed_forms_behind_the_stated_digits():
    """Styblinski–Tang's coordinates are the roots of 4x³ − 32x + 5, McCormick's minimum is
    −√3/2 − π/3 at (½ − π/3, −½ − π/3), Rastrigin's recorded local minimum solves x + 10π sin 2πx = 0."""
    roots = np.sort(np.roots([4.0, 0.0, -32.0, 5.0]).real)
    st = problems.get("styblinski-tang:dim=4")
    assert st.x_star == pytest.approx(np.full(4, roots[0]), rel=1e-14)
    assert st.local_minima[0][0] == pytest.approx(np.full(4, roots[2]), rel=1e-14)
    one = 0.5 * (roots[0] ** 4 - 16 * roots[0] ** 2 + 5 * roots[0])
    assert st.f_star == pytest.approx(4 * one, rel=1e-14) and one == pytest.approx(-39.16616570377142, rel=1e-14)
    mc = problems.get("mccormick")
    assert mc.f_star == pytest.approx(-math.sqrt(3) / 2 - PI / 3, rel=1e-15)
    assert mc.x_star == pytest.approx([0.5 - PI / 3, -0.5 - PI / 3], rel=1e-15)
    xl = problems.get("rastrigin:dim=2").local_minima[0][0][0]
    assert abs(xl + 10 * PI * math.sin(2 * PI * xl)) < 1e-13 and 0.99 < xl < 1.0


def test_matyas_and_booth_hessians_are_as_documented():
    """Matyas: Hessian eigenvalues 0.04 and 1 (κ = 25; its docstring said 0.04 and 0.5); Booth κ = 9."""
    hm = np.array([[0.52, -0.48], [-0.48, 0.52]])
    assert np.allclose(np.linalg.eigvalsh(hm), [0.04, 1.0])
    doc = problems.functions.matyas.__doc__
    assert "0.04 and 1" in doc and "0.5 of" not in doc
    hb = 2 * np.array([[1, 2], [2, 1]]).T @ np.array([[1, 2], [2, 1]])
    ev = np.linalg.eigvalsh(hb)
    assert ev[-1] / ev[0] == pytest.approx(9.0) and "κ = 9" in problems.functions.booth.__doc__


@pytest.mark.parametrize("spec,kappa", [("quadratic", 100.0), ("quadratic:dim=6:cond=1e4:seed=3", 1e4),
                                        ("quadratic:dim=4:rotate=false", 100.0), ("quadratic:dim=1", 1.0)])
def test_quadratic_is_what_it_says(spec, kappa):
    """A symmetric with eigenvalues log-spaced in [1, cond] (diagonal without rotation), f = ½eᵀAe,
    e = x − 1, and the description's κ is the matrix's (at dim = 1 it said the requested cond)."""
    p = problems.get(spec)
    a = p.data["A"]
    lam = np.linalg.eigvalsh(a)
    assert np.allclose(a, a.T, rtol=0, atol=0)
    assert np.allclose(lam, np.logspace(0, np.log10(kappa), p.dim), rtol=1e-12)
    if "rotate=false" in spec or p.dim == 1:
        assert np.array_equal(a, np.diag(np.diag(a)))
    x = np.random.default_rng(1).standard_normal(p.dim)
    e = x - 1
    assert float(p(x)) == pytest.approx(0.5 * e @ a @ e, rel=1e-13)
    assert float(p(np.ones(p.dim))) == 0.0 and p.f_star == 0.0
    assert p.description.endswith(f"κ(A) = {kappa:g}")


# -- root finding and Lagrange systems, written again ----------------------------------------------

def _powell_f(v):
    a, b, c, d = v
    return np.array([a + 10 * b, math.sqrt(5) * (c - d), (b - 2 * c) ** 2, math.sqrt(10) * (a - d) ** 2])


def _powell_j(v):
    a, b, c, d = v
    return np.array([[1, 10, 0, 0], [0, 0, math.sqrt(5), -math.sqrt(5)], [0, 2 * (b - 2 * c), -4 * (b - 2 * c), 0],
                     [2 * math.sqrt(10) * (a - d), 0, 0, -2 * math.sqrt(10) * (a - d)]], float)


def _theta(x1, x2):
    t = math.atan(x2 / x1) / (2 * PI) if x1 != 0 else 0.25 * math.copysign(1.0, x2)
    return t + 0.5 if x1 < 0 else t


def _helical_f(v):
    x1, x2, x3 = v
    return np.array([10 * (x3 - 10 * _theta(x1, x2)), 10 * (math.hypot(x1, x2) - 1), x3])


def _helical_j(v):
    x1, x2, x3 = v
    s = x1 * x1 + x2 * x2
    r = math.sqrt(s)
    # dθ/dx1 = −x2/(2π s), dθ/dx2 = x1/(2π s)
    return np.array([[100 * x2 / (2 * PI * s), -100 * x1 / (2 * PI * s), 10], [10 * x1 / r, 10 * x2 / r, 0], [0, 0, 1]])


def _broyden_f(v):
    xp, xn = np.concatenate([[0.0], v[:-1]]), np.concatenate([v[1:], [0.0]])
    return (3 - 2 * v) * v - xp - 2 * xn + 1


def _broyden_j(v):
    n = len(v)
    return np.diag(3 - 4 * v) - np.eye(n, k=-1) - 2 * np.eye(n, k=1)


def _bv_f(v):
    n = len(v)
    h = 1.0 / (n + 1)
    t = np.arange(1, n + 1) * h
    xp, xn = np.concatenate([[0.0], v[:-1]]), np.concatenate([v[1:], [0.0]])
    return 2 * v - xp - xn + h * h * (v + t + 1) ** 3 / 2


def _bv_j(v):
    n = len(v)
    h = 1.0 / (n + 1)
    t = np.arange(1, n + 1) * h
    return np.diag(2 + 1.5 * h * h * (v + t + 1) ** 2) - np.eye(n, k=-1) - np.eye(n, k=1)


ROOTS = {   # spec → (F, J), by hand
    "root:cubic": (lambda v: np.array([v[0] ** 3 - 2 * v[0] + 2]), lambda v: np.array([[3 * v[0] ** 2 - 2]])),
    "root:cos": (lambda v: np.array([math.cos(v[0]) - v[0]]), lambda v: np.array([[-math.sin(v[0]) - 1]])),
    "root:powell-singular": (_powell_f, _powell_j),
    "root:helical-valley": (_helical_f, _helical_j),
    "root:broyden-tridiagonal": (_broyden_f, _broyden_j),
    "root:broyden-tridiagonal:n=3": (_broyden_f, _broyden_j),
    "root:discrete-boundary-value": (_bv_f, _bv_j),
    "root:discrete-boundary-value:n=1": (_bv_f, _bv_j),
    "lagrange:circle": (lambda v: np.array([1 + 2 * v[2] * v[0], 1 + 2 * v[2] * v[1], v[0] ** 2 + v[1] ** 2 - 1]),
                        lambda v: np.array([[2 * v[2], 0, 2 * v[0]], [0, 2 * v[2], 2 * v[1]], [2 * v[0], 2 * v[1], 0]])),
    "lagrange:plane": (lambda v: np.array([2 * v[0] + v[3], 2 * v[1] + 2 * v[3], 2 * v[2] + 3 * v[3],
                                           v[0] + 2 * v[1] + 3 * v[2] - 14]),
                       lambda v: np.array([[2, 0, 0, 1], [0, 2, 0, 2], [0, 0, 2, 3], [1, 2, 3, 0]], float)),
    "lagrange:hyperbola": (lambda v: np.array([2 * v[0] + v[2] * v[1], 2 * v[1] + v[2] * v[0], v[0] * v[1] - 1]),
                           lambda v: np.array([[2, v[2], v[1]], [v[2], 2, v[0]], [v[1], v[0], 0]])),
}


def test_every_root_and_lagrange_system_is_covered():
    names = {n for n in problems.names() if n.startswith(("root:", "lagrange:"))}
    assert names == {s.split(":n=")[0] for s in ROOTS}


@pytest.mark.parametrize("spec", list(ROOTS))
def test_system_and_jacobian_match_the_hand_formulas(spec):
    """At x0 and two random points of the box: residuals = hand F; jax.jacfwd of the library's
    residuals = hand J = central differences of hand F."""
    F, J = ROOTS[spec]
    p = problems.get(spec)
    lo, hi = p.bounds
    pts = [p.x0] + list(lo + (hi - lo) * np.random.default_rng(2).random((2, p.dim)))
    jac = jax.jacfwd(lambda z: p.residual_vector(z, p.data))
    for x in pts:
        fx, jx = F(x), J(x)
        assert fx.shape == (p.dim,) and jx.shape == (p.dim, p.dim)   # square systems
        assert np.allclose(np.asarray(p.residual_vector(jnp.asarray(x), p.data)), fx, rtol=1e-13, atol=1e-13)
        assert np.allclose(np.asarray(jac(jnp.asarray(x))), jx, rtol=1e-12, atol=1e-12)
        h = 1e-6
        fd = np.column_stack([(F(x + h * e) - F(x - h * e)) / (2 * h) for e in np.eye(p.dim)])
        assert np.allclose(fd, jx, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(jx).max())), x


@pytest.mark.parametrize("spec", list(ROOTS))
def test_stated_roots_solve_the_system(spec):
    """Every stated root (x*, further minima, the Lagrange maximisers) has F = 0 by the hand
    formulas; f* = 0; where no x* is stated, scipy's hybrid method finds a root in the box from x0."""
    F, J = ROOTS[spec]
    p = problems.get(spec)
    assert p.f_star == 0.0 and "root" in p.tags
    roots = list(p.known_minimisers()) + [np.asarray(r) for r in p.info.get("other_roots", [])]
    if p.x_star is None:
        sol = optimize.root(F, p.x0, jac=J, method="hybr", tol=1e-14)
        lo, hi = p.bounds
        assert np.all(lo <= sol.x) and np.all(sol.x <= hi)
        roots.append(sol.x)
    for r in roots:
        assert np.abs(F(r)).max() <= 1e-13 * max(1.0, np.abs(r).max()), (r, F(r))


def test_one_dimensional_roots_and_the_newton_cycle():
    """x³ − 2x + 2: its only real root (numpy.roots), Newton from 0 cycles 0 → 1 → 0, r² has a
    local minimum at √(2/3) with r > 0; cos x − x: the Dottie number, by fixed-point iteration."""
    cubic = problems.get("root:cubic")
    rts = np.roots([1.0, 0.0, -2.0, 2.0])
    real = rts[np.abs(rts.imag) < 1e-12].real
    assert len(real) == 1 and cubic.x_star[0] == pytest.approx(real[0], rel=1e-14)
    x = cubic.x0[0]
    seq = [x]
    for _ in range(4):
        x = x - (x ** 3 - 2 * x + 2) / (3 * x * x - 2)
        seq.append(x)
    assert seq == [0.0, 1.0, 0.0, 1.0, 0.0]
    (xl, fl), = cubic.local_minima
    assert xl[0] == pytest.approx(math.sqrt(2 / 3), rel=1e-15)
    assert fl == pytest.approx((xl[0] ** 3 - 2 * xl[0] + 2) ** 2, rel=1e-15) and fl > 0
    c = 1.0
    for _ in range(200):
        c = math.cos(c)
    assert problems.get("root:cos").x_star[0] == pytest.approx(c, rel=1e-15, abs=0)
    assert problems.get("root:cos").x0[0] == 1.0


@pytest.mark.parametrize("spec,objective,constraint", [
    ("lagrange:circle", lambda z: z[0] + z[1], lambda z: z[0] ** 2 + z[1] ** 2 - 1),
    ("lagrange:plane", lambda z: z @ z, lambda z: z[0] + 2 * z[1] + 3 * z[2] - 14),
    ("lagrange:hyperbola", lambda z: z @ z, lambda z: z[0] * z[1] - 1),
])
def test_lagrange_systems_are_the_constrained_problems(spec, objective, constraint):
    """SLSQP on the constrained problem itself finds the stated minimiser and minimum; the
    stated multiplier makes ∇g + λ∇c vanish there; scipy from a grid of starts finds no root
    beyond x*, the further minima and the recorded other roots."""
    F, J = ROOTS[spec]
    p = problems.get(spec)
    n = p.dim - 1
    xs, lam = p.info["constrained_x"], p.info["multiplier"]
    assert np.array_equal(p.x_star, np.concatenate([xs, lam]))
    assert objective(xs) == pytest.approx(p.info["constrained_min"], rel=1e-15)
    res = optimize.minimize(objective, xs + 0.05, constraints=[{"type": "eq", "fun": constraint}], method="SLSQP",
                            options={"ftol": 1e-14})
    assert res.success and res.fun == pytest.approx(p.info["constrained_min"], rel=1e-8)
    assert any(np.allclose(res.x, m[:n], atol=1e-6) for m in p.known_minimisers())
    known = list(p.known_minimisers()) + [np.asarray(r) for r in p.info["other_roots"]]
    lo, hi = p.bounds
    rng = np.random.default_rng(0)
    for start in lo + (hi - lo) * rng.random((40, p.dim)):
        sol = optimize.root(F, start, jac=J, method="hybr", tol=1e-13)
        if sol.success and np.abs(F(sol.x)).max() < 1e-10:
            assert any(np.allclose(sol.x, k, atol=1e-7) for k in known), sol.x


# -- spec strings ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,same_as", [
    ("rosenbrock: dim = 3", "rosenbrock:dim=3"), ("  rosenbrock:dim=3  ", "rosenbrock:dim=3"),
    ("rosenbrock:dim=3.0", "rosenbrock:dim=3"), ("quadratic:rotate=yes", "quadratic:rotate=true"),
    ("quadratic:rotate=on", "quadratic"), ("quadratic:rotate=NO", "quadratic:rotate=false"),
    ("quadratic:cond=1e2", "quadratic"), ("quadratic:seed=0:dim=2", "quadratic"),
    ("nist:Misra1a:start=1", "nist:Misra1a"), ("mgh:watson:n=6", "mgh:watson"),
])
def test_spellings_of_one_setting_are_one_problem(spec, same_as):
    a, b = problems.get(spec), problems.get(same_as)
    assert a._identity == b._identity and a.dim == b.dim and np.array_equal(a.x0, b.x0)


def _all_specs():
    names = [n for n in problems.names() if not n.endswith(":")]
    return names + ["nist:Misra1a:start=2", "nist-linear:Longley", "rosenbrock:dim=3.0", "quadratic:cond=1e2:rotate=no",
                    "mgh:chebyquad:n=10:m=12", "logreg:separable=yes:lam=0.1", " styblinski-tang : dim = 4 ",
                    "mlp:activation=sigmoid:hidden=3", "linreg:noise=1e-300"]


def test_every_spec_reads_back_as_the_same_problem():
    """problem.spec parses back to the same setting (identity), start, size and minimum."""
    for spec in _all_specs():
        p = problems.get(spec)
        q = problems.get(p.spec)
        assert q.spec == p.spec and q._identity == p._identity, spec
        assert q.dim == p.dim and np.array_equal(q.x0, p.x0) and q.f_star == p.f_star, spec
        assert (p.x_star is None) == (q.x_star is None)
        assert p.x_star is None or np.array_equal(p.x_star, q.x_star)


# (spec, the parameter the message must name); every message also names the problem
BAD_SPECS = [
    ("rosenbrock:dim=2.5", "dim"), ("quadratic:seed=2.5", "seed"), ("quadratic:rotate=maybe", "rotate"),
    ("quadratic:rotate=1", "rotate"), ("quadratic:cond=abc", "cond"), ("quadratic:cond=true", "cond"),
    ("quadratic:cond=1e400", "cond"), ("quadratic:cond=nan", "cond"), ("rosenbrock:dim=nan", "dim"),
    ("rosenbrock:dim=0x10", "dim"), ("rosenbrock:dim=true", "dim"), ("mgh:watson:n=1.5", "n"),
    ("nist:Misra1a:start=1.5", "start"), ("rosenbrock:dim=3:dim=4", "dim"), ("rosenbrock:dimm=3", "dimm"),
    ("rosenbrock:dím=3", "dím"), ("rosenbrock:dim=", "dim"), ("rosenbrock:dim=0", "dim"),
    ("rosenbrock:dim=-5", "dim"), ("sphere:dim=0", "dim"), ("styblinski-tang:dim=-1", "dim"),
    ("rosenbrock:dim=100000001", "dim"), ("rosenbrock:dim=1e300", "dim"), ("rosenbrock:dim=inf", "dim"),
    ("quadratic:dim=20000", "dim"), ("quadratic:seed=1e20", "seed"), ("root:broyden-tridiagonal:n=0", "n"),
    ("root:cubic:n=3", "n"), ("himmelblau:dim=2", "dim"),
    # `none` reads as None, which was passed through: a silently unrotated quadratic, a TypeError
    ("quadratic:rotate=none", "rotate"), ("logreg:separable=null", "separable"), ("rosenbrock:dim=none", "dim"),
    ("quadratic:cond=none", "cond"), ("linreg:noise=none", "noise"), ("mgh:watson:n=none", "n"),
    ("nist:Misra1a:start=none", "start"),
]


@pytest.mark.parametrize("spec,key", BAD_SPECS)
def test_bad_specs_are_one_line_errors_naming_problem_and_key(spec, key):
    with pytest.raises(OptbenchError) as e:
        problems.get(spec)
    msg = str(e.value)
    name = spec.split(":")[0] if not spec.startswith(("mgh:", "nist:", "root:")) else ":".join(spec.split(":")[:2])
    assert "\n" not in msg and len(msg) < 300, msg
    assert name in msg, msg
    assert any(k in msg for k in (repr(key), f"{key}=", f"{key} ")), msg


def test_type_errors_name_the_problem():
    """Was "problem parameter 'dim' must be an integer, got 2.5": which of `--problems a,b,c`?"""
    with pytest.raises(OptbenchError, match=r"^problem 'rosenbrock': parameter 'dim' must be an integer, got 2\.5$"):
        problems.get("rosenbrock:dim=2.5")
    with pytest.raises(OptbenchError, match=r"^problem 'nist:Misra1a': parameter 'start' must be an integer"):
        problems.get("nist:Misra1a:start=1.5")


@pytest.mark.parametrize("spec,what", [("quadratic:rotate=none", "true or false"), ("logreg:separable=none", "true or false"),
                                       ("rosenbrock:dim=none", "an integer"), ("ridge:lam=null", "a number")])
def test_none_is_refused_for_booleans_and_numbers(spec, what):
    """`none` for a boolean was accepted (``quadratic:rotate=none`` ran as an unrotated quadratic
    under a spec of its own); for a number it failed inside the factory on comparing None."""
    name, key = spec.rsplit(":", 1)[0], spec.rsplit(":", 1)[1].split("=")[0]
    with pytest.raises(OptbenchError, match=f"^problem '{name}': parameter '{key}' must be {what}, got none$"):
        problems.get(spec)


def test_none_stays_allowed_where_the_default_is_none(registry_snapshot):
    seen = []

    @problems.register("spec-audit-none")
    def factory(dim: int = 2, scale=None, label: str = "a") -> problems.Problem:
        seen.append((scale, label))
        return problems.Problem(name="spec-audit-none", f=lambda x: jnp.sum(x * x), x0=np.ones(dim))

    problems.get("spec-audit-none:scale=none")
    problems.get("spec-audit-none:label=none")       # a string parameter: the factory decides
    assert seen == [(None, "a"), (None, None)]
    with pytest.raises(OptbenchError, match="parameter 'dim' must be an integer, got none"):
        problems.get("spec-audit-none:dim=none")


def test_unicode_digits_are_the_numbers_they_spell():
    """Python's int() reads any Unicode decimal digit: '３' (fullwidth) is 3, and the spec written
    back uses ASCII, so it round-trips."""
    p = problems.get("rosenbrock:dim=３")
    assert p.dim == 3 and p.spec == "rosenbrock:dim=3" and problems.get(p.spec)._identity == p._identity


# -- registry API misuse -----------------------------------------------------------------------

@pytest.mark.parametrize("call", [lambda: problems.describe(None), lambda: problems.describe(7),
                                  lambda: problems.members(None), lambda: problems.get(None)])
def test_api_given_a_non_string_is_a_one_line_error(call):
    """describe(None) and members(None) were AttributeErrors ('NoneType' has no 'partition')."""
    with pytest.raises(OptbenchError) as e:
        call()
    assert "\n" not in str(e.value) and "must be" in str(e.value)


def test_a_family_member_cannot_be_shadowed(registry_snapshot):
    """register(Problem("nist:Misra1a", ...)) was accepted, and from then on problems.get
    ("nist:Misra1a") returned the plug-in's problem instead of the NIST dataset."""
    fake = problems.Problem(name="nist:Misra1a", f=lambda x: jnp.sum(x * x), x0=np.ones(2))
    with pytest.raises(OptbenchError, match="already registered"):
        problems.register(fake)
    with pytest.raises(OptbenchError, match="already registered"):
        problems.register("nist:Misra1a", lambda: fake)
    assert problems.get("nist:Misra1a").f_star == pytest.approx(1.2455138894e-1)
    problems.register(problems.Problem(name="nist:MyOwnData", f=lambda x: jnp.sum(x * x), x0=np.ones(2)))
    assert problems.get("nist:MyOwnData").dim == 2      # not a NIST member: free to take
    problems.register(fake, overwrite=True)             # and overwrite says it is meant
    assert problems.get("nist:Misra1a").f_star is None


def test_family_prefixes_are_checked(registry_snapshot):
    """A second register_family("nist", ...) silently replaced the NIST family; a prefix with ':'
    was accepted but nothing could ever select its members."""
    with pytest.raises(OptbenchError, match="already registered"):
        problems.register_family("nist", lambda member: None)
    assert problems.get("nist:Misra1a").dim == 2
    with pytest.raises(OptbenchError, match="cannot contain ':'"):
        problems.register_family("my:fam", lambda member: None)

    def fam(member: str, k: float = 1.0) -> problems.Problem:
        return problems.Problem(name=f"spec-audit-fam:{member}", f=lambda x: k * jnp.sum(x * x), x0=np.ones(len(member)))

    problems.register_family("spec-audit-fam", fam)
    p = problems.get("spec-audit-fam:abc:k=2")
    assert p.dim == 3 and float(p(np.ones(3))) == 6.0
    problems.register_family("spec-audit-fam", lambda member: None, overwrite=True)


# -- the formula translator --------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "x.__class__", "__import__", "__builtins__", "exp.__globals__", "lambda: x", "[i for i in x]", "x if x else 1",
    "x; x", "x, x", "'x'", "\"x\"", "x == 1", "x % 2", "x // 2", "x ^ 2", "x @ x", "`x`", "x[0]", "exp x",
    "abs(x)", "EXP(x)", "getattr(x)", "exp()", "exp(x", "(x]", "x ** ** 2", "1e", "0x10", "1_000", "x²", "١",
    "x\u00a0+ 1", "", "   ",
])
def test_formula_refuses_what_is_not_in_the_grammar(text):
    with pytest.raises(OptbenchError) as e:
        Formula(text, ["x"])
    assert str(e.value).startswith("cannot read formula") and "\n" not in str(e.value)


def test_formula_reads_only_the_whitelisted_functions():
    """Evaluating touches the namespace only for the names in FUNCTIONS, and the environment only
    for the declared variables it uses."""
    touched = []

    class Spy:
        def __getattr__(self, name):
            touched.append(name)
            return getattr(np, name)

    text = "exp(x) + log[x] + sin(x) + cos(x) + tan(x) + arctan(x) + sqrt(x) + y"
    f = Formula(text, ["x", "y", "unused"])
    assert f.used == {"x", "y"}
    env = {"x": 0.5, "y": 2.0}
    want = (math.exp(0.5) + math.log(0.5) + math.sin(0.5) + math.cos(0.5) + math.tan(0.5) + math.atan(0.5)
            + math.sqrt(0.5) + 2.0)
    assert f(env, Spy()) == pytest.approx(want, rel=1e-15)
    assert sorted(touched) == sorted(expr.FUNCTIONS)


def test_formula_nesting_is_bounded_with_one_line_errors():
    """Deep nesting was a RecursionError (a traceback) from the recursive descent: 500 brackets,
    1,000 signs, a long x**x**…; now refused beyond MAX_DEPTH, and the message stays short."""
    depth = expr.MAX_DEPTH
    for text in ["(" * 500 + "x" + ")" * 500, "(" * 10000 + "x" + ")" * 10000, "-" * 1000 + "x",
                 "x**" * 3000 + "x", "exp(" * 3000 + "x" + ")" * 3000,
                 "(" * depth + "x" + ")" * depth, "-" * depth + "x", "sin(" * depth + "x" + ")" * depth]:
        with pytest.raises(OptbenchError, match=f"nests more than {depth} levels deep") as e:
            Formula(text, ["x"])
        assert len(str(e.value)) < 300


def test_formula_at_the_depth_limit_evaluates_under_autodiff():
    """The deepest accepted formulas parse, and evaluate under jax.grad with 300 frames already
    on the stack (a formula is evaluated while JAX traces, deep inside its stack)."""
    d = expr.MAX_DEPTH - 1
    cases = [("(" * d + "x" + ")" * d, 1.0), ("-" * d + "x", -1.0), ("sin[" * d + "x" + "]" * d, None)]

    def deep(n, fn):
        return fn() if n == 0 else deep(n - 1, fn)

    for text, want in cases:
        f = Formula(text, ["x"])
        g = deep(300, lambda: float(jax.grad(lambda x: f({"x": x}, jnp))(0.3)))
        if want is not None:
            assert g == want
        else:     # d(sin∘…∘sin)/dx by the chain rule, in numpy
            x, dv = 0.3, 1.0
            for _ in range(d):
                dv *= math.cos(x)
                x = math.sin(x)
            assert g == pytest.approx(dv, rel=1e-12)


def test_long_sums_and_products_evaluate():
    """`x+x+…` with 5,000 terms parsed, but evaluating its 5,000 nested closures was a RecursionError."""
    for op, want in (("+", 5000.0), ("*", 1.0)):
        f = Formula(op.join(["x"] * 5000), ["x"])
        assert f({"x": 1.0}, np) == want
    f = Formula("+".join(f"{k}*x" for k in range(3000)), ["x"])
    assert f({"x": 1.0 / 3.0}, np) == pytest.approx(sum(range(3000)) / 3.0, rel=1e-13)


def test_formula_evaluates_left_to_right():
    """Left associativity is observable in floating point: (1 + 1e16) − 1e16 is 0, 1 + (1e16 − 1e16)
    is 1; and a / b * c is (a / b)·c."""
    ev = lambda text, **env: Formula(text, list(env))(env, np)  # noqa: E731
    assert ev("a + b - c", a=1.0, b=1e16, c=1e16) == 0.0
    assert ev("a + (b - c)", a=1.0, b=1e16, c=1e16) == 1.0
    assert ev("a / b * c", a=1.0, b=3.0, c=3.0) == (1.0 / 3.0) * 3.0
    assert ev("a - b - c - d", a=10.0, b=1.0, c=2.0, d=3.0) == 4.0
    assert ev("a / b / c", a=1.0, b=10.0, c=3.0) == (1.0 / 10.0) / 3.0
    assert ev("-a**2 + b**-2", a=3.0, b=2.0) == -8.75


def test_integer_powers_are_exact_and_general_powers_are_pow():
    """Constant integer exponents up to 64 (any sign, brackets) multiply; others use pow."""
    ev = lambda text, x: Formula(text, ["x"])({"x": x}, np)  # noqa: E731
    for text, x, want in [("x**3", -2.0, -8.0), ("x**(3)", -2.0, -8.0), ("x**[-2]", -2.0, 0.25),
                          ("x**-(-3)", -2.0, -8.0), ("x**+64", 2.0, 2.0 ** 64), ("x**1e1", -2.0, 1024.0),
                          ("x**-64", -2.0, 2.0 ** -64), ("x**65", 2.0, 2.0 ** 65)]:
        assert ev(text, np.float64(x)) == want, text
    with np.errstate(invalid="ignore"):
        assert math.isnan(ev("x**3.5", np.float64(-2.0)))      # pow of a negative base: NaN


@pytest.mark.parametrize("spec, msg", [
    ("gd:lr=none", "optimizer 'gd': parameter 'lr' must be a number, got none"),
    ("bfgs:init_scale=none", "optimizer 'bfgs': parameter 'init_scale' must be true or false, got none"),
    ("gd:lr=abc", "optimizer 'gd': parameter 'lr' must be a number, got 'abc'"),
    ("lbfgs:memory=2.5", "optimizer 'lbfgs': parameter 'memory' must be an integer, got 2.5"),
])
def test_optimizer_parameter_errors_name_the_optimizer_and_refuse_none(spec, msg):
    """The same coercion serves optimizers: ``none`` for a number or a boolean is refused (``gd:lr=none``
    was a TypeError inside the factory, ``bfgs:init_scale=none`` a setting of its own) and the
    message names the optimizer."""
    import optimizers
    with pytest.raises(OptbenchError) as e:
        optimizers.get(spec)
    assert str(e.value) == msg


def test_optimizer_family_cannot_be_registered_twice():
    import optimizers
    with pytest.raises(OptbenchError, match="optimizer family 'optax:' is already registered"):
        optimizers.register_family("optax", lambda member: None)
    with pytest.raises(OptbenchError, match="prefix cannot contain ':'"):
        optimizers.register_family("my:fam", lambda member: None)
