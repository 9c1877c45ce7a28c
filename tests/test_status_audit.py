"""Per-start status honesty in float32 and float64: ``converged`` only where ‖∇f‖ ≤ gtol as given,
``max_iter`` only at the budget, the reported values those of the returned x. Few compiles."""
import jax.numpy as jnp
import numpy as np

import problems
from bench.solve import gtol_in, solve


def _half_square():
    return problems.Problem(name="audit-half-square", f=lambda x: 0.5 * jnp.sum(x * x), x0=np.array([1.0]),
                            f_star=0.0)


def test_gtol_is_rounded_down_to_the_run_dtype():
    import warnings
    for gtol in (1e-3, 1e-8, 0.1, 3.0, 1e-40, 1e300):
        with warnings.catch_warnings():
            warnings.simplefilter("error")    # 1e300 in float32: no overflow warning on the console
            t = gtol_in(gtol, np.float32)
        assert t.dtype == np.float32 and float(t) <= gtol
        with np.errstate(over="ignore"):
            up = np.nextafter(t, np.float32(np.inf))
        assert float(up) > gtol or not np.isfinite(up)
    assert gtol_in(1e300, np.float32) == np.finfo(np.float32).max
    assert gtol_in(0.0, np.float32) == 0 and float(gtol_in(1e-3, np.float64)) == 1e-3


def test_float32_converged_means_grad_norm_within_the_given_gtol():
    """gtol = 1e-3 rounds up in float32 (to 0.0010000000475): a start whose ‖∇f‖ was exactly that
    float32 was reported ``converged`` at iteration 0 although ‖∇f‖ > gtol."""
    p = _half_square()
    edge = float(np.float32(1e-3))            # 0.0010000000474974513 > 1e-3; ∇f = x here
    starts = np.array([[edge], [5e-4]])
    r = solve(p, "gd:lr=0.5", starts, max_iter=20, gtol=1e-3, dtype="float32")
    assert list(r.status) == ["converged", "converged"]
    assert r.nit[0] == 1 and r.nit[1] == 0       # the edge start needs one step (x → x/2)
    assert all(float(g) <= 1e-3 for g in r.grad_norm)
    r64 = solve(p, "gd:lr=0.5", starts, max_iter=20, gtol=1e-3, dtype="float64")
    assert list(r64.nit) == list(r.nit) and list(r64.status) == list(r.status)


def test_float32_status_counts_and_values_are_consistent():
    """One compile: 2-D Rosenbrock, bfgs, float32, starts including the minimiser itself and one
    given a tiny budget; each status matches ‖∇f‖, nit and max_iter, and no float64 leaks."""
    p = problems.get("rosenbrock")
    starts = np.array([[1.0, 1.0], [-1.2, 1.0], [0.5, -0.3], [2.0, 2.0]])
    gtol, budget = 1e-3, 200
    r = solve(p, "bfgs", starts, max_iter=budget, gtol=gtol, dtype="float32")
    assert r.x.dtype == np.float32 and r.grad_norm.dtype == np.float32
    assert all(v.dtype in (np.float32, np.int32) for v in r.trace.recorded().values())
    assert r.status[0] == "converged" and r.nit[0] == 0 and r.nfev[0] == 1 and r.njev[0] == 1
    for i, st in enumerate(r.status):
        n = int(r.nit[i])
        assert (st == "max_iter") == (n == budget)
        if st == "converged":
            assert np.isfinite(r.fun[i]) and float(r.trace.grad_norm[i, n]) <= gtol
        assert np.float32(r.fun[i]) == r.trace.f[i, n] and r.nfev[i] == r.trace.nfev[i, -1]
        assert r.nfev[i] >= n + 1 and r.njev[i] >= n + 1


def test_quasi_newton_at_the_round_off_floor_stops_instead_of_cycling():
    """float32 linreg with an unreachable gtol: at f's round-off floor the approximate Wolfe test
    accepts steps that raise f by an ulp, and bfgs/lbfgs cycled (−∇f step, quasi-Newton step, failed
    search, memory reset) to max_iter — 2 of these 4 starts each, thousands of evaluations at f*.
    A fresh start of the memory with f no lower than at the previous one now ends the start."""
    p = problems.get("linreg")
    x0s = np.random.default_rng(0).uniform(p.bounds[0], p.bounds[1], (4, p.dim))
    for method in ("bfgs", "lbfgs"):
        r = solve(p, method, x0s, max_iter=3000, gtol=1e-30, dtype="float32")
        assert set(r.status) == {"linesearch_failed"}, (method, r.status)
        assert r.nit.max() < 300 and r.nfev.max() < 600, (method, r.nit, r.nfev)
        # stopped at the floor: f* to float32's precision
        assert np.all(np.abs(r.fun - p.f_star) <= 1e-6 * abs(p.f_star)), (method, r.fun, p.f_star)
