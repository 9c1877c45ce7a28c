"""The optimizer library, checked against closed forms, defining conditions and scipy.optimize.

* registry, hyperparameters and one-line errors;
* the building blocks (strong-Wolfe search, trust-region subproblem, Krylov solvers, the oracle)
  against their defining conditions;
* every method with a scipy counterpart — bfgs↔BFGS, lbfgs↔L-BFGS-B, newton-cg↔Newton-CG,
  trust-region↔trust-exact, trust-ncg↔trust-ncg, ncg↔CG, levenberg-marquardt↔least_squares(lm) —
  on rosenbrock (2-D, 10-D), himmelblau, beale and a κ = 10⁴ quadratic (10-D): the same
  minimiser to 1e-6 within 1.5× scipy's iteration count, both printed;
* first-order methods within the iteration budgets their convergence theory gives;
* textbook properties of the Newton family, Gauss-Newton and Newton-Raphson;
* tracing once per compile and per-start iteration counts under vmap.

Everything iterates through the one driver, ``bench.solve``. Compiling is what costs here, so
problems of one dimension are grouped into a *family*: one Problem whose residual function picks
its member with ``lax.switch`` on an integer in the problem's data. Data enters the compiled
program as an argument, so all members of a family run on one executable per method.
"""
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import bench
import optimizers
import problems
from optbench_core import OptbenchError
from optimizers import krylov
from optimizers.base import Oracle
from optimizers.dense import trust_region_subproblem
from optimizers.linesearch import strong_wolfe
from problems import Problem

ALL = [n for n in optimizers.names() if not n.endswith(":")]


# -- families of problems sharing one compile ----------------------------------------------------

class Family:
    """Members behind one Problem: (name, residual function or None, objective or None, registry
    problem or None). A member given by residuals has f = Σr²; one given only by an objective
    (the saddle) has NaN residuals, so a least-squares method run on it would show at once."""

    def __init__(self, name, dim, members, extra_data=None, m=1, tags=()):
        self.names = [mb[0] for mb in members]
        self.refs = {mb[0]: mb[3] for mb in members}
        self.extra = dict(extra_data or {})
        nan = jnp.full((m,), jnp.nan)
        rs = [(lambda x, d, fn=mb[1]: jnp.pad(fn(x, d), (0, m - fn(x, d).shape[0]))) if mb[1] else
              (lambda x, d: nan.astype(x.dtype)) for mb in members]
        fs = [(lambda x, d, fn=mb[1]: jnp.sum(fn(x, d) ** 2)) if mb[1] else mb[2] for mb in members]
        self.objectives = fs

        def residuals(x, d):
            return jax.lax.switch(d["k"], rs, x, d)

        def f(x, d):
            return jax.lax.switch(d["k"], fs, x, d)

        self.problem = Problem(name=name, f=f, residuals=residuals, x0=np.zeros(dim), data=self._data(0), f_star=0.0,
                               tags=tags)
        self._residuals = {mb[0]: mb[1] for mb in members}

    def _data(self, k):
        return dict(self.extra, k=np.int32(k))

    BATCH = 4  # every solve pads its starts to this many, so one executable per method serves all

    def solve(self, member, spec, starts, **kw):
        """Run ``spec`` on one member; results for the padding starts (repeats of the last) are
        extra rows at the end."""
        self.problem.data = self._data(self.names.index(member))
        starts = np.atleast_2d(np.asarray(starts, dtype=float))
        assert len(starts) <= self.BATCH
        starts = np.vstack([starts] + [starts[-1:]] * (self.BATCH - len(starts)))
        return bench.solve(self.problem, spec, starts, **kw)

    def member_fn(self, member):
        """The member's residual function of x alone."""
        fn = self._residuals[member]
        data = jax.tree_util.tree_map(jnp.asarray, self.extra)
        return lambda x: fn(x, data)


def _rosen_r(x, d=None):
    return jnp.concatenate([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]])


def _registry_residuals(spec):
    p = problems.get(spec)
    return lambda x, d=None: p.residual_vector(x, p.data)


def _quadratic_half_root(cond):
    """L with ‖L(x − 1)‖² = ½(x − 1)ᵀA(x − 1) for the registry's quadratic:dim=10:cond=…"""
    a = problems.get(f"quadratic:dim=10:cond={cond}").data["A"]
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(w / 2.0)) @ v.T, a


def _saddle(x, d=None):
    """x² + y⁴/4 − y²/2: a saddle at 0, minima (0, ±1) with f = −¼ (not a sum of squares)."""
    return x[0] ** 2 + 0.25 * x[1] ** 4 - 0.5 * x[1] ** 2


QUAD2_MIN = np.array([1.0, 2.0])
QUAD2_L = np.linalg.cholesky(np.array([[3.0, 1.0], [1.0, 2.0]])).T  # ‖L(x − x*)‖² = (x − x*)ᵀM(x − x*)
LINEAR_A = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]])


L4, A4 = _quadratic_half_root(10000)
L2, A2 = _quadratic_half_root(100)
TWO_D = Family("family-2d", 2, [
    ("rosenbrock-2", _rosen_r, None, problems.get("rosenbrock:dim=2")),
    ("himmelblau", _registry_residuals("himmelblau"), None, problems.get("himmelblau")),
    ("beale", _registry_residuals("beale"), None, problems.get("beale")),
    ("quadratic-2", lambda x, d: d["L"] @ (x - jnp.asarray(QUAD2_MIN, x.dtype)), None, None),
    ("linear", lambda x, d: d["A"] @ (x - jnp.asarray(QUAD2_MIN, x.dtype)), None, None),  # zero residual at x*
    ("saddle", None, _saddle, None)], extra_data={"L": QUAD2_L, "A": LINEAR_A}, m=3)
TEN_D = Family("family-10d", 10, [
    ("rosenbrock-10", _rosen_r, None, problems.get("rosenbrock:dim=10")),
    ("quadratic-1e4", lambda x, d: d["L4"] @ (x - 1.0), None, problems.get("quadratic:dim=10:cond=10000")),
    ("quadratic-100", lambda x, d: d["L2"] @ (x - 1.0), None, problems.get("quadratic:dim=10:cond=100"))],
    extra_data={"L4": L4, "L2": L2}, m=18)
FAMILY = {n: fam for fam in (TWO_D, TEN_D) for n in fam.names}


def test_family_members_are_the_registry_problems():
    for fam in (TWO_D, TEN_D):
        for name in fam.names:
            ref = fam.refs[name]
            if ref is None:
                continue
            fn = fam.member_fn(name)
            for x in ref.random_starts(5, seed=3):
                assert np.isclose(float(jnp.sum(fn(jnp.asarray(x)) ** 2)), float(ref(x)), rtol=1e-12, atol=1e-12)


# -- registry, specs, errors ---------------------------------------------------------------------

def test_every_method_of_the_issue_is_registered_with_documented_parameters():
    wanted = {"gd", "gd-linesearch", "gd-wolfe", "momentum", "nesterov", "ncg", "newton-raphson", "newton",
              "trust-region", "trust-ncg", "newton-cg", "gauss-newton", "levenberg-marquardt", "bfgs", "lbfgs"}
    assert wanted <= set(ALL)
    assert "optax:" in optimizers.names()
    for name in ALL:
        d = optimizers.describe(name)
        assert d["doc"], f"{name} has no docstring"
        assert set(optimizers.get(name).params) == set(d["params"]), name
    assert optimizers.get("levenberg-marquardt").needs_residuals and optimizers.get("gauss-newton").needs_residuals
    assert not optimizers.get("bfgs").needs_residuals


def test_spec_strings_set_hyperparameters():
    assert optimizers.get("lbfgs:memory=20").params["memory"] == 20
    assert optimizers.get("gd:lr=0.001").params["lr"] == 0.001
    opt = optimizers.get("optax:adam:learning_rate=0.01:b1=0.8")
    assert opt.params == {"learning_rate": 0.01, "b1": 0.8} and opt.spec == "optax:adam:learning_rate=0.01:b1=0.8"
    assert optimizers.get("optax:sgd").params["learning_rate"] == 1e-3  # documented default


@pytest.mark.parametrize("spec, words", [
    ("lbfgs:memory=0", "memory"), ("lbfgs:memroy=3", "did you mean"), ("bfgs:c1=0.95", "c1"),
    ("newton-cg:linesearch=exact", "linesearch"), ("newton:mode=roots", "mode"),
    ("levenberg-marquardt:damping=fast", "damping"), ("gauss-newton:linesearch=wolfe", "linesearch"),
    ("trust-region:eta=0.5", "eta"), ("optax:adamm", "did you mean"), ("optax:l2_loss", "optimizer"),
    ("optax:adam:learning_rat=1", "learning_rat"), ("momentum:beta=1", "beta"), ("ncg:restart=-2", "restart"),
])
def test_bad_hyperparameters_are_one_line_errors(spec, words):
    with pytest.raises(OptbenchError) as e:
        optimizers.get(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_root_mode_on_a_non_square_problem_is_a_clear_error():
    p = Problem(name="overdetermined", residuals=lambda x: jnp.stack([x[0] - 1.0, x[0] + 1.0]), x0=[0.0])
    with pytest.raises(OptbenchError, match="square"):
        bench.solve(p, "newton-raphson:mode=root", max_iter=3)


# -- building blocks -----------------------------------------------------------------------------

def _rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@jax.jit
def _wolfe_batch(xs, a0, c2):
    vg = jax.value_and_grad(_rosen)

    def one(x):
        f, g = vg(x)
        a, fn, gn, _, ok, _ = strong_wolfe(vg, x, f, g, -g, a0, 1e-4, c2, 40)
        return f, g, a, fn, gn, ok

    return jax.vmap(one)(xs)


def test_strong_wolfe_returns_a_point_satisfying_both_conditions():
    """N&W (3.7): f(x+αd) ≤ f + c₁α∇fᵀd and |∇f(x+αd)ᵀd| ≤ c₂|∇fᵀd|, from many points and
    first trial steps (far too short, unit, far too long) and two curvature constants."""
    xs = jnp.asarray(np.random.default_rng(0).uniform(-2, 2, (12, 2)))
    for c2 in (0.9, 0.1):
        for a0 in (1e-6, 1.0, 1e3):
            f, g, a, fn, gn, ok = _wolfe_batch(xs, a0, c2)
            slope = -jnp.sum(g * g, axis=1)
            assert np.all(ok)
            assert np.all(fn <= f + 1e-4 * a * slope)
            assert np.all(np.abs(jnp.sum(gn * -g, axis=1)) <= c2 * np.abs(slope) * (1 + 1e-9))
            assert np.allclose(fn, jax.vmap(_rosen)(xs - a[:, None] * g))


def _model(h, g, p):
    return g @ p + 0.5 * p @ h @ p


_tr_subproblem = jax.jit(trust_region_subproblem)


@pytest.mark.parametrize("case", ["convex-interior", "convex-boundary", "indefinite", "hard", "n=2-indefinite"])
def test_trust_region_subproblem_meets_the_optimality_conditions(case):
    """Moré–Sorensen (N&W Thm 4.1): (H + λI)p = −g, H + λI ⪰ 0, λ(Δ − ‖p‖) = 0, and no random
    feasible point has a lower model value; in the hard case the step reaches the boundary with
    λ = −λ_min."""
    rng = np.random.default_rng(1)
    n = 2 if case.startswith("n=2") else 5
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = {"convex-interior": np.linspace(1, 4, n), "convex-boundary": np.linspace(1, 4, n),
           "indefinite": np.linspace(-2, 3, n), "hard": np.linspace(-2, 3, n), "n=2-indefinite": np.array([-1.0, 2.0])}[case]
    h = (q * lam) @ q.T
    g = q @ rng.standard_normal(n)
    radius = {"convex-interior": 10.0, "convex-boundary": 0.1}.get(case, 1.0)
    if case == "hard":
        g = 0.01 * (g - q[:, 0] * (q[:, 0] @ g))  # g ⟂ lowest eigenvector, and the shifted step is short
    p, pred, lm, _ = _tr_subproblem(jnp.asarray(h), jnp.asarray(g), radius)
    p, lm = np.asarray(p), float(lm)
    assert np.linalg.norm(p) <= radius * (1 + 1e-8)
    assert np.allclose((h + lm * np.eye(n)) @ p, -g, atol=1e-8)
    assert np.linalg.eigvalsh(h + lm * np.eye(n)).min() >= -1e-8
    assert lm * (radius - np.linalg.norm(p)) <= 1e-8
    assert np.isclose(float(pred), -_model(h, g, p))
    trial = rng.standard_normal((4000, n))
    trial = trial / np.linalg.norm(trial, axis=1, keepdims=True) * radius * rng.uniform(0, 1, (4000, 1)) ** (1 / n)
    assert _model(h, g, p) <= min(_model(h, g, t) for t in trial) + 1e-10
    if case == "convex-interior":
        assert lm == 0 and np.allclose(p, -np.linalg.solve(h, g))
    if case == "hard":
        assert np.isclose(np.linalg.norm(p), radius) and np.isclose(lm, 2.0)


def test_steihaug_and_truncated_cg_solve_a_positive_definite_system_matrix_free():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 30))
    h = jnp.asarray(a @ a.T + 30 * np.eye(30))
    g = jnp.asarray(rng.standard_normal(30))
    p, nprod, neg = krylov.truncated_cg(lambda v: h @ v, g, 1e-10, 100)
    assert not neg and int(nprod) <= 30 and np.allclose(h @ p, -g, atol=1e-8)
    p2, pred, _, bnd = krylov.steihaug_cg(lambda v: h @ v, g, 1e3, 1e-10, 100)
    assert not bnd and np.allclose(p2, p, atol=1e-8) and np.isclose(pred, -(g @ p2 + 0.5 * p2 @ h @ p2))
    p3, pred3, _, bnd3 = krylov.steihaug_cg(lambda v: h @ v, g, 0.01, 1e-10, 100)  # tight region: boundary
    assert bnd3 and np.isclose(np.linalg.norm(p3), 0.01) and pred3 > 0
    # indefinite: truncated CG stops at negative curvature with a descent direction
    hi = h - 60 * jnp.eye(30)
    p4, _, neg4 = krylov.truncated_cg(lambda v: hi @ v, g, 1e-10, 100)
    assert neg4 and float(g @ p4) < 0


def test_oracle_evaluates_consistently_and_hvp_matches_the_hessian():
    def run(x):
        o = Oracle(_rosen)
        f, g = o.value_and_grad(x)
        f3, g3, h3 = o.value_grad_hess(x)
        return f, g, o.hess(x), o.hvp(x, x), o.hvp_at(x)(x), f3, g3, h3

    x = jnp.array([-1.2, 1.0, 0.5])
    f, g, h, hv, hv2, f3, g3, h3 = jax.jit(run)(x)
    assert np.allclose(h, jax.hessian(_rosen)(x)) and np.allclose(h3, h) and np.isclose(f3, f) and np.allclose(g3, g)
    assert np.allclose(hv, h @ x) and np.allclose(hv2, h @ x)


# -- tracing once ----------------------------------------------------------------------------------

def _counting_problem():
    """2-D Rosenbrock as residuals plus ½(x − y), which keeps the minimum (1, 1), f* = 0, and makes
    the system non-square; counts Python calls of the residual function."""
    calls = []

    def r(x):
        calls.append(1)
        return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0], 0.5 * (x[0] - x[1])])

    return Problem(name="counted", residuals=r, x0=[-1.2, 1.0], f_star=0.0, x_star=[1.0, 1.0]), calls


@pytest.mark.parametrize("spec", ALL + ["optax:adam", "optax:lbfgs"])
def test_init_and_step_trace_the_function_once(spec):
    """An optimizer's init and steps — whatever line-search trials, Hessians, Hessian-vector
    products or Jacobians they evaluate — call the user's Python function once per compile (one
    Oracle per compiled program), for a problem given by f and for one given by residuals."""
    opt = optimizers.get(spec)
    for form in ("f", "residuals"):
        if form == "f" and opt.needs_residuals:
            continue
        p, calls = _counting_problem()

        def run(x0):
            oracle = Oracle(lambda x: p.objective(x), None) if form == "f" else Oracle(None, p.residual_vector)
            s = opt.init(oracle, x0)
            s = opt.step(oracle, s)
            return opt.step(oracle, s).f

        jax.make_jaxpr(run)(jnp.asarray(p.x0))
        assert len(calls) == 1, f"{spec} ({form}): traced {len(calls)} times"


# -- scipy counterparts --------------------------------------------------------------------------

GTOL = 1e-9
PAIRS = {"bfgs": "BFGS", "lbfgs": "L-BFGS-B", "newton-cg": "Newton-CG", "trust-region": "trust-exact",
         "trust-ncg": "trust-ncg", "ncg": "CG", "levenberg-marquardt": "lm"}


_JITTED = {}


def _jitted(problem, fn):
    """f, ∇f, ∇²f, Hessian-vector product, r and J of Σ fn(x)², jitted once per problem."""
    if problem not in _JITTED:
        obj = lambda x: jnp.sum(fn(x) ** 2)  # noqa: E731
        _JITTED[problem] = (jax.jit(obj), jax.jit(jax.grad(obj)), jax.jit(jax.hessian(obj)),
                            jax.jit(lambda x, v: jax.jvp(jax.grad(obj), (x,), (v,))[1]), jax.jit(fn),
                            jax.jit(jax.jacfwd(fn)))
    return _JITTED[problem]


def _scipy(problem, fn, method, x0):
    """scipy on Σ fn(x)² with the same jitted derivatives; (x, iterations) — nfev for lm."""
    f, g, hess, hvp, r, jac = _jitted(problem, fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "lm":
            # MINPACK's lmder through leastsq, which takes the initial step bound: the same
            # factor as optbench's default (10; MINPACK's own default is 100, see
            # optimizers.least_squares.levenberg_marquardt), so both run the same method
            factor = optimizers.get("levenberg-marquardt").params["factor"]
            xs, _, info, _, _ = so.leastsq(lambda x: np.asarray(r(x)), x0, Dfun=lambda x: np.asarray(jac(x)),
                                           full_output=True, ftol=1e-15, xtol=1e-15, gtol=1e-15, maxfev=1500,
                                           factor=factor)
            return xs, int(info["nfev"])
        kw = {}
        if method in ("Newton-CG", "trust-ncg"):
            kw["hessp"] = lambda x, v: np.asarray(hvp(x, v))
        if method == "trust-exact":
            kw["hess"] = lambda x: np.asarray(hess(x))
        opts = {"Newton-CG": {"xtol": 1e-12}, "L-BFGS-B": {"gtol": GTOL, "ftol": 1e-16}}.get(method, {"gtol": GTOL})
        res = so.minimize(lambda x: float(f(x)), x0, jac=lambda x: np.asarray(g(x)), method=method,
                          options=dict(opts, maxiter=1500), **kw)
        return res.x, res.nit


def _at_known_minimiser(ref, x, tol=1e-5):
    return bool(np.min(np.abs(ref.known_minimisers() - x).max(axis=1)) < tol)


@pytest.mark.parametrize("problem", ["rosenbrock-2", "himmelblau", "beale",
                                     # 10-D: seven more compiles, ~40 s on two cores — with --runslow
                                     pytest.param("rosenbrock-10", marks=pytest.mark.slow),
                                     pytest.param("quadratic-1e4", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", list(PAIRS))
def test_same_minimiser_as_scipy_within_one_and_a_half_times_its_iterations(method, problem):
    """From the standard start: converged, within 1e-6 of scipy's answer, at most 1.5× its
    iterations (function evaluations for least_squares, which has no iteration count: one per
    LM trial on both sides). From three random starts in the box (fixed seed): where both reach
    the same known minimiser, they agree to 1e-6 and optbench's iteration total is within 1.5×
    scipy's; optbench reaches a known minimiser from all but at most one of the starts scipy does
    (from a random start either side may follow a valley to another basin or to infinity —
    beale's x → −∞, y → 1 — which is the luck of the path, not the method). Also checks, on this
    batch, that each start stops on its own under vmap with its own counts."""
    fam = FAMILY[problem]
    ref = fam.refs[problem]
    fn = fam.member_fn(problem)
    starts = ref.random_starts(4, seed=1)  # the standard start first
    res = fam.solve(problem, method, starts, max_iter=1500, gtol=GTOL)
    ours = res.nfev if method == "levenberg-marquardt" else res.nit
    assert np.all(res.nit[res.status == "converged"] == (res.trace.grad_norm[res.status == "converged"] > GTOL).sum(1))
    assert np.all(res.nfev >= res.nit)
    total = [0, 0]
    found = [0, 0]
    for i, x0 in enumerate(starts):
        xs, its = _scipy(problem, fn, PAIRS[method], x0)
        gap = np.abs(res.x[i] - xs).max()
        print(f"{method:20s} {problem:14s} start {i}: optbench {int(ours[i]):4d} ({res.status[i]}), "
              f"scipy {PAIRS[method]} {its:4d}, max|x − x_scipy| = {gap:.1e}")
        if i == 0:
            assert res.status[0] == "converged" and gap <= 1e-6 and ours[0] <= 1.5 * its
            continue
        ok = (_at_known_minimiser(ref, res.x[i]), _at_known_minimiser(ref, xs))
        found = [found[0] + ok[0], found[1] + ok[1]]
        if ok[0] and ok[1] and gap < 1e-5:
            assert gap <= 1e-6
            total = [total[0] + int(ours[i]), total[1] + its]
    print(f"random starts at a known minimiser: optbench {found[0]}/3, scipy {found[1]}/3; "
          f"iterations where both agree: {total[0]} vs {total[1]}")
    assert found[0] >= found[1] - 1
    assert total[0] <= 1.5 * total[1] + 1
    if problem in ("rosenbrock-2", "rosenbrock-10"):  # starts need different counts here: each stops on its own
        assert len(set(res.nit.tolist())) > 1, res.nit


def test_float32_runs_and_converges():
    res = TWO_D.solve("rosenbrock-2", "levenberg-marquardt", problems.get("rosenbrock").random_starts(4, seed=1),
                      max_iter=200, gtol=1e-3, dtype="float32")
    assert res.x.dtype == np.float32 and np.allclose(res.x, 1.0, atol=1e-3), (res.x, res.status)
    assert np.all(res.status == "converged")


def test_newton_gauss_newton_and_optax_converge_from_every_start_with_their_own_counts():
    """Methods without a scipy counterpart, from four starts of 2-D Rosenbrock (vmap): all
    converge to (1, 1), each with its own iteration count (Gauss-Newton: exactly two, as Newton
    for r = 0 on this square residual system); newton counts one Hessian per iteration."""
    _converge_from_every_start(("newton", "newton-raphson", "gauss-newton"))


@pytest.mark.slow
def test_optax_lbfgs_converges_and_counts_its_line_search_evaluations():
    """optax's L-BFGS through the adapter (extra arguments, value and gradient reused from its
    state, line-search trials counted): a heavy compile, so with --runslow."""
    _converge_from_every_start(("optax:lbfgs",))


def _converge_from_every_start(specs):
    starts = problems.get("rosenbrock").random_starts(4, seed=2)
    budgets = {"optax:lbfgs": 400}
    for spec in specs:
        budget = budgets.get(spec, 200)
        res = TWO_D.solve("rosenbrock-2", spec, starts, max_iter=budget, gtol=1e-8)
        assert np.all(res.status == "converged"), (spec, res.status)
        assert np.allclose(res.x, 1.0, atol=1e-6)
        if spec == "gauss-newton":  # the full step is Newton's for r = 0: two steps from anywhere
            assert np.all(res.nit == 2), res.nit
        else:
            assert len(set(res.nit.tolist())) > 1, (spec, res.nit)
        assert np.all(res.nfev > res.nit) if spec == "optax:lbfgs" else np.all(res.nfev >= res.nit)
        if spec == "newton":
            assert np.array_equal(res.nhev, res.nit)   # one Hessian where each step starts
        print(spec, "iterations per start:", res.nit, "f-evaluations:", res.nfev)


def test_optax_adam_runs_in_the_driver_with_one_gradient_per_step():
    starts = problems.get("rosenbrock").random_starts(4, seed=1)
    res = TWO_D.solve("rosenbrock-2", "optax:adam:learning_rate=0.02", starts, max_iter=3000, gtol=1e-6)
    f0 = np.array([float(problems.get("rosenbrock")(x)) for x in starts])
    assert np.all(res.fun < 1e-3 * f0)
    assert np.array_equal(res.nfev, res.nit + 1) and np.array_equal(res.njev, res.nit + 1)


# -- first-order methods: the budgets their convergence theory gives -----------------------------

KAPPA = 100.0   # quadratic-100: ½(x − 1)ᵀA(x − 1), eigenvalues log-spaced in [1, 100], n = 10
TOL = 1e-6      # ‖x − x*‖
E0 = math.sqrt(10.0)  # ‖x₀ − x*‖ from x₀ = 0
F0 = 0.5 * float(np.ones(10) @ A2 @ np.ones(10))


def _error_at_budget(spec, budget):
    """‖x_k − x*‖ after exactly ``budget`` iterations (gtol 0: no early stop)."""
    res = TEN_D.solve("quadratic-100", spec, np.zeros(10), max_iter=budget, gtol=0.0)
    err = float(np.linalg.norm(res.x[0] - 1.0))
    first = np.nonzero(np.sqrt(2 * np.maximum(res.trace.f[0], 0)) <= TOL)[0]  # ‖e‖ ≤ √(2f/μ), μ = 1
    print(f"{spec}: ‖x − x*‖ = {err:.1e} after the theory budget of {budget}; "
          f"‖e‖ ≤ {TOL:g} certified from iteration {first[0] if first.size else None}")
    return err


def test_gd_with_the_optimal_fixed_step_meets_its_rate():
    """Nesterov (2004) Thm 2.1.15: α = 2/(L + μ) gives ‖x_k − x*‖ ≤ ((κ − 1)/(κ + 1))^k ‖x₀ − x*‖."""
    q = (KAPPA - 1) / (KAPPA + 1)
    budget = math.ceil(math.log(TOL / E0) / math.log(q))
    assert _error_at_budget(f"gd:lr={2 / (KAPPA + 1)}", budget) <= TOL


def test_heavy_ball_with_polyak_parameters_meets_its_rate():
    """Polyak (1964): α = 4/(√L + √μ)², β = q², q = (√κ − 1)/(√κ + 1). On a quadratic both
    eigenvalues of each 2×2 block T of the iteration have modulus q, so by Cayley–Hamilton
    ‖T^k‖ ≤ k q^{k−1}‖T‖ + (k − 1)q^k with ‖T‖ ≤ 1 + β + αL; the budget is the first k where that
    bound times ‖(e₀, e₀)‖ reaches the tolerance."""
    sk = math.sqrt(KAPPA)
    q = (sk - 1) / (sk + 1)
    alpha, beta = 4 / (sk + 1) ** 2, q * q
    tnorm = 1 + beta + alpha * KAPPA
    budget = next(k for k in range(1, 100000) if (k * q ** (k - 1) * tnorm + (k - 1) * q ** k) * math.sqrt(2) * E0 <= TOL)
    assert _error_at_budget(f"momentum:lr={alpha}:beta={beta}", budget) <= TOL


def test_nesterov_with_constant_momentum_meets_its_rate():
    """Nesterov (2004) Thm 2.2.3 for scheme (2.2.19), α = 1/L, β = (√κ − 1)/(√κ + 1):
    f(x_k) − f* ≤ (1 − 1/√κ)^k (f(x₀) − f* + μ/2‖x₀ − x*‖²), and ‖x − x*‖² ≤ 2(f − f*)/μ. The
    reported iterate is the look-ahead point y_k = x_k + β(x_k − x_{k−1}), whose error is at most
    (1 + β) times the bound at k plus β times the bound at k − 1."""
    sk = math.sqrt(KAPPA)
    beta = (sk - 1) / (sk + 1)
    c = F0 + 0.5 * E0 ** 2

    def xbound(k):
        return math.sqrt(2 * c * (1 - 1 / sk) ** max(k, 0))

    budget = next(k for k in range(1, 100000) if (1 + beta) * xbound(k) + beta * xbound(k - 1) <= TOL)
    assert _error_at_budget(f"nesterov:lr={1 / KAPPA}:beta={beta}", budget) <= TOL


@pytest.mark.parametrize("spec, c1, c2", [("gd-linesearch:c1=0.3", 0.3, None), ("gd-wolfe:c1=0.3:c2=0.6", 0.3, 0.6)])
def test_steepest_descent_with_line_searches_meets_its_rate(spec, c1, c2):
    """Linear convergence on an L-smooth, μ-strongly convex f (using ‖g‖² ≥ 2μ(f − f*)): Armijo
    backtracking whose trials shrink by at most 10× accepts α ≥ min(α₀, 0.2(1 − c₁)/L), so
    f − f* contracts by 1 − 2μc₁·0.2(1 − c₁)/L (here α₀ ≥ 1/L: the first trial is 1 and only
    grows); the Wolfe curvature condition forces α ≥ (1 − c₂)/L and gives 1 − 2c₁(1 − c₂)/κ
    (N&W Thm 3.2, Zoutendijk). ‖x − x*‖² ≤ 2(f − f*)/μ converts to the error."""
    rate = 1 - 2 * c1 * 0.2 * (1 - c1) / KAPPA if c2 is None else 1 - 2 * c1 * (1 - c2) / KAPPA
    budget = math.ceil(math.log(TOL ** 2 / (2 * F0)) / math.log(rate))
    assert _error_at_budget(spec, budget) <= TOL


# -- textbook properties -------------------------------------------------------------------------

def test_newton_and_trust_region_take_one_step_on_a_quadratic():
    """The Newton step of a quadratic is its minimiser: ‖g‖ = 0 (to round-off) after one step.
    Trust-region takes it once the region holds it (starts within Δ₀ = 1 of the minimiser)."""
    rng = np.random.default_rng(4)
    far = QUAD2_MIN + rng.uniform(-30, 30, (4, 2))
    near = QUAD2_MIN + 0.5 * rng.uniform(-1, 1, (4, 2))
    for spec, starts in (("newton", far), ("newton-raphson", far), ("trust-region", near)):
        res = TWO_D.solve("quadratic-2", spec, starts, max_iter=5, gtol=1e-9)
        assert np.all(res.nit == 1) and np.allclose(res.x, QUAD2_MIN, atol=1e-12), (spec, res.nit)


def test_bfgs_with_exact_line_search_terminates_in_at_most_n_plus_one_steps():
    """With exact line searches BFGS generates conjugate directions: at most n steps on a strictly
    convex quadratic (plus one for round-off). The zoom's cubic interpolation is exact on a
    quadratic, so c₂ → 0 gives an exact search."""
    starts = np.random.default_rng(5).uniform(-3, 3, (4, 10))
    res = TEN_D.solve("quadratic-100", "bfgs:c1=1e-7:c2=1e-6", starts, max_iter=30, gtol=1e-8)
    print("bfgs exact-search iterations on a 10-D quadratic:", res.nit)
    assert np.all(res.status == "converged") and np.all(res.nit <= 11)


def test_gauss_newton_equals_newton_on_a_zero_residual_linear_model():
    """r = A(x − x*) (three residuals, two unknowns) is linear with zero residual at x*, so JᵀJ
    is exactly half the Hessian of Σr²: the Gauss-Newton and Newton directions coincide and both
    land on the solution in one step."""
    starts = np.random.default_rng(6).uniform(-50, 50, (3, 2))
    gn = TWO_D.solve("linear", "gauss-newton", starts, max_iter=3, gtol=1e-8)
    nt = TWO_D.solve("linear", "newton", starts, max_iter=3, gtol=1e-8)
    assert np.all(gn.nit == 1) and np.all(nt.nit == 1)
    assert np.allclose(gn.x, nt.x, atol=1e-10) and np.allclose(gn.x, QUAD2_MIN, atol=1e-10)


def _arctan(x, d=None):
    return jnp.arctan(x)


ROOTS = Family("family-roots", 1, [("cos", _registry_residuals("root:cos"), None, problems.get("root:cos")),
                                   ("cubic", _registry_residuals("root:cubic"), None, problems.get("root:cubic")),
                                   ("arctan", _arctan, None, None)], m=1, tags=("root",))  # F(x) = 0 systems
DOTTIE = 0.7390851332151607


def test_newton_raphson_converges_quadratically_near_a_simple_root():
    """cos x − x = 0 from x₀ = 1 (and two more starts, each stopping on its own): e_{k+1} ≈
    |r''/(2r')| e_k², the number of correct digits about doubles per step."""
    res = ROOTS.solve("cos", "newton-raphson", [[1.0], [0.2], [0.5]], max_iter=12, gtol=1e-15)
    assert np.all(res.status == "converged") and np.allclose(res.x, DOTTIE, atol=1e-15)
    assert len(set(res.nit.tolist())) > 1
    e = np.abs(res.trace.x[0, : res.nit[0] + 1, 0] - DOTTIE)
    c = abs(-math.cos(DOTTIE) / (2 * (-math.sin(DOTTIE) - 1)))  # |r''/(2r')| at the root
    pairs = [(e[k], e[k + 1]) for k in range(len(e) - 1) if 1e-12 < e[k + 1] and e[k] < 0.5]
    print("Newton-Raphson errors on cos x − x from 1:", e)
    assert len(pairs) >= 2
    for a, b in pairs:
        assert b <= 2 * c * a * a and math.log10(b) / math.log10(a) >= 1.8


def test_newton_raphson_cycles_on_the_textbook_cubic_and_damped_newton_escapes():
    """x³ − 2x + 2 from 0: Newton-Raphson alternates 0, 1, 0, 1, … forever. Damped Newton
    (backtracking on r²) leaves the cycle with r² strictly decreasing; from this start it then
    settles on the local minimum of r² at √(2/3) (where r' = 0, recorded by the problem), the
    best any descent method on r² can do from there."""
    nr = ROOTS.solve("cubic", "newton-raphson", [0.0], max_iter=12, gtol=1e-10)
    xs = nr.trace.x[0, :, 0]
    assert nr.status[0] == "max_iter"
    assert np.allclose(xs[0::2], 0.0) and np.allclose(xs[1::2], 1.0)
    damped = ROOTS.solve("cubic", "newton", [0.0], max_iter=100, gtol=1e-10)
    f = damped.trace.f[0, : damped.nit[0] + 1]
    assert np.all(np.diff(f) < 0)
    assert not np.any(np.isclose(damped.trace.x[0, 2:, 0], 0.0))
    assert damped.fun[0] < 0.9 and nr.trace.f.min() == 1.0
    local_min, value = problems.get("root:cubic").local_minima[0]
    assert abs(damped.x[0, 0] - local_min[0]) < 1e-3 and np.isclose(damped.fun[0], value)


def test_damped_newton_converges_where_newton_raphson_diverges():
    """arctan x = 0 from x₀ = 1.5: each full Newton step overshoots further (|x| grows — the
    classic divergence for |x₀| > 1.3917); backtracking on r² converges to the root 0."""
    nr = ROOTS.solve("arctan", "newton-raphson", [1.5], max_iter=6, gtol=1e-12)
    assert np.all(np.diff(np.abs(nr.trace.x[0, :, 0])) > 0)
    damped = ROOTS.solve("arctan", "newton", [1.5], max_iter=50, gtol=1e-12)
    assert damped.status[0] == "converged" and abs(damped.x[0, 0]) < 1e-10


def test_from_negative_curvature_newton_and_trust_regions_decrease_f_and_newton_raphson_fails():
    """f = x² + y⁴/4 − y²/2: a saddle at 0, minima (0, ±1) with f = −¼. From (10⁻³, 0.1), inside
    the negative-curvature band |y| < 1/√3 and below the saddle's value, newton (eigenvalue fix),
    trust-region and trust-ncg decrease f monotonically to a minimum; plain Newton-Raphson is drawn
    to the saddle, f rises, and its result shows it (f ≠ −¼)."""
    x0 = np.array([[1e-3, 0.1]])
    f0 = float(_saddle(x0[0]))
    for spec in ("newton", "trust-region", "trust-ncg"):
        res = TWO_D.solve("saddle", spec, x0, max_iter=100, gtol=1e-10)
        f = res.trace.f[0, : res.nit[0] + 1]
        assert res.status[0] == "converged" and np.all(np.diff(f) <= 0) and np.isclose(res.fun[0], -0.25), spec
    nr = TWO_D.solve("saddle", "newton-raphson", x0, max_iter=100, gtol=1e-10)
    assert nr.fun[0] > f0 and np.allclose(nr.x, 0.0, atol=1e-8) and not np.isclose(nr.fun[0], -0.25)



def test_optax_state_holding_prng_keys_runs_and_a_zero_update_is_a_fixed_point():
    """optax.noisy_sgd keeps a PRNG key in its state, which has no NumPy form: the driver returns
    the result without copying the optimizer's state to the host (it raised TypeError). With
    eta = 0 its noise vanishes, so it takes exactly optax.sgd's steps. optax.set_to_zero never
    moves x: its first step is a fixed point and ends the start stalled."""
    starts = np.array([[-1.2, 1.0], [0.5, -0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the adapter gives the random key optax asks for (key=0)
        noisy = bench.solve("rosenbrock", "optax:noisy_sgd:learning_rate=0.001:eta=0.0", starts, max_iter=25)
    again = bench.solve("rosenbrock", "optax:noisy_sgd:learning_rate=0.001", starts, max_iter=25)
    np.testing.assert_array_equal(again.x, bench.solve("rosenbrock", "optax:noisy_sgd:learning_rate=0.001:key=0",
                                                       starts, max_iter=25).x)   # the default seed, repeatable
    sgd = bench.solve("rosenbrock", "optax:sgd:learning_rate=0.001", starts, max_iter=25)
    np.testing.assert_array_equal(noisy.x, sgd.x)
    assert list(noisy.nit) == [25, 25]
    zero = bench.solve("rosenbrock", "optax:set_to_zero", starts, max_iter=25)
    assert list(zero.status) == ["stalled", "stalled"] and list(zero.nit) == [1, 1]
    np.testing.assert_array_equal(zero.x, starts)
