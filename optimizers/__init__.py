"""optbench optimizers: pure ``init``/``step`` pairs run by the one driver, ``bench.solve``.

>>> import optimizers
>>> opt = optimizers.get("gd:lr=0.001")
"""
from optbench_core import OptbenchError

from .base import (STATUS_CONVERGED, STATUS_DIVERGED, STATUS_LINESEARCH_FAILED, STATUS_MAX_ITER, STATUS_NAMES,
                   STATUS_RUNNING, STATUS_SINGULAR, STATUS_STALLED, Optimizer, Oracle, State)
from .registry import describe, get, names, register, register_family
from . import gradient as _gradient, newton as _newton

register("gd", _gradient.gd)
register("gd-linesearch", _gradient.gd_linesearch)
register("newton", _newton.newton)
register("newton-raphson", _newton.newton_raphson)

__all__ = ["Optimizer", "Oracle", "State", "get", "names", "register", "register_family", "describe",
           "STATUS_NAMES", "OptbenchError"]
