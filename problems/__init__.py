"""optbench problems: test functions and fits, each a :class:`Problem` with its known minimum.

>>> import problems
>>> p = problems.get("rosenbrock:dim=2")
"""
from optbench_core import OptbenchError

from .base import Problem
from .registry import describe, families, get, members, names, register, register_family
# importing these registers the built-in problems
from . import functions, mgh, nist, regression, roots  # noqa: F401

__all__ = ["Problem", "get", "names", "register", "register_family", "describe", "families", "members",
           "OptbenchError"]
