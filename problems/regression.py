"""Synthetic regression and fitting problems: ``linreg``, ``ridge``, ``logreg``, ``gaussian-fit``, ``mlp``.

Each problem's data (design matrix X, targets y, histogram counts) lives in ``Problem.data`` and
enters f as its second argument. Where the minimiser has a closed form it is built in by
construction (``linreg``: noise orthogonal to the columns of X, so the least-squares solution is
exactly the true coefficient vector); where it does not (``logreg``, ``gaussian-fit``) it is
computed once, at construction, by Newton / Gauss–Newton iteration in float64 to ‖∇f‖ at the
rounding level, and the tests check it against scipy.optimize independently.
"""
from __future__ import annotations

import math

import numpy as np
import jax
import jax.numpy as jnp

from optbench_core import OptbenchError

from .base import MAX_ENTRIES, Problem
from .lsq import sse
from .registry import register


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptbenchError(msg)



MAX_LOGREG_D = 5000
"""Most features ``logreg`` takes: its x* comes from Newton's method at construction, with a dense
d × d Hessian (and its eigenvalues) and n·d² work per step."""


def _design(n: int, d: int, cond: float, seed: int):
    """X = U diag(s) Vᵀ with orthonormal U (n×d), V (d×d), singular values √n·[1 … 1/cond] log-spaced."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, d)))
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = math.sqrt(n) * (np.logspace(0.0, -math.log10(cond), d) if d > 1 else np.ones(1))
    return u, s, v, rng


def _linear_data(name: str, n: int, d: int, cond: float, noise: float, seed: int):
    _need(d >= 1, f"{name} needs d >= 1, got {d}")
    _need(n >= d, f"{name} needs n >= d, got n={n}, d={d}")
    _need(cond >= 1.0, f"{name} needs cond >= 1, got {cond}")
    _need(noise >= 0.0, f"{name} needs noise >= 0, got {noise}")
    _need(seed >= 0, f"{name} needs seed >= 0, got {seed}")
    _need(n * d <= MAX_ENTRIES, f"{name}: n·d = {n * d} is too large to build (limit 2e8)")
    u, s, v, rng = _design(n, d, cond, seed)
    x = (u * s) @ v.T
    beta = rng.standard_normal(d)
    e = noise * rng.standard_normal(n)
    e_perp = e - u @ (u.T @ e)          # orthogonal to range(X): Xᵀ e_perp = 0
    y = x @ beta + e_perp
    return x, y, u, s, v, beta, e_perp


@register("linreg", family="regression", dims="d (default 5)", dim_param="d",
          tags=("regression", "least-squares", "linear", "convex", "scalable"))
def linreg(n: int = 100, d: int = 5, cond: float = 100.0, noise: float = 0.1, seed: int = 0) -> Problem:
    """Linear least squares ‖Xb − y‖² with chosen n, d and κ(X) = cond; x* and f* exact by construction.

    X = U diag(s) Vᵀ (random orthonormal U, V; s log-spaced over [√n/cond, √n]); y = Xβ + e⊥
    with e⊥ the part of Gaussian noise orthogonal to range(X), so the normal equations hold
    exactly at b = β and f* = ‖e⊥‖² (Golub & Van Loan, Matrix Computations, §5.3). x0 = 0.
    "Exactly" up to the rounding of the stored X and y: f(β) = f* to rounding at any cond, but
    the minimiser of the stored data moves off β by about κ²·ε·‖e⊥‖/‖X‖ (relative 1e-7 at
    κ = 10⁶, 1e-3 at 10⁸, order one beyond 10¹⁰), where x itself is no longer determined in
    float64. With d = 1, X is one column and κ = 1 whatever cond says.
    """
    x, y, _, _, _, beta, e_perp = _linear_data("linreg", n, d, cond, noise, seed)

    def residuals(b, data):
        return b @ data["XT"] - data["y"]

    def f(b, data):   # = Σ r², with a gradient that reads X once (problems/lsq.py)
        return sse(b, data["XT"], data["y"])

    w = 2.0 * max(1.0, float(np.max(np.abs(beta))))
    # X is kept transposed, Xᵀ of shape (d, n) in C order: the layout whose single-pass gradient
    # streams (problems/lsq.py); ``data["XT"].T`` is X
    return Problem(name="linreg", f=f, residuals=residuals, x0=np.zeros(d), f_star=float(e_perp @ e_perp), x_star=beta,
                   data={"XT": np.ascontiguousarray(x.T), "y": y}, bounds=(np.full(d, -w), np.full(d, w)),
                   tags=("regression", "least-squares", "linear", "convex", "scalable"),
                   description=f"‖Xb − y‖², X {n}×{d}, κ = {cond:g}", info={"cond": cond})


@register("ridge", family="regression", dims="d (default 5)", dim_param="d",
          tags=("regression", "least-squares", "linear", "convex", "scalable"))
def ridge(n: int = 100, d: int = 5, cond: float = 100.0, noise: float = 0.1, lam: float = 1.0,
          seed: int = 0) -> Problem:
    """Ridge regression ‖Xb − y‖² + λ‖b‖² on the ``linreg`` data; x* = V diag(s²/(s² + λ)) Vᵀβ.

    Closed form from the SVD X = U diag(s) Vᵀ that built the data (Hoerl & Kennard 1970); the
    residual form stacks Xb − y and √λ·b. κ of the Hessian is (s₁² + λ)/(s_d² + λ).
    """
    _need(lam >= 0.0, f"ridge needs lam >= 0, got {lam}")
    x, y, u, s, v, beta, _ = _linear_data("ridge", n, d, cond, noise, seed)
    sq = math.sqrt(lam)
    xs = v @ ((s ** 2 / (s ** 2 + lam)) * (v.T @ beta))
    r = x @ xs - y
    fs = float(r @ r + lam * xs @ xs)

    def residuals(b, data):
        return jnp.concatenate([data["X"] @ b - data["y"], sq * b])

    w = 2.0 * max(1.0, float(np.max(np.abs(beta))))
    return Problem(name="ridge", residuals=residuals, x0=np.zeros(d), f_star=fs, x_star=xs,
                   data={"X": x, "y": y}, bounds=(np.full(d, -w), np.full(d, w)),
                   tags=("regression", "least-squares", "linear", "convex", "scalable"),
                   description=f"‖Xb − y‖² + {lam:g}‖b‖², X {n}×{d}", info={"cond": cond, "lam": lam})


def _logistic_loss(w, x, y, lam, ns):
    m = y * (x @ w)
    return ns.mean(ns.logaddexp(0.0, -m)) + 0.5 * lam * (w @ w)


def _newton_logistic(x, y, lam, iters=None):
    """Minimise the mean logistic loss + ½λ‖w‖² by damped Newton (Armijo backtracking), float64.

    Returns (w, f, ‖∇f‖, finite): ``finite`` is False when the iterates ran off to infinity, as
    they do on separable data with λ = 0 — there f → 0 and ∇f → 0 along a ray, but the Hessian
    vanishes too, so a minimiser is told apart by a Hessian that stays positive definite. With
    λ > 0 the loss is strongly convex and a minimiser always exists; ``finite`` then says that
    Newton's method got to it. (A tiny λ on separable data puts w* far out, ‖w*‖ ~ log(1/λ) over
    the margin, with f* and ∇f tiny all the way there: convergence is judged by the Newton
    decrement ∇fᵀH⁻¹∇f ≈ 2(f − f*) relative to f and by the step relative to w, never by an
    absolute ‖∇f‖, which is already small far from w*; the iteration itself runs until the Newton
    step is at the rounding level of w.)

    σ(−m) and σ(m)σ(−m) are computed as exp(−log(1 + eᵐ)) and exp(−log(1 + eᵐ) − log(1 + e⁻ᵐ)),
    to full relative accuracy at any margin m (½(1 − tanh(m/2)) is 0 beyond m ≈ 37, where that
    w* lies). Near the minimiser the decrease a Newton step predicts falls below the rounding of f
    itself and the Armijo test can no longer see it; a step is then also taken when f stays level
    to rounding and ‖∇f‖ falls (the Newton direction is a descent direction for ‖∇f‖² too:
    d/dt ‖∇f(w + ts)‖² = −2‖∇f‖² at t = 0), so the iteration is not stopped short of ∇f = 0.
    """
    n, d = x.shape
    w = np.zeros(d)
    if iters is None:   # λ = 0: 100 steps tell a minimiser from a run to infinity; λ > 0: about
        iters = 100 if lam == 0.0 else 1000   # one step per unit of log(1/λ) on separable data

    def grad(w):
        m = y * (x @ w)
        la, lb = np.logaddexp(0.0, m), np.logaddexp(0.0, -m)
        return -(x.T @ (y * np.exp(-la))) / n + lam * w, np.exp(-la - lb)   # σ(−m), σ(m)σ(−m)

    def newton(w):
        g, q = grad(w)
        h = (x.T * q) @ x / n + lam * np.eye(d)
        try:
            step = np.linalg.solve(h, -g)
        except np.linalg.LinAlgError:              # a Hessian that underflowed to singular
            step = np.full(d, np.nan)
        return g, h, step

    f = _logistic_loss(w, x, y, lam, np)
    for _ in range(iters):
        g, _, step = newton(w)
        gn = np.linalg.norm(g)
        if not np.linalg.norm(step) > 1e-14 * max(1.0, np.linalg.norm(w)):   # at rounding (or no step)
            break
        t, accepted = 1.0, False
        while t > 1e-12:
            w_new = w + t * step
            f_new = _logistic_loss(w_new, x, y, lam, np)
            if f_new <= f + 1e-4 * t * (g @ step) or (
                    f_new - f <= 1e-14 * f and np.linalg.norm(grad(w_new)[0]) < gn):
                accepted = True
                break
            t *= 0.5
        if not accepted:                           # neither f nor ‖∇f‖ falls: as far as it goes
            break
        w, f = w_new, f_new
    g, h, step = newton(w)
    gn = float(np.linalg.norm(g))
    finite = bool(-(g @ step) <= 1e-14 * f and np.linalg.norm(step) <= 1e-8 * max(1.0, np.linalg.norm(w)))
    if lam == 0.0:
        curvature = np.linalg.eigvalsh(h)[0] / max(np.linalg.eigvalsh(x.T @ x / n)[-1], 1e-300)
        finite = finite and gn <= 1e-10 and curvature >= 1e-8
    return w, float(_logistic_loss(w, x, y, lam, np)), gn, finite


@register("logreg", family="regression", dims="d (default 5)", dim_param="d",
          tags=("regression", "classification", "convex", "scalable"))
def logreg(n: int = 200, d: int = 5, separable: bool = False, lam: float = 0.0, seed: int = 0) -> Problem:
    """Logistic regression: mean log(1 + exp(−yᵢ xᵢ·w)) + ½λ‖w‖², synthetic labels yᵢ = ±1.

    Features are standard normal. Non-separable (default): labels drawn from the logistic model
    with a random w_true, so a finite minimiser exists unless the draw happens to be separable
    anyway (few points per feature: then, with λ = 0, a one-line error); x* and f* come from
    Newton's method in float64 at construction (the optimality system ∇f = 0 solved to rounding
    level). Separable: yᵢ = sign(xᵢ·w_true); with λ = 0 the infimum f* = 0 is approached only as
    ‖w‖ → ∞ (no x*), the classic case where gradient descent's iterates diverge in norm while
    f → 0 (Soudry et al. 2018, "The implicit bias of gradient descent on separable data"). Any
    λ > 0 makes f strongly convex, with a minimiser for any labels. x0 = 0. Sizes: n·d ≤ 2·10⁸,
    and d ≤ 5000 where x* is computed.
    """
    _need(d >= 1 and n >= 2, f"logreg needs n >= 2 and d >= 1, got n={n}, d={d}")
    _need(n * d <= MAX_ENTRIES, f"logreg: n·d = {n * d} is too large to build (limit 2e8)")
    _need(d <= MAX_LOGREG_D or (separable and lam == 0.0),
          f"logreg: d = {d} is too large to build (limit {MAX_LOGREG_D}: x* needs a dense d×d Newton solve)")
    _need(lam >= 0.0, f"logreg needs lam >= 0, got {lam}")
    _need(seed >= 0, f"logreg needs seed >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    w_true *= 2.0 / max(np.linalg.norm(w_true), 1e-12)
    z = x @ w_true
    if separable:
        y = np.where(z >= 0, 1.0, -1.0)
    else:
        y = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-z)), 1.0, -1.0)

    def f(w, data):
        return _logistic_loss(w, data["X"], data["y"], lam, jnp)

    tags = ("regression", "classification", "convex", "scalable") + (("separable",) if separable else ())
    fs, xs = None, None
    if separable and lam == 0.0:
        fs = 0.0
        tags += ("no-minimizer",)
    else:
        xs, fs, gn, finite = _newton_logistic(x, y, lam)
        if not finite and lam > 0.0:
            # strongly convex, so a minimiser exists; Newton's method did not get to it
            raise OptbenchError(f"logreg: Newton's method did not reach the minimiser for lam={lam:g} "
                                f"(‖∇f‖ = {gn:.1e}; the labels of seed {seed} are nearly separable); use a larger lam")
        if not finite:
            raise OptbenchError(f"logreg: these labels are separable (seed {seed}); no finite minimiser, "
                                "use separable=true or lam > 0")
    wb = 3.0 * max(1.0, float(np.max(np.abs(xs))) if xs is not None else 2.0)
    return Problem(name="logreg", f=f, x0=np.zeros(d), f_star=fs, x_star=xs, data={"X": x, "y": y},
                   bounds=(np.full(d, -wb), np.full(d, wb)), tags=tags,
                   description=f"logistic loss, {n}×{d}" + (", separable" if separable else ""),
                   info={"separable": separable, "lam": lam})


def _gauss_model(p, c, ns):
    return p[0] * ns.exp(-0.5 * ((c - p[1]) / p[2]) ** 2)


def _gauss_fit_derivatives(p, c, k):
    """Residuals r = model − k, Jacobian J (bins × 3) and the residual-weighted second
    derivatives Σᵢ rᵢ∇²rᵢ (3 × 3) of the Gaussian model at p = (h, μ, σ), u = (c − μ)/σ."""
    h, s = p[0], p[2]
    u = (c - p[1]) / s
    e = np.exp(-0.5 * u * u)
    r = h * e - k
    jac = np.stack([e, h * e * u / s, h * e * u * u / s], 1)
    w = r * e
    hmm = np.sum(w * (u * u - 1.0)) * h / s ** 2
    hms = np.sum(w * (u ** 3 - 2.0 * u)) * h / s ** 2
    hss = np.sum(w * (u ** 4 - 3.0 * u * u)) * h / s ** 2
    hhm, hhs = np.sum(w * u) / s, np.sum(w * u * u) / s
    second = np.array([[0.0, hhm, hhs], [hhm, hmm, hms], [hhs, hms, hss]])
    return r, jac, second


def _gauss_fit_newton(p, c, k, iters: int = 50):
    """Newton's method on Σ r² from p (exact Hessian 2(JᵀJ + Σ rᵢ∇²rᵢ)), halving a step that
    does not decrease f; stops when a step no longer moves p."""
    r, jac, second = _gauss_fit_derivatives(p, c, k)
    f = r @ r
    for _ in range(iters):
        try:
            step = np.linalg.solve(jac.T @ jac + second, -(jac.T @ r))
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6:
            r_new, jac_new, second_new = _gauss_fit_derivatives(p + t * step, c, k)
            if r_new @ r_new <= f:
                break
            t *= 0.5
        else:
            break
        p = p + t * step
        r, jac, second, f = r_new, jac_new, second_new, r_new @ r_new
        if np.linalg.norm(t * step) <= 1e-15 * np.linalg.norm(p):
            break
    return p


@register("gaussian-fit", family="regression", dims="3", tags=("regression", "least-squares", "nonconvex"))
def gaussian_fit(n: int = 1000, bins: int = 30, seed: int = 0) -> Problem:
    """Fit h·exp(−(c − μ)²/(2σ²)) to a histogram of n simulated heights (cm) by least squares.

    The classic first nonlinear fit (Gauss's normal curve; e.g. Bevington & Robinson, "Data
    Reduction and Error Analysis for the Physical Sciences", on fitting arbitrary functions). Heights ~ N(170, 10²), binned on [130, 210]; the
    parameters are (h, μ, σ). x* and f* come from Gauss–Newton started at the sample moments,
    run to convergence in float64 at construction (finished by Newton's method where Gauss–Newton
    converges only linearly); (h, μ, −σ) is the same fit. x0 = (max/2, 160, 20). A histogram
    with no finite best fit (too few heights for the bins: the fit degenerates to an ever
    narrower spike) is a one-line error, as is a fit that does not reach ∇f = 0.
    """
    _need(n >= 10 and bins >= 4, f"gaussian-fit needs n >= 10 and bins >= 4, got n={n}, bins={bins}")
    _need(n <= MAX_ENTRIES, f"gaussian-fit: n = {n} heights is too large to build (limit 2e8)")
    _need(3 * bins <= MAX_ENTRIES, f"gaussian-fit: bins = {bins} is too large to build (limit 3·bins <= 2e8)")
    _need(seed >= 0, f"gaussian-fit needs seed >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    heights = rng.normal(170.0, 10.0, n)
    counts, edges = np.histogram(heights, bins=bins, range=(130.0, 210.0))
    counts = counts.astype(float)
    centers = 0.5 * (edges[:-1] + edges[1:])

    p = np.array([counts.max(), heights.mean(), heights.std()])
    converged = False
    for _ in range(100):
        e = np.exp(-0.5 * ((centers - p[1]) / p[2]) ** 2)
        r = p[0] * e - counts
        jac = np.stack([e, p[0] * e * (centers - p[1]) / p[2] ** 2, p[0] * e * (centers - p[1]) ** 2 / p[2] ** 3], 1)
        dp = np.linalg.lstsq(jac, -r, rcond=None)[0]
        p = p + dp
        if np.linalg.norm(dp) <= 1e-15 * np.linalg.norm(p):
            converged = True
            break
    if not converged:
        # Gauss–Newton converges only linearly where the residuals are large (few points, many
        # bins): finish with Newton's method on f = Σ r², exact Hessian, quadratic convergence
        p = _gauss_fit_newton(p, centers, counts)
    r, jac, _ = _gauss_fit_derivatives(p, centers, counts)
    sv = np.linalg.svd(jac * (1.0 / np.maximum(np.linalg.norm(jac, axis=0), 1e-300)), compute_uv=False)
    if not (np.all(np.isfinite(p)) and sv[-1] > 1e-9 * sv[0]):
        # a histogram a narrowing, ever taller Gaussian fits better and better (e.g. two occupied
        # bins): f approaches its infimum only as σ → 0, so there is no x* to record
        raise OptbenchError(f"gaussian-fit: the {bins}-bin histogram of n={n} heights (seed {seed}) has no finite "
                            "best fit (the fit degenerates to a spike); use more heights or fewer bins")
    # first-order optimality: r ⟂ every Jacobian column, to 1e-10 relative (or to the rounding
    # level of the data where the fit is exact and r is all rounding)
    jn = np.linalg.norm(jac, axis=0)
    if not np.all(np.abs(jac.T @ r) <= jn * (1e-10 * np.linalg.norm(r) + 1e-13 * np.linalg.norm(counts))):
        cos = np.max(np.abs(jac.T @ r) / (jn * max(np.linalg.norm(r), 1e-300)))
        raise OptbenchError(f"gaussian-fit: the least-squares fit for n={n}, bins={bins}, seed={seed} did not converge "
                            f"(residual still at cos {cos:.1e} to the Jacobian); try other parameters")
    r = _gauss_model(p, centers, np) - counts

    def residuals(x, data):
        return _gauss_model(x, data["c"], jnp) - data["k"]

    return Problem(name="gaussian-fit", residuals=residuals, x0=np.array([counts.max() / 2.0, 160.0, 20.0]),
                   f_star=float(r @ r), x_star=p, minima=[p * np.array([1.0, 1.0, -1.0])],
                   data={"c": centers, "k": counts},
                   bounds=(np.array([0.0, 130.0, 1.0]), np.array([2.0 * counts.max(), 210.0, 40.0])),
                   tags=("regression", "least-squares", "nonconvex"),
                   description=f"Gaussian fit to a {bins}-bin histogram of {n} heights")


def _mlp_forward(w, x, hidden: int, activation: str, ns):
    w1, b1, w2, b2 = w[:hidden], w[hidden:2 * hidden], w[2 * hidden:3 * hidden], w[3 * hidden]
    z = x[:, None] * w1[None, :] + b1[None, :]
    if activation == "tanh":
        a = ns.tanh(z)
    elif ns is np:   # the teacher's curve: |z| ≤ 8 there, no overflow
        a = 1.0 / (1.0 + np.exp(-z))
    else:
        a = _sigmoid(z)
    return a @ w2 + b2


@jax.custom_jvp
def _sigmoid(z):
    """σ(z) = 1/(1 + e⁻ᶻ) with derivative σ(z)σ(−z), accurate at every z. Differentiating
    1/(1 + e⁻ᶻ) as written gives 0·∞ = NaN once e⁻ᶻ overflows (z < −88 in float32, −709 in
    float64), and σ(1 − σ) loses σ' where σ rounds to 1 (z > 37 in float64)."""
    return jax.nn.sigmoid(z)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    s = jax.nn.sigmoid(z)
    return s, s * jax.nn.sigmoid(-z) * dz


@register("mlp", family="regression", dims="3·hidden + 1 (default 25)", dim_param="hidden",
          tags=("regression", "least-squares", "nonconvex", "neural-net"))
def mlp(hidden: int = 8, n: int = 64, activation: str = "tanh", target: str = "teacher", seed: int = 0) -> Problem:
    """A 1–hidden–1 network (tanh or sigmoid units) fitted to a plane curve y = g(x) by least squares.

    The parameters are one flat vector (W₁, b₁, W₂, b₂) of length 3·hidden + 1, so ∇f is exactly
    what backpropagation computes (Rumelhart, Hinton & Williams 1986). n points x ∈ [−2, 2].
    ``target=teacher`` (default): g is a network of the same shape with random weights, so f* = 0
    at the teacher's weights (x*; hidden-unit permutations give more minimisers).
    ``target=sine``: g(x) = sin(πx), f* unknown. x0: Glorot-uniform weights, zero biases (seeded).
    """
    _need(hidden >= 1 and n >= 2, f"mlp needs hidden >= 1 and n >= 2, got hidden={hidden}, n={n}")
    _need(n * (3 * hidden + 1) <= MAX_ENTRIES,
          f"mlp: n·(3·hidden + 1) = {n * (3 * hidden + 1)} Jacobian entries is too large to build (limit 2e8)")
    _need(activation in ("tanh", "sigmoid"), f"mlp activation must be tanh or sigmoid, got {activation!r}")
    _need(target in ("teacher", "sine"), f"mlp target must be teacher or sine, got {target!r}")
    _need(seed >= 0, f"mlp needs seed >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    x = np.linspace(-2.0, 2.0, n)
    teacher = np.concatenate([rng.uniform(-3.0, 3.0, hidden), rng.uniform(-2.0, 2.0, hidden),
                              rng.standard_normal(hidden), [0.0]])
    y = _mlp_forward(teacher, x, hidden, activation, np) if target == "teacher" else np.sin(np.pi * x)
    lim = math.sqrt(6.0 / (1 + hidden))
    x0 = np.concatenate([rng.uniform(-lim, lim, hidden), np.zeros(hidden), rng.uniform(-lim, lim, hidden), [0.0]])

    def residuals(w, data):
        return _mlp_forward(w, data["x"], hidden, activation, jnp) - data["y"]

    dim = 3 * hidden + 1
    return Problem(name="mlp", residuals=residuals, x0=x0, f_star=0.0 if target == "teacher" else None,
                   x_star=teacher if target == "teacher" else None, data={"x": x, "y": y},
                   bounds=(np.full(dim, -4.0), np.full(dim, 4.0)),
                   tags=("regression", "least-squares", "nonconvex", "neural-net"),
                   description=f"1-{hidden}-1 {activation} network, {n} points, target {target}",
                   info={"hidden": hidden, "activation": activation, "target": target})
