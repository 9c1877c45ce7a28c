"""Properties of every registered optimizer on random convex least-squares quadratics, and
numerical failure recorded as a status, never raised.

One problem object serves every test here: f(x) = ‖Lx − y‖² in residual form, with L, y and a few
switches passed as problem *data* (arguments of the compiled program, not constants), so each
optimizer compiles once for every random quadratic, every start and every failure below:

* ``s = −1`` flips the Jacobian (f is unchanged, its gradient points uphill): a line search
  cannot find descent;
* ``x₀ > thr`` makes the residuals ``bad`` (NaN or ±∞): non-finite f;
* ``x₀ < kthr`` adds √|x₁ − ka|: an infinite gradient at x₁ = ka;
* ``hlo < x₀ < hhi`` adds |x₁ − ha|^1.5: finite gradient, infinite Hessian at x₁ = ha;
* a rank-deficient L: a singular Hessian 2LᵀL.

With the switches off the extra terms are exactly zero, so the clean problem is ‖Lx − y‖² to the
last bit. Methods that globalise (line search or trust region) claim monotone decrease and
convergence to the minimiser x* = L⁻¹y; the others (fixed-step gradient methods, the textbook
Newton-Raphson) claim only that a non-finite result is reported as ``diverged``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bench
import optimizers
from bench import store
from optimizers.base import STATUS_NAMES
from problems import Problem

N, B = 3, 4
#: methods with a line search or a trust region: f never increases, x* is reached
GLOBALISED = {"gd-linesearch", "gd-wolfe", "ncg", "newton", "newton-cg", "trust-region", "trust-ncg", "bfgs",
              "lbfgs", "levenberg-marquardt"}
#: methods that make no such claim
UNGLOBALISED = {"gd", "momentum", "nesterov", "newton-raphson", "gauss-newton"}  # GN: full step by default
FAILED = {"diverged", "linesearch_failed", "singular", "stalled", "max_iter"}
MAX_ITER = 500


def registered():
    """Every optimizer registered now (families such as ``optax:`` need a member and are skipped)."""
    return [n for n in optimizers.names() if not n.endswith(":")]


def _residuals(x, d):
    lin = d["L"] @ x
    sg = jax.lax.stop_gradient
    r = sg(lin - d["y"]) + d["s"] * (lin - sg(lin))  # value Lx − y, Jacobian s·L
    r = r + jnp.where(x[0] > d["thr"], d["bad"], 0.0)
    r = r + jnp.where(x[0] < d["kthr"], jnp.sqrt(jnp.abs(x[1] - d["ka"])), 0.0)
    r = r + jnp.where((x[0] > d["hlo"]) & (x[0] < d["hhi"]), jnp.abs(x[1] - d["ha"]) ** 1.5, 0.0)
    return r


KA, HA = 0.3137, 0.2718


def data(L, y, **switches):
    d = {"L": np.asarray(L, float), "y": np.asarray(y, float), "s": 1.0, "thr": np.inf, "bad": np.nan,
         "kthr": -np.inf, "ka": KA, "hlo": np.inf, "hhi": np.inf, "ha": HA}
    d.update({k: float(v) for k, v in switches.items()})
    return d


PROBLEM = Problem(name="property-lsq", residuals=_residuals, x0=np.zeros(N), f_star=0.0,
                  data=data(np.eye(N), np.zeros(N)), bounds=(-np.ones(N), np.ones(N)))


def run(opt, d, starts, max_iter=MAX_ITER):
    """Solve the shared problem with data ``d`` (same shapes: the executable is reused)."""
    PROBLEM.data = d
    return bench.solve(PROBLEM, opt, np.asarray(starts, float), max_iter=max_iter, gtol=1e-8)


def random_quadratic(seed, cond):
    """L = Q₁ diag(σ) Q₂ᵀ with σ in [1, cond], a minimiser x* in [−1, 1]ⁿ and y = Lx*."""
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((N, N)))
    q2, _ = np.linalg.qr(rng.standard_normal((N, N)))
    sigma = np.concatenate([[1.0, cond], rng.uniform(1.0, cond, N - 2)])
    L = (q1 * sigma) @ q2.T
    x_star = rng.uniform(-1.0, 1.0, N)
    return L, L @ x_star, x_star, rng


def assert_honest(res):
    """Every start ends with a final status; a non-finite result is always called ``diverged``."""
    assert set(res.status) <= set(STATUS_NAMES) - {"running"}
    bad = ~(np.isfinite(res.fun) & np.all(np.isfinite(res.x), axis=1))
    assert np.all(res.status[bad] == "diverged")


def assert_monotone(res):
    """f after step k+1 ≤ f after step k, up to round-off, for every start and step."""
    f = res.trace.f
    with np.errstate(invalid="ignore"):  # inf − inf after a start diverged: not a rise
        rise = f[:, 1:] - f[:, :-1]
    tol = 1e-12 * np.abs(f[:, :-1])
    assert np.all((rise <= tol) | ~np.isfinite(f[:, 1:])), np.argwhere(rise > tol)[:3]


@pytest.mark.parametrize("name", registered())
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1), cond=st.floats(1.0, 3.0), scale=st.sampled_from([0.01, 1.0, 10.0, 100.0]))
def test_random_convex_quadratic(name, seed, cond, scale):
    L, y, x_star, rng = random_quadratic(seed, cond)
    starts = x_star + scale * rng.uniform(-1.0, 1.0, (B, N))
    res = run(name, data(L, y), starts)
    assert_honest(res)
    if name in GLOBALISED:
        assert np.all(res.status == "converged"), res.status
        assert np.all(np.isfinite(res.trace.f))  # never NaN from a finite start
        assert_monotone(res)
        np.testing.assert_allclose(res.x, np.broadcast_to(x_star, res.x.shape), atol=1e-6 * (1 + np.abs(x_star).max()))
        assert np.all(res.fun <= 1e-12)


def _good_starts(seed):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, (B, N))


@pytest.mark.parametrize("name", registered())
def test_failed_starts_do_not_disturb_the_others(name):
    """NaN f, infinite f, infinite gradient and infinite Hessian at some starts: those starts end
    with a status (NaN/∞ at the start: ``diverged`` before any step), and the other starts'
    results are bit-for-bit those of a batch without the failing ones."""
    L, y, x_star, _ = random_quadratic(7, 2.0)
    good = _good_starts(1)
    clean = run(name, data(L, y), good)
    assert_honest(clean)
    bad_a = good.copy()
    bad_a[1] = [60.0, 0.0, 0.0]   # in the NaN region
    bad_a[3] = [-60.0, KA, 0.0]   # infinite gradient
    bad_b = good.copy()
    bad_b[1] = [60.0, 0.0, 0.0]   # in the +inf region
    bad_b[3] = [25.0, HA, 0.0]    # infinite Hessian, finite gradient
    res_a = run(name, data(L, y, thr=50.0, kthr=-50.0), bad_a)
    res_b = run(name, data(L, y, thr=50.0, bad=np.inf, hlo=20.0, hhi=30.0), bad_b)
    for res in (res_a, res_b):
        assert_honest(res)
        assert res.status[1] == "diverged" and res.nit[1] == 0
        for lane in (0, 2):
            k = clean.nit[lane] + 1
            for key in ("x", "fun", "nit", "nfev", "njev", "nhev", "nhvp", "status"):
                np.testing.assert_array_equal(getattr(res, key)[lane], getattr(clean, key)[lane], err_msg=key)
            np.testing.assert_array_equal(res.trace.f[lane, :k], clean.trace.f[lane, :k])
    assert res_a.status[3] == "diverged" and res_a.nit[3] == 0
    if name in GLOBALISED:
        assert_monotone(res_b)
    # the summary counts the statuses of a batch
    row, starts = store.summarize(res_a, N, "traces/x.npz")
    counts = dict(kv.split("=") for kv in row["statuses"].split(";"))
    assert sum(map(int, counts.values())) == B and int(counts["diverged"]) >= 2
    assert [r["status"] for r in starts] == list(res_a.status)


@pytest.mark.parametrize("name", registered())
def test_uphill_gradient_is_a_status_not_a_crash(name):
    """The gradient points uphill (a wrong user gradient): no descent can be found. Globalised
    methods never accept a step that raises f and stop early with a failure status (a line
    search that could only "succeed" with a step too short to move x fails); nobody raises."""
    L, y, _, _ = random_quadratic(3, 2.0)
    res = run(name, data(L, y, s=-1.0), _good_starts(2), max_iter=100)
    assert_honest(res)
    if name in GLOBALISED:
        assert set(res.status) <= {"linesearch_failed", "stalled"}, res.status
        assert np.all(res.nit < 50), res.nit
        assert_monotone(res)
        f0 = np.sum((_good_starts(2) @ L.T - y) ** 2, axis=1)
        assert np.all(res.fun <= f0 * (1 + 1e-12)) and np.all(np.isfinite(res.x))


@pytest.mark.parametrize("name", registered())
def test_singular_hessian(name):
    """A rank-deficient L: the Hessian 2LᵀL is singular and the minimisers form a line. The
    textbook Newton-Raphson step does not exist (status ``singular``); globalised methods still
    reach f = 0."""
    L = np.diag([1.0, 2.0, 0.0])
    y = np.array([0.5, -1.0, 0.0])
    res = run(name, data(L, y), _good_starts(3), max_iter=200)
    assert_honest(res)
    if name == "newton-raphson":
        assert np.all(res.status == "singular") and np.all(res.nit == 1)
    if name in GLOBALISED:
        assert np.all(res.status == "converged") and np.all(res.fun <= 1e-14), (res.status, res.fun)
        assert_monotone(res)
