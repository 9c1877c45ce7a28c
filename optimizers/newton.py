"""Newton's method: the plain Newton-Raphson step, the globalised variant, and truncated
Newton-CG on Hessian-vector products.

Newton-Raphson on ∇f = 0: x_{k+1} = x_k − ∇²f(x_k)⁻¹ ∇f(x_k), the minimiser of the local
second-order Taylor model. Converges quadratically near a minimiser with positive definite
Hessian, but is attracted to saddles and maxima and may diverge from far away; it is kept
unsafeguarded as the textbook method. ``newton`` adds the two standard safeguards (Nocedal &
Wright §3.4–3.5): a Hessian modification so the direction always descends, and Armijo
backtracking from the unit step.

**Root finding.** Given a square residual system F: ℝⁿ → ℝⁿ (a least-squares problem with as
many residuals as unknowns), both methods take the Jacobian step instead, x ← x − J(x)⁻¹F(x)
(Newton 1669/Raphson 1690 in 1-D, Kantorovich in n-D; Dennis & Schnabel 1983, Alg. 5.1.1):
``newton-raphson`` the full step, ``newton`` the damped step that backtracks on ‖F‖² (Dennis &
Schnabel Alg. 6.3.1; the Jacobian step is a descent direction for ‖F‖² wherever J is
nonsingular, with slope −2‖F‖²). ``mode`` selects: ``auto`` (root finding on square residual
systems that the problem tags "root", minimisation otherwise), ``root`` or ``minimize``. In root
mode State.f = ‖F‖² and State.g = 2JᵀF, its gradient, so the driver's ‖g‖ test still applies.
"""
from __future__ import annotations

import jax.numpy as jnp

from optbench_core import OptbenchError

from . import krylov
from . import linesearch as ls
from .base import STATUS_SINGULAR, Optimizer, State, initial_state, round_off_step, stall_where
from .dense import EIG_FLOOR, least_squares_model, modified_newton_direction, solve, vm

MODES = ("auto", "root", "minimize")


def _root_mode(oracle, x, mode: str, method: str) -> bool:
    """Decide, at trace time, whether this run solves F(x) = 0 (static for the compile)."""
    if mode == "minimize" or (mode == "auto" and not oracle.root_problem):
        return False  # decided without evaluating r, so a residual problem is traced only as f
    square = oracle.has_residuals and oracle.num_residuals(x) == x.shape[0]
    if mode == "root" and not square:
        raise OptbenchError(f"{method}: mode=root needs a square residual system F: R^n -> R^n "
                            f"(a least-squares problem with as many residuals as unknowns)")
    # auto: root finding only where the problem says it is a root problem; a square least-squares
    # problem such as Rosenbrock's residual form is still minimised with the Hessian of Σ r².
    return square and (mode == "root" or oracle.root_problem)


def _root_state(oracle, x0):
    r, jac = oracle.residuals_and_jac(x0)
    return initial_state(oracle, x0, aux=(r, jac), f=jnp.vdot(r, r), g=2.0 * vm(r, jac))


def _finite_slope(g, d):
    """(∇f·d, whether d is finite) for a line search along d. With ∇f finite (the driver stops a
    start whose gradient is not), ∇f·d is finite exactly when d is (an overflow of the product
    aside), so the test reuses the slope's reduction: one over d itself, or a select of the slope,
    added a kernel to 2-D newton's step (about 10 % of its time at 10³ starts). A NaN or +inf
    slope fails the search at its first trial; −inf backtracks through non-finite trials and fails."""
    slope = jnp.vdot(g, d)
    return slope, jnp.isfinite(slope)


def _check_params(method, checks):
    """One line naming the first parameter out of its range: ``checks`` holds (ok, name, range, value)."""
    for ok, name, allowed, value in checks:
        if not ok:
            raise OptbenchError(f"{method}: {name} must be {allowed}, got {value!r}")


def _check_mode(method, mode):
    if mode not in MODES:
        raise OptbenchError(f"{method}: mode must be one of {', '.join(MODES)}, got {mode!r}")


def newton_raphson(mode: str = "auto") -> Optimizer:
    """Plain Newton-Raphson: full step −H⁻¹g (or −J⁻¹F for a square system), no line search,
    no Hessian fix. A singular Hessian/Jacobian (non-finite step) ends the start with status
    ``singular`` where it is, with nothing more counted; a step at round-off level
    (‖Δx‖ ≤ 10ε‖x‖, as Gauss-Newton's) ``stalled``.
    ``mode``: ``auto`` | ``root`` | ``minimize`` (see the module docstring).
    """
    _check_mode("newton-raphson", mode)

    def init(oracle, x0):
        if _root_mode(oracle, x0, mode, "newton-raphson"):
            return _root_state(oracle, x0)
        f, g, h = oracle.value_grad_hess(x0)
        return initial_state(oracle, x0, aux=(h,), f=f, g=g)._replace(nhev=jnp.int32(1))

    def step(oracle, s: State) -> State:
        root = _root_mode(oracle, s.x, mode, "newton-raphson")
        if root:
            r, jac = s.aux
            d = -solve(jac, r)
        else:
            (h,) = s.aux
            d = -solve(h, s.g)
        ok = jnp.all(jnp.isfinite(d))
        x = jnp.where(ok, s.x + d, s.x)
        status = jnp.where(ok, s.status, STATUS_SINGULAR).astype(s.status.dtype)
        # a singular system gives no new point: the start ends where it is, and the evaluations
        # repeated there (the same point's) are not counted (they were, once more each)
        inc = ok.astype(s.nfev.dtype)
        if root:
            r, jac = oracle.residuals_and_jac(x)
            new = s._replace(x=x, f=jnp.vdot(r, r), g=2.0 * vm(r, jac), nfev=s.nfev + inc, njev=s.njev + inc,
                             status=status, aux=(r, jac))
        else:
            f, g, h = oracle.value_grad_hess(x)
            new = s._replace(x=x, f=f, g=g, nfev=s.nfev + inc, njev=s.njev + inc, nhev=s.nhev + inc, status=status,
                             aux=(h,))
        # the full step keeps no memory: one at round-off level repeats itself, or jitters x by an
        # ulp, to max_iter (float32 Himmelblau, 10 starts: 7 ran 1,000 iterations that way)
        return stall_where(round_off_step(x, s.x), new)

    return Optimizer("newton-raphson", init, step, {"mode": mode}, description="plain Newton step, no safeguards")


def newton(c1: float = 1e-4, shrink: float = 0.5, max_backtracks: int = 60, eig_floor: float = EIG_FLOOR,
           mode: str = "auto") -> Optimizer:
    """Newton with a Hessian fix and Armijo backtracking from α = 1 (N&W §3.4, Alg. 3.2).

    The Hessian's eigenvalues are replaced by max(|λ|, δ), δ = max(``eig_floor``·max|λ|, 10⁻¹²)
    (N&W eq. 3.41 and the absolute-value variant; the absolute floor is
    :func:`optimizers.dense.modified_newton_direction`'s, for H = 0), so the direction descends and
    moves away from saddles along negative curvature; Ĥ = H near a strict minimum whose Hessian has
    κ < 1/``eig_floor`` and no eigenvalue below 10⁻¹², keeping quadratic convergence (the default,
    a few ε, changes only eigenvalues that are negative or zero to round-off; see
    :data:`optimizers.dense.EIG_FLOOR`). Below 10⁻¹² the step depends on f's scale: f scaled by
    10⁻¹³ (a quadratic with eigenvalues 1.8e-13 and 2e-12) took 82 iterations instead of one.
    ``eig_floor`` is relative, in (0, 1]: at 1 every eigenvalue is max|λ| (steepest descent
    scaled by 1/max|λ|); beyond, δ only shrinks the step further, and overflows to no step at all.
    ``c1``: sufficient decrease; ``shrink``: largest backtracking factor; ``max_backtracks``:
    trials per iteration. For a square residual system (``mode``), the damped Jacobian step on
    ‖F‖², falling back to the minimum-norm Gauss-Newton step when J is singular to working
    precision (the Jacobian step not finite, or not a descent direction for ‖F‖², which it is for
    any nonsingular J); after a search along it that finds no decrease, the next iteration tries
    the Levenberg-Marquardt step −(JᵀJ + ‖F‖²I)⁻¹JᵀF from the same point (Yamashita & Fukushima
    2001's μ = ‖F‖²; on MGH Freudenstein-Roth, Broyden tridiagonal and Trigonometric five starts
    ended at points that are no minimum, now at local minima of ‖F‖²). A search that finds no
    decrease (in root mode, along that damped step) ends the start
    ``linesearch_failed`` where it is; in root mode a Jacobian with non-finite entries (no finite
    direction) ends it ``singular``, as for ``newton-raphson``. When minimising, a Hessian with
    non-finite entries at a finite point gives a NaN direction and x + 0·NaN: the start ends
    ``diverged`` (keeping x costs 2-D newton 3–8 % of its run time: not done).

    Per iteration: the Hessian at the current point (or the Jacobian at the accepted one), one f
    per line-search trial and the gradient at the point reached — also after a failed search, where
    it is evaluated again at the unchanged x and counted (not evaluating it there cost 2-D newton
    2 % of its run time).
    The Hessian is evaluated where
    the step starts, not carried from the previous iteration: the final point needs none, and
    the state holds no n×n matrix per start (2-D Rosenbrock, 10³ / 10⁴ starts: 0.95× / 0.90×
    the time of carrying it).
    """
    # each bad value named with its range (one line); eig_floor above 1 is no Newton step (1e300
    # made every start end linesearch_failed on its first iteration)
    _check_params("newton", ((0 < c1 < 0.5, "c1", "in (0, 0.5)", c1), (0 < shrink < 1, "shrink", "in (0, 1)", shrink),
                             (max_backtracks >= 1, "max_backtracks", "at least 1", max_backtracks),
                             (0 < eig_floor <= 1, "eig_floor", "in (0, 1]", eig_floor)))
    _check_mode("newton", mode)

    def init(oracle, x0):
        if _root_mode(oracle, x0, mode, "newton"):
            s = _root_state(oracle, x0)
            # the third entry: the previous search along the Jacobian step failed, so this
            # iteration searches along −∇‖F‖² instead
            return s._replace(aux=s.aux + (jnp.asarray(False),))
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        if _root_mode(oracle, s.x, mode, "newton"):
            r, jac, descend = s.aux
            d = -solve(jac, r)
            # The Jacobian step descends ‖F‖² wherever J is nonsingular (slope 2FᵀJ·d = −2‖F‖²). One
            # that does not, or is not finite, comes from a J singular to working precision: take
            # the minimum-norm Gauss-Newton step instead. Only a non-finite step did so before, but
            # LU can return a finite step of no use: MGH Brown almost-linear from x0 reached J with
            # cond 1.3e18 and an LU step of length 1.2e17, uphill for ‖F‖², and the search failed at
            # once (f = 272.7, no root). (Tested on the slope, a scalar: a test of JᵀJ's eigenvalues
            # against the Gauss-Newton model's floor cost 2-D root steps 10 % at 10³ starts.)
            step_at = least_squares_model(jac, r)[3]
            d = jnp.where(jnp.vdot(s.g, d) < 0, d, step_at(0.0))
            # after a failed search along that step, a Levenberg-Marquardt step with μ = ‖F‖²
            # (Yamashita & Fukushima 2001): near a singular J the Jacobian step can be huge and
            # nearly orthogonal to ∇‖F‖² (MGH Freudenstein-Roth from x0: length ~10⁹), no step
            # along it lowers ‖F‖² measurably, and the start ended linesearch_failed at a point
            # that is no minimum (f = 57.9, ‖∇f‖ = 114; N&W §11.2 on merit-function searches near
            # singular J). The damped step descends ‖F‖² for any J
            d = jnp.where(descend, step_at(s.f), d)
            slope, finite = _finite_slope(s.g, d)
            search = ls.armijo_backtracking(oracle.sum_of_squares, s.x, s.f, slope, d, 1.0, c1, shrink,
                                            max_backtracks)
            x = s.x + search.alpha * jnp.where(finite, d, 0.0)
            r, jac = oracle.residuals_and_jac(x)  # r(x) was the accepted trial: only J is new
            f, g, nhev = jnp.vdot(r, r), 2.0 * vm(r, jac), 0
            # a failed Jacobian-step search is retried along −∇‖F‖² next iteration; a failed
            # steepest-descent search ends the start
            retry = ~search.ok & ~descend & finite
            aux = (r, jac, retry)
        else:
            _, _, h = oracle.value_grad_hess(s.x)
            d, _ = modified_newton_direction(h, s.g, rel_floor=eig_floor)
            slope, finite = jnp.vdot(s.g, d), None   # no test here: see the docstring
            search = ls.armijo_backtracking(oracle.f, s.x, s.f, slope, d, 1.0, c1, shrink, max_backtracks)
            x = s.x + search.alpha * d
            g = oracle.grad(x)  # f(x) is the accepted trial's value
            f, aux, nhev = search.f_new, (), 1
        # A failed search (α = 0) leaves x in place and ends the start; the gradient (or Jacobian)
        # evaluated there all the same is counted (counting it only at an accepted point, as
        # ``linesearch.search`` does, cost 2-D newton 2 % of its run time). In root mode a direction that is not finite (a Jacobian with inf/NaN
        # entries where F is finite) ends the start ``singular``, as newton-raphson's does, with x
        # as it was (x + 0·NaN had made x NaN and the start "diverged" from a finite point).
        new = ls.apply(s, ls.StepResult(search.alpha, x, f, g, search.nfev, jnp.int32(1), search.ok,
                                        search.ok), nhev=nhev, aux=aux)
        if finite is None:
            return new
        status = jnp.where(retry, s.status, new.status)   # no failure yet: the retry comes next
        return new._replace(status=jnp.where(finite, status, STATUS_SINGULAR).astype(s.status.dtype))

    return Optimizer("newton", init, step, {"c1": c1, "shrink": shrink, "max_backtracks": max_backtracks,
                                            "eig_floor": eig_floor, "mode": mode},
                     description="Newton, eigenvalue-modified Hessian + Armijo backtracking")


def newton_cg(linesearch: str = "wolfe", max_cg: int = 0, c1: float = 1e-4, c2: float = 0.9,
              max_evals: int = 40) -> Optimizer:
    """Line-search truncated Newton (Newton-CG) on Hessian-vector products (Dembo & Steihaug
    1983, Math. Prog. 26:190; N&W Alg. 7.1). Never forms the Hessian.

    The Newton system is solved by CG to the forcing tolerance min(0.5, √‖g‖)‖g‖, stopping at
    negative curvature (the direction is then −g if it is met on the first CG iteration, else the
    CG iterate so far; scipy's Newton-CG scales −g by ‖g‖²/|gᵀHg| there and measures the forcing
    term in the 1-norm, so its iterates differ); then a line search from α = 1 (``linesearch``:
    ``armijo`` or ``wolfe``, with ``c1``/``c2``, ``max_evals`` trials). ``max_cg``: CG iterations
    per step (0 = automatic, min(2n, 500), enough for CG's n-step termination plus round-off up to
    n = 250). Per iteration: one Hessian-vector product per CG iteration (``nhvp``), and the line
    search's evaluations (Armijo: f per trial and ∇f at the accepted point; Wolfe: f and ∇f per trial).
    """
    ls.check_rule("newton-cg", linesearch)
    _check_params("newton-cg", ((max_cg >= 0, "max_cg", "at least 0 (0: automatic)", max_cg),
                                (0 < c1 < 1, "c1", "in (0, 1)", c1), (c1 < c2 < 1, "c2", f"in (c1, 1) = ({c1}, 1)", c2),
                                (max_evals >= 1, "max_evals", "at least 1", max_evals)))

    def init(oracle, x0):
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        n = s.x.shape[0]
        cap = max_cg if max_cg > 0 else min(2 * n, 500)
        hvp = oracle.hvp_at(s.x)
        d, nprod, _ = krylov.truncated_cg(hvp, s.g, krylov.forcing_tolerance(s.g), cap)
        res = ls.search(linesearch, oracle, s.x, s.f, s.g, d, 1.0, c1=c1, c2=c2, max_evals=max_evals)
        return ls.apply(s, res, nhvp=nprod)

    return Optimizer("newton-cg", init, step, {"linesearch": linesearch, "max_cg": max_cg, "c1": c1, "c2": c2,
                                               "max_evals": max_evals},
                     description="truncated Newton-CG on Hessian-vector products, line search")
