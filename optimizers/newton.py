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


def _check_mode(method, mode):
    if mode not in MODES:
        raise OptbenchError(f"{method}: mode must be one of {', '.join(MODES)}, got {mode!r}")


def newton_raphson(mode: str = "auto") -> Optimizer:
    """Plain Newton-Raphson: full step −H⁻¹g (or −J⁻¹F for a square system), no line search,
    no Hessian fix. A singular Hessian/Jacobian (non-finite step) ends the start with status
    ``singular``; a step at round-off level (‖Δx‖ ≤ 10ε‖x‖, as Gauss-Newton's) ``stalled``.
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
        if root:
            r, jac = oracle.residuals_and_jac(x)
            new = s._replace(x=x, f=jnp.vdot(r, r), g=2.0 * vm(r, jac), nfev=s.nfev + 1, njev=s.njev + 1,
                             status=status, aux=(r, jac))
        else:
            f, g, h = oracle.value_grad_hess(x)
            new = s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, nhev=s.nhev + 1, status=status, aux=(h,))
        # the full step keeps no memory: one at round-off level repeats itself, or jitters x by an
        # ulp, to max_iter (float32 Himmelblau, 10 starts: 7 ran 1,000 iterations that way)
        return stall_where(round_off_step(x, s.x), new)

    return Optimizer("newton-raphson", init, step, {"mode": mode}, description="plain Newton step, no safeguards")


def newton(c1: float = 1e-4, shrink: float = 0.5, max_backtracks: int = 60, eig_floor: float = EIG_FLOOR,
           mode: str = "auto") -> Optimizer:
    """Newton with a Hessian fix and Armijo backtracking from α = 1 (N&W §3.4, Alg. 3.2).

    The Hessian's eigenvalues are replaced by max(|λ|, δ), δ = ``eig_floor``·max|λ| (N&W eq.
    3.41 and the absolute-value variant), so the direction descends and moves away from saddles
    along negative curvature; Ĥ = H near a strict minimum whose Hessian has κ < 1/``eig_floor``,
    keeping quadratic convergence (the default, a few ε, changes only eigenvalues that are
    negative or zero to round-off; see :data:`optimizers.dense.EIG_FLOOR`).
    ``c1``: sufficient decrease; ``shrink``: largest backtracking factor; ``max_backtracks``:
    trials per iteration. For a square residual system (``mode``), the damped Jacobian step on
    ‖F‖², falling back to the minimum-norm Gauss-Newton step when J is singular.

    Per iteration: the Hessian at the current point (or the Jacobian at the accepted one), one f
    per line-search trial and the gradient at the accepted point. The Hessian is evaluated where
    the step starts, not carried from the previous iteration: the final point needs none, and
    the state holds no n×n matrix per start (2-D Rosenbrock, 10³ / 10⁴ starts: 0.95× / 0.90×
    the time of carrying it).
    """
    if not (0 < c1 < 0.5 and 0 < shrink < 1 and max_backtracks >= 1 and eig_floor > 0):
        raise OptbenchError("newton: need 0 < c1 < 0.5, 0 < shrink < 1, max_backtracks >= 1, eig_floor > 0")
    _check_mode("newton", mode)

    def init(oracle, x0):
        if _root_mode(oracle, x0, mode, "newton"):
            return _root_state(oracle, x0)
        return initial_state(oracle, x0)

    def step(oracle, s: State) -> State:
        if _root_mode(oracle, s.x, mode, "newton"):
            r, jac = s.aux
            d = -solve(jac, r)
            d_gn = least_squares_model(jac, r)[3](0.0)  # minimum-norm Gauss-Newton step
            d = jnp.where(jnp.all(jnp.isfinite(d)), d, d_gn)
            search = ls.armijo_backtracking(oracle.sum_of_squares, s.x, s.f, jnp.vdot(s.g, d), d, 1.0, c1, shrink,
                                            max_backtracks)
            x = s.x + search.alpha * d
            r, jac = oracle.residuals_and_jac(x)  # r(x) was the accepted trial: only J is new
            f, g, aux, nhev = jnp.vdot(r, r), 2.0 * vm(r, jac), (r, jac), 0
        else:
            _, _, h = oracle.value_grad_hess(s.x)
            d, _ = modified_newton_direction(h, s.g, rel_floor=eig_floor)
            search = ls.armijo_backtracking(oracle.f, s.x, s.f, jnp.vdot(s.g, d), d, 1.0, c1, shrink, max_backtracks)
            x = s.x + search.alpha * d
            g = oracle.grad(x)  # f(x) is the accepted trial's value
            f, aux, nhev = search.f_new, (), 1
        # a failed search leaves x in place (alpha = 0) and ends the start
        return ls.apply(s, ls.StepResult(search.alpha, x, f, g, search.nfev, jnp.int32(1), search.ok, search.ok),
                        nhev=nhev, aux=aux)

    return Optimizer("newton", init, step, {"c1": c1, "shrink": shrink, "max_backtracks": max_backtracks,
                                            "eig_floor": eig_floor, "mode": mode},
                     description="Newton, eigenvalue-modified Hessian + Armijo backtracking")


def newton_cg(linesearch: str = "wolfe", max_cg: int = 0, c1: float = 1e-4, c2: float = 0.9,
              max_evals: int = 40) -> Optimizer:
    """Line-search truncated Newton (Newton-CG) on Hessian-vector products (Dembo & Steihaug
    1983, Math. Prog. 26:190; N&W Alg. 7.1). Never forms the Hessian.

    The Newton system is solved by CG to the forcing tolerance min(0.5, √‖g‖)‖g‖, stopping at
    negative curvature; then a line search from α = 1 (``linesearch``: ``armijo`` or ``wolfe``,
    with ``c1``/``c2``, ``max_evals`` trials). ``max_cg``: CG iterations per step (0 = automatic,
    min(2n, 500), enough for CG's n-step termination plus round-off).
    """
    ls.check_rule("newton-cg", linesearch)
    if not (max_cg >= 0 and 0 < c1 < c2 < 1 and max_evals >= 1):
        raise OptbenchError("newton-cg: need max_cg >= 0, 0 < c1 < c2 < 1, max_evals >= 1")

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
