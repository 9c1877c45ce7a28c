"""optbench problems: test functions and fits, each a :class:`Problem` with its known minimum.

>>> import problems
>>> p = problems.get("rosenbrock:dim=2")
"""
from optbench_core import OptbenchError

from .base import Problem
from .registry import describe, get, names, register, register_family
from . import functions  # noqa: F401  (registers the built-in problems)

__all__ = ["Problem", "get", "names", "register", "register_family", "describe", "OptbenchError"]
