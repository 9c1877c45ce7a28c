"""Problem registry: ``problems.get("rosenbrock:dim=10")``, ``problems.register(...)``."""
from __future__ import annotations

from typing import Callable, Optional, Union

from optbench_core import OptbenchError, Registry, format_spec

from .base import Problem

_REGISTRY = Registry("problem")


def register(problem_or_name: Union[Problem, str, None] = None, factory: Optional[Callable] = None, *,
             overwrite: bool = False):
    """Register a problem.

    Three forms: ``register(Problem(...))`` (a fixed problem), ``register("name", factory)``
    where ``factory(**params) -> Problem``, or as a decorator ``@register("name")`` on a factory.
    """
    if isinstance(problem_or_name, Problem):
        p = problem_or_name
        _REGISTRY.add(p.name, lambda: p, overwrite=overwrite)
        return p
    if isinstance(problem_or_name, str) and factory is not None:
        _REGISTRY.add(problem_or_name, factory, overwrite=overwrite)
        return factory
    if isinstance(problem_or_name, str):
        def deco(fn):
            _REGISTRY.add(problem_or_name, fn, overwrite=overwrite)
            return fn
        return deco
    raise OptbenchError("register() takes a Problem, or a name and a factory")


def register_family(prefix: str, factory: Callable) -> None:
    """Register ``prefix:<member>`` problems, e.g. ``nist:Misra1a``; ``factory(member, **params)``."""
    _REGISTRY.add_family(prefix, factory)


def get(spec: Union[str, Problem]) -> Problem:
    """Build a problem from a spec string ``name[:key=value]...`` (or pass a Problem through)."""
    if isinstance(spec, Problem):
        return spec
    problem, name, params = _REGISTRY.build(spec)
    if not isinstance(problem, Problem):
        raise OptbenchError(f"problem factory {name!r} did not return a Problem")
    problem.spec = format_spec(name, params) if params else name
    problem._from_registry = True  # same spec ⇒ same functions: the compile cache may share
    return problem


def names():
    """Registered problem names (families appear as ``prefix:``)."""
    return _REGISTRY.names() + [p + ":" for p in _REGISTRY.families()]


def describe(name: str) -> dict:
    """Parameters (with defaults) and the first docstring line of a registered problem or family."""
    return _REGISTRY.describe(name)
