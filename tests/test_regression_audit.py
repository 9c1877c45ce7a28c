"""Audit of the regression problems (linreg, ridge, logreg, gaussian-fit, mlp) and problems/lsq.py
against independent references: closed forms written out in numpy, scipy.optimize, finite
differences. The problems' JAX functions are only called eagerly (no jit), on small sizes.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special

import problems
from problems import lsq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _grad(p, w, dtype=jnp.float64):
    data = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), p.data)
    return jax.value_and_grad(lambda w: p.objective(w, data))(jnp.asarray(w, dtype))


# -- linreg / ridge ---------------------------------------------------------------------------

def test_linreg_value_gradient_hessian_are_the_normal_equation_forms():
    p = problems.get("linreg:n=37:d=4:cond=10:seed=1")
    x, y = p.data["XT"].T, p.data["y"]
    rng = np.random.default_rng(0)
    for _ in range(2):
        w = rng.standard_normal(4)
        f, g = _grad(p, w)
        r = x @ w - y
        assert float(f) == pytest.approx(r @ r, rel=1e-13)                 # Σ r², no ½, no 1/n
        assert np.allclose(g, 2.0 * x.T @ r, rtol=0, atol=1e-12 * np.abs(x.T @ r).max())
        h = jax.hessian(lambda w: p.objective(w, p.data))(jnp.asarray(w))
        assert np.allclose(h, 2.0 * x.T @ x, rtol=1e-12, atol=1e-12)
        jac = jax.jacfwd(lambda w: p.residual_vector(w, p.data))(jnp.asarray(w))
        assert np.allclose(jac, x, rtol=0, atol=1e-14)                      # no intercept column
    b, *_ = np.linalg.lstsq(x, y, rcond=None)
    assert np.allclose(b, p.x_star, rtol=0, atol=1e-12)
    assert p.f_star == pytest.approx(float(np.sum((x @ b - y) ** 2)), rel=1e-12)


@pytest.mark.parametrize("spec", ["linreg:seed=5", "ridge:seed=5", "logreg:seed=5", "gaussian-fit:seed=5",
                                  "mlp:seed=5", "mlp:target=sine:activation=sigmoid:seed=5"])
def test_same_seed_same_data_other_seed_other_data(spec):
    a, b, c = problems.get(spec), problems.get(spec), problems.get(spec.replace("seed=5", "seed=6"))
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k]) and a.data[k].dtype == b.data[k].dtype
    assert np.array_equal(a.x0, b.x0) and a.f_star == b.f_star
    assert (a.x_star is None) == (b.x_star is None) and (a.x_star is None or np.array_equal(a.x_star, b.x_star))
    moved = [k for k in a.data if not np.array_equal(a.data[k], c.data[k])] + (
        [] if np.array_equal(a.x0, c.x0) else ["x0"])
    assert moved                                       # a sine target keeps its data, not its x0


# -- lsq.sse ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtypes", [("float32", "float32", "float64"), ("float64", "float64", "float32"),
                                    ("float32", "float32", "float32")])
def test_sse_value_and_gradient_with_mixed_precision_data(dtypes):
    # the loop carried f and g in result_type(w, Xᵀ) while r = Xw − y took y's type too: a float64
    # y with float32 w and X was a TypeError ("carry input and output must have equal types")
    rng = np.random.default_rng(2)
    x, y, w = rng.standard_normal((50, 3)), rng.standard_normal(50), rng.standard_normal(3)
    wd, xd, yd = (np.dtype(t) for t in dtypes)
    w_, x_, y_ = w.astype(wd), x.astype(xd), y.astype(yd)
    r = x_.astype(float) @ w_.astype(float) - y_.astype(float)
    for rows in (None, 7):                             # one block + tail, and several blocks + tail
        f, g = jax.value_and_grad(lambda w: lsq.sse(w, np.ascontiguousarray(x_.T), y_, rows))(jnp.asarray(w_))
        tol = 1e-5 if np.float32 in (wd, xd, yd) else 1e-12
        assert float(f) == pytest.approx(r @ r, rel=tol)
        assert np.allclose(np.asarray(g, float), 2.0 * x_.astype(float).T @ r, rtol=tol, atol=tol * 10)
        assert g.dtype == wd


# -- logreg -----------------------------------------------------------------------------------

def _np_logistic(w, a, lam):
    """mean log(1 + e^{−aᵢ·w}) + ½λ‖w‖² and its gradient, aᵢ = yᵢxᵢ, stable at any margin."""
    m = a @ w
    return np.mean(np.logaddexp(0.0, -m)) + 0.5 * lam * w @ w, -(a.T @ special.expit(-m)) / len(m) + lam * w


def _np_logistic_hess(w, a, lam):
    m = a @ w
    return (a.T * (special.expit(m) * special.expit(-m))) @ a / len(m) + lam * np.eye(len(w))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_logreg_loss_and_gradient_at_huge_margins(dtype):
    p = problems.get("logreg:n=6:d=2:lam=0.5")
    a = p.data["y"][:, None] * p.data["X"]
    for s in (800.0, -800.0, 1e5):
        w = np.array([s, 0.3])
        f, g = _grad(p, w, dtype)
        fr, gr = _np_logistic(w, a, 0.5)
        assert np.isfinite(float(f)) and np.all(np.isfinite(g))
        tol = 1e-12 if dtype == jnp.float64 else 1e-5
        assert float(f) == pytest.approx(fr, rel=tol)
        assert np.allclose(np.asarray(g, float), gr, rtol=tol, atol=tol * np.abs(gr).max())


def _trust_exact(p):
    a, lam = p.data["y"][:, None] * p.data["X"], p.info["lam"]
    res = optimize.minimize(lambda w: _np_logistic(w, a, lam)[0], np.zeros(p.dim),
                            jac=lambda w: _np_logistic(w, a, lam)[1], hess=lambda w: _np_logistic_hess(w, a, lam),
                            method="trust-exact", options={"gtol": 1e-14, "maxiter": 2000})
    return res, a, lam


@pytest.mark.parametrize("spec", ["logreg:n=20:d=4:seed=5", "logreg:n=60:d=15:seed=7"])
def test_logreg_draw_that_is_not_separable_has_its_minimiser(spec):
    # these draws are not separable (the LP for yᵢxᵢ·w ≥ 1 is infeasible), so a finite minimiser
    # exists; Newton's method stalled at ‖∇f‖ ≈ 1e-9, where the Armijo test stops seeing f fall,
    # and the problem was refused as "these labels are separable"
    p = problems.get(spec)
    a = p.data["y"][:, None] * p.data["X"]
    lp = optimize.linprog(np.zeros(p.dim), A_ub=-a, b_ub=-np.ones(len(a)), bounds=(None, None))
    assert lp.status == 2                                             # infeasible: not separable
    res, a, lam = _trust_exact(p)
    assert np.linalg.norm(_np_logistic(p.x_star, a, lam)[1]) <= 1e-14
    assert p.f_star == pytest.approx(res.fun, rel=1e-13) and p.f_star <= res.fun + 1e-15
    assert np.allclose(p.x_star, res.x, rtol=0, atol=1e-8 * np.abs(res.x).max())


@pytest.mark.parametrize("lam", [1e-9, 1e-6])
def test_logreg_small_lam_on_separable_labels(lam):
    # λ > 0 makes f strongly convex: a minimiser exists for any labels. λ = 1e-9 was refused with
    # "these labels are separable ... use separable=true or lam > 0" (both already given): the
    # Hessian's λ-sized smallest eigenvalue failed a curvature test meant for λ = 0, and σ(−m)
    # as ½(1 − tanh(m/2)) is 0 at the margins (m > 37) where this w* lies
    p = problems.get(f"logreg:separable=true:lam={lam}")
    res, a, lam = _trust_exact(p)
    assert res.success
    assert p.f_star == pytest.approx(res.fun, rel=1e-12)
    assert np.allclose(p.x_star, res.x, rtol=0, atol=1e-10 * np.abs(res.x).max())
    assert np.linalg.norm(_np_logistic(p.x_star, a, lam)[1]) <= 1e-10 * lam * np.linalg.norm(p.x_star)


# -- mlp --------------------------------------------------------------------------------------

def _mlp_ref(w, x, y, h):
    """f = Σ r² and its gradient for the 1–h–1 sigmoid network, backprop written out in numpy
    with σ and σ' = σ(z)σ(−z) from scipy's expit (accurate at any z)."""
    w1, b1, w2, b2 = w[:h], w[h:2 * h], w[2 * h:3 * h], w[3 * h]
    z = np.outer(x, w1) + b1
    s = special.expit(z)
    r = s @ w2 + b2 - y
    dz = (2.0 * r)[:, None] * w2[None, :] * special.expit(z) * special.expit(-z)
    return r @ r, np.concatenate([dz.T @ x, dz.sum(0), s.T @ (2.0 * r), [2.0 * r.sum()]])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_mlp_sigmoid_gradient_at_large_preactivations(dtype):
    # d/dz 1/(1 + e⁻ᶻ) taken as written is 0·∞ = NaN once e⁻ᶻ overflows: z < −88 in float32
    # (a weight of 50 on x = −2), z < −709 in float64
    p = problems.get("mlp:hidden=2:n=5:activation=sigmoid")
    x, y = p.data["x"], p.data["y"]
    for big in (50.0, 400.0):
        w = np.array([big, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
        f, g = _grad(p, w, dtype)
        fr, gr = _mlp_ref(w, x, y, 2)
        assert np.all(np.isfinite(np.asarray(g)))
        tol = 1e-12 if dtype == jnp.float64 else 1e-5
        assert float(f) == pytest.approx(fr, rel=tol)
        assert np.allclose(np.asarray(g, float), gr, rtol=tol, atol=tol * np.abs(gr).max())
    if dtype == jnp.float64:   # the tiny entry too (σ' ≈ e⁻⁴⁹ at x = −1), not only to ‖g‖'s scale
        g = np.asarray(_grad(p, np.array([50.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]))[1])
        assert g[0] == pytest.approx(_mlp_ref(np.array([50.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]), x, y, 2)[1][0], rel=1e-9)


@pytest.mark.parametrize("spec", ["mlp:hidden=3:n=10", "mlp:hidden=3:n=10:activation=sigmoid:target=sine"])
def test_mlp_gradient_and_jacobian_match_central_differences(spec):
    p = problems.get(spec)
    assert p.dim == 3 * 3 + 1 and p.x0.shape == (10,)
    rng = np.random.default_rng(1)
    w = p.x0 + 0.3 * rng.standard_normal(p.dim)
    f, g = _grad(p, w)
    jac = np.asarray(jax.jacfwd(lambda w: p.residual_vector(w, p.data))(jnp.asarray(w)))
    r = np.asarray(p.residual_vector(jnp.asarray(w), p.data))
    assert float(f) == pytest.approx(r @ r, rel=1e-14)                      # f = Σ r², no ½
    fd, jfd = np.zeros(p.dim), np.zeros_like(jac)
    for i in range(p.dim):
        e = np.zeros(p.dim)
        e[i] = 1e-6
        fd[i] = (float(p(w + e)) - float(p(w - e))) / 2e-6
        jfd[:, i] = (np.asarray(p.residual_vector(jnp.asarray(w + e), p.data))
                     - np.asarray(p.residual_vector(jnp.asarray(w - e), p.data))) / 2e-6
    assert np.linalg.norm(np.asarray(g) - fd) <= 1e-6 * np.linalg.norm(g)
    assert np.linalg.norm(jac - jfd) <= 1e-6 * np.linalg.norm(jac)


# -- sizes ------------------------------------------------------------------------------------

HUGE = ["mlp:hidden=2147483647", "mlp:n=2147483647", "mlp:hidden=100000:n=100000", "gaussian-fit:n=2147483647",
        "gaussian-fit:bins=2147483647", "logreg:n=2147483647", "logreg:n=1000000:d=1000", "logreg:n=6000:d=6000"]


def test_huge_sizes_are_refused_before_allocating():
    # run with the address space capped (4 GiB), so that a factory that tries to allocate the
    # tens of GB these specs ask for fails at once instead of filling the machine
    script = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "import problems\n"
        "out = []\n"
        "for s in sys.argv[1:]:\n"
        "    try:\n"
        "        problems.get(s); out.append('built')\n"
        "    except Exception as e:\n"
        "        out.append(type(e).__name__ + ': ' + str(e))\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script] + HUGE, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    msgs = json.loads(proc.stdout.strip().splitlines()[-1])
    for spec, msg in zip(HUGE, msgs):
        assert msg.startswith("OptbenchError: ") and "too large to build" in msg and "\n" not in msg, (spec, msg)
