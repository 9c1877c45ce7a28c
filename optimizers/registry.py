"""Optimizer registry: ``optimizers.get("gd:lr=0.001")``, ``optimizers.register(name, factory)``."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

from optbench_core import OptbenchError, Registry, format_spec

from .base import Optimizer

_REGISTRY = Registry("optimizer")


def register(name: str, factory: Optional[Callable] = None, *, overwrite: bool = False):
    """Register ``factory(**params) -> Optimizer`` under ``name``; usable as a decorator."""
    if not isinstance(name, str) or not name or ":" in name:
        raise OptbenchError(f"optimizer name must be a non-empty string without ':', got {name!r}")
    if factory is None:
        def deco(fn):
            _REGISTRY.add(name, fn, overwrite=overwrite)
            return fn
        return deco
    _REGISTRY.add(name, factory, overwrite=overwrite)
    return factory


def register_family(prefix: str, factory: Callable, *, overwrite: bool = False) -> None:
    """Register ``prefix:<member>`` optimizers (e.g. ``optax:adam``); ``factory(member, **params)``.
    A prefix already registered is refused unless ``overwrite``."""
    _REGISTRY.add_family(prefix, factory, overwrite=overwrite)


def get(spec: Union[str, Optimizer]) -> Optimizer:
    """Build an optimizer from a spec string ``name[:key=value]...`` (or pass one through)."""
    if isinstance(spec, Optimizer):
        return spec
    opt, name, params, identity = _REGISTRY.build(spec)
    if not isinstance(opt, Optimizer):
        raise OptbenchError(f"optimizer factory {name!r} did not return an Optimizer")
    opt = dataclasses.replace(opt, name=name, spec=format_spec(name, params) if params else name)
    object.__setattr__(opt, "_from_registry", True)  # same spec ⇒ same functions: compile cache may share
    object.__setattr__(opt, "_registration", _REGISTRY.registration(name))  # ... unless registered anew
    object.__setattr__(opt, "_identity", identity)  # one setting however spelled (suite cells dedupe on it)
    return opt


def names():
    """Registered optimizer names (families appear as ``prefix:``)."""
    return _REGISTRY.names() + [p + ":" for p in _REGISTRY.families()]


def describe(name: str) -> dict:
    """Parameters (with defaults) and the first docstring line of a registered optimizer or family."""
    return _REGISTRY.describe(name)
