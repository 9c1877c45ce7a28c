"""An optbench plug-in: a user's own problems and optimizer, registered through the public API.

    optbench run --plugin examples/my_plugin.py --problems decay-fit,my-bowl:dim=5 --optimizers bb,bfgs
"""
import jax.numpy as jnp
import numpy as np

import optimizers
import problems
from optimizers.base import initial_state

# 1. A fixed problem: fit y = a·exp(−b·t) to 40 samples by least squares (f = Σ r²). The data
#    goes in `data` and reaches the residuals as an argument, so it is not baked into compiled code.
t = np.linspace(0.0, 4.0, 40)
problems.register(problems.Problem(
    name="decay-fit",
    residuals=lambda x, d: x[0] * jnp.exp(-x[1] * d["t"]) - d["y"],
    data={"t": t, "y": 2.5 * np.exp(-1.3 * t)},
    x0=np.array([1.0, 0.5]), bounds=(np.array([0.5, 0.1]), np.array([4.0, 3.0])),
    f_star=0.0, x_star=np.array([2.5, 1.3]),
    description="a·exp(−b·t) fitted to exact samples of 2.5·exp(−1.3·t)"))


# 2. A problem with parameters (`my-bowl:dim=5:cond=1e4`), registered with the decorator.
@problems.register("my-bowl")
def my_bowl(dim: int = 2, cond: float = 100.0) -> problems.Problem:
    """Σ cᵢ xᵢ² with cᵢ log-spaced in [1, cond]: an axis-aligned ill-conditioned bowl, f* = 0 at 0."""
    c = np.logspace(0.0, np.log10(cond), dim)
    return problems.Problem(name="my-bowl", f=lambda x, d: jnp.sum(d["c"] * x * x), data={"c": c},
                            x0=np.ones(dim), f_star=0.0, x_star=np.zeros(dim))


# 3. An optimizer: gradient descent with the Barzilai–Borwein step
#    α = sᵀs / sᵀy, s = Δx, y = Δ∇f (Barzilai & Borwein 1988, IMA J. Numer. Anal. 8:141–148).
#    init/step are pure JAX on one start; the driver vmaps, loops, tests convergence and records.
@optimizers.register("bb")
def barzilai_borwein(lr0: float = 1e-3, max_step: float = 1e4) -> optimizers.Optimizer:
    """Gradient descent with the Barzilai–Borwein step size (Barzilai & Borwein 1988)."""

    def init(oracle, x0):
        return initial_state(oracle, x0, aux=(jnp.asarray(lr0, x0.dtype),))   # f, ∇f at x0: 1 nfev, 1 njev

    def step(oracle, s):
        lr = s.aux[0]
        x = s.x - lr * s.g
        f, g = oracle.value_and_grad(x)
        sy = (x - s.x) @ (g - s.g)
        nxt = jnp.where(sy > 0, ((x - s.x) @ (x - s.x)) / sy, lr0)   # no positive curvature: restart
        return s._replace(x=x, f=f, g=g, nfev=s.nfev + 1, njev=s.njev + 1, step=lr,
                          aux=(jnp.clip(nxt, 0.0, max_step).astype(x.dtype),))

    return optimizers.Optimizer(name="bb", init=init, step=step, params={"lr0": lr0, "max_step": max_step})
