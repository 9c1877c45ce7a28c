"""optbench optimizers: pure ``init``/``step`` pairs run by the one driver, ``bench.solve``.

>>> import optimizers
>>> opt = optimizers.get("lbfgs:memory=20")

Registered methods (hyperparameters and their defaults: ``optimizers.describe(name)``):

========================  =====================================================================
first order               ``gd``, ``gd-linesearch``, ``gd-wolfe``, ``momentum``, ``nesterov``,
                          ``ncg`` (Polak–Ribière+), ``optax:<name>`` (any optax factory)
Newton family             ``newton-raphson``, ``newton``, ``trust-region`` (exact subproblem),
                          ``trust-ncg`` (Steihaug-CG), ``newton-cg`` (truncated Newton)
least squares             ``gauss-newton``, ``levenberg-marquardt`` (residual problems only)
quasi-Newton              ``bfgs``, ``lbfgs``
root finding              ``newton-raphson`` and ``newton`` on square residual systems F(x) = 0
========================  =====================================================================
"""
from optbench_core import OptbenchError

from .base import (STATUS_CONVERGED, STATUS_DIVERGED, STATUS_LINESEARCH_FAILED, STATUS_MAX_ITER, STATUS_NAMES,
                   STATUS_RUNNING, STATUS_SINGULAR, STATUS_STALLED, Optimizer, Oracle, State)
from .registry import describe, get, names, register, register_family
from . import gradient as _gradient, least_squares as _lsq, newton as _newton, optax_adapter as _optax
from . import quasi_newton as _qn, trust_region as _tr

register("gd", _gradient.gd)
register("gd-linesearch", _gradient.gd_linesearch)
register("gd-wolfe", _gradient.gd_wolfe)
register("momentum", _gradient.momentum)
register("nesterov", _gradient.nesterov)
register("ncg", _gradient.ncg)
register("newton", _newton.newton)
register("newton-raphson", _newton.newton_raphson)
register("newton-cg", _newton.newton_cg)
register("trust-region", _tr.trust_region)
register("trust-ncg", _tr.trust_ncg)
register("gauss-newton", _lsq.gauss_newton)
register("levenberg-marquardt", _lsq.levenberg_marquardt)
register("bfgs", _qn.bfgs)
register("lbfgs", _qn.lbfgs)
register_family("optax", _optax.optax_family)

__all__ = ["Optimizer", "Oracle", "State", "get", "names", "register", "register_family", "describe",
           "STATUS_NAMES", "OptbenchError"]
