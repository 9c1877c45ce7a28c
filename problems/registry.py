"""Problem registry: ``problems.get("rosenbrock:dim=10")``, ``problems.register(...)``.

Besides name → factory, the registry keeps a little catalogue for ``optbench list problems``:
which *family* a problem belongs to (classic, mgh, nist, regression, root, lagrange), how its
dimension is set (``dims``, and ``dim_param`` naming the parameter a suite can scale), its tags,
and for a ``prefix:`` family the list of its members.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Union

from optbench_core import OptbenchError, Registry, close_matches, format_spec, parse_spec

from .base import Problem

_REGISTRY = Registry("problem")

#: name (or ``prefix:`` for a family) → catalogue entry
_META: Dict[str, dict] = {}
#: family (group) → one-line description, in display order
FAMILY_DOCS: Dict[str, str] = {
    "classic": "classic test functions with known minima",
    "mgh": "Moré, Garbow & Hillstrom (1981) least-squares test set, residual form, standard starts",
    "nist": "NIST StRD regression datasets with certified parameters and residual sums of squares",
    "regression": "synthetic regression and fitting problems (linear, ridge, logistic, Gaussian fit, MLP)",
    "root": "root finding: square residual systems with f* = 0",
    "lagrange": "equality-constrained minima as Lagrange stationarity (root) systems",
    "other": "problems registered without a family",
}


def _set_meta(name: str, family: Optional[str], dims: Optional[str], dim_param: Optional[str],
              tags: Iterable[str], members: Optional[Callable[[], List[str]]]) -> None:
    fam = family or "other"
    if fam not in FAMILY_DOCS:
        FAMILY_DOCS[fam] = fam
    _META[name] = {"family": fam, "dims": dims or "", "dim_param": dim_param, "tags": tuple(tags),
                   "members": members}


def register(problem_or_name: Union[Problem, str, None] = None, factory: Optional[Callable] = None, *,
             overwrite: bool = False, family: Optional[str] = None, dims: Optional[str] = None,
             dim_param: Optional[str] = None, tags: Iterable[str] = ()):
    """Register a problem.

    Three forms: ``register(Problem(...))`` (a fixed problem), ``register("name", factory)``
    where ``factory(**params) -> Problem``, or as a decorator ``@register("name")`` on a factory.
    The keyword arguments only feed the catalogue (:func:`describe`, :func:`families`):
    ``family`` groups it, ``dims`` says in words how big it is ("2", "n ≥ 2, default 2"),
    ``dim_param`` names the parameter that sets the dimension, ``tags`` its tags.
    A name that is a listed member of a registered family (``nist:Misra1a``) is taken too.
    """
    if isinstance(problem_or_name, Problem):
        p = problem_or_name
        _check_not_member(p.name, overwrite)

        def fixed():
            return p
        fixed.__doc__ = p.description or None   # what `optbench list problems` shows for it
        _REGISTRY.add(p.name, fixed, overwrite=overwrite)
        _set_meta(p.name, family, dims or str(p.dim), dim_param, tags or p.tags, None)
        return p
    if isinstance(problem_or_name, str) and factory is not None:
        _check_not_member(problem_or_name, overwrite)
        _REGISTRY.add(problem_or_name, factory, overwrite=overwrite)
        _set_meta(problem_or_name, family, dims, dim_param, tags, None)
        return factory
    if isinstance(problem_or_name, str):
        def deco(fn):
            _check_not_member(problem_or_name, overwrite)
            _REGISTRY.add(problem_or_name, fn, overwrite=overwrite)
            _set_meta(problem_or_name, family, dims, dim_param, tags, None)
            return fn
        return deco
    raise OptbenchError("register() takes a Problem, or a name and a factory")


def _check_not_member(name, overwrite: bool) -> None:
    """A fixed name such as ``nist:Misra1a`` is looked up before the family, so registering it
    silently replaced that NIST problem everywhere (``problems.get``, suites, stored runs)."""
    if overwrite or not isinstance(name, str):
        return
    head, _, member = name.partition(":")
    meta = _META.get(head + ":")
    if member and meta is not None and meta["members"] and head in _REGISTRY.families() \
            and member in meta["members"]():
        raise OptbenchError(f"problem {name!r} is already registered (a member of the family '{head}:')")


def register_family(prefix: str, factory: Callable, *, members: Optional[Callable[[], List[str]]] = None,
                    family: Optional[str] = None, dims: Optional[str] = None, tags: Iterable[str] = (),
                    overwrite: bool = False) -> None:
    """Register ``prefix:<member>`` problems, e.g. ``nist:Misra1a``; ``factory(member, **params)``.

    ``members()`` (optional) lists the valid member names, for listings and error messages.
    A prefix already registered is refused unless ``overwrite`` (as :func:`register` does), and so
    is one holding ':' — ``a:b:<member>`` is read as family ``a``, so nothing could select it.
    """
    _REGISTRY.add_family(prefix, factory, overwrite=overwrite)
    _set_meta(prefix + ":", family or prefix, dims, None, tags, members)


#: the largest value a problem's dimension parameter (``dim``, ``n``, ``hidden``) may take: its
#: factory builds x0, x* and the box before anything else could refuse it, four vectors of
#: 0.8 GB each in float64 at the limit (``rosenbrock:dim=2147483647`` filled the machine's memory)
MAX_DIM = 10 ** 8


def _check_dim(spec) -> None:
    """A dimension parameter beyond :data:`MAX_DIM` is a one-line error before the factory runs."""
    if not isinstance(spec, str):
        return
    name, params = parse_spec(spec)
    key = (_META.get(name) or {}).get("dim_param")
    v = params.get(key) if key else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > MAX_DIM:
        raise OptbenchError(f"problem {name!r}: {key}={v} is too large to build (limit {MAX_DIM:.0e})")


def get(spec: Union[str, Problem]) -> Problem:
    """Build a problem from a spec string ``name[:key=value]...`` (or pass a Problem through)."""
    if isinstance(spec, Problem):
        return spec
    _check_dim(spec)
    problem, name, params, identity = _REGISTRY.build(spec)
    if not isinstance(problem, Problem):
        raise OptbenchError(f"problem factory {name!r} did not return a Problem")
    problem.spec = format_spec(name, params) if params else name
    problem._from_registry = True  # same spec ⇒ same functions: the compile cache may share
    problem._registration = _REGISTRY.registration(name)  # ... unless registered anew
    problem._identity = identity  # one setting however spelled (suite cells dedupe on it)
    return problem


def names():
    """Registered problem names (families appear as ``prefix:``)."""
    return _REGISTRY.names() + [p + ":" for p in _REGISTRY.families()]


def members(prefix: str) -> List[str]:
    """The member names of a ``prefix:`` family (``members("nist")`` → ``["Bennett5", ...]``)."""
    if not isinstance(prefix, str):
        raise OptbenchError(f"a problem family must be named by a string, got {type(prefix).__name__}")
    key = prefix if prefix.endswith(":") else prefix + ":"
    meta = _META.get(key)
    if meta is None:
        fams = [p + ":" for p in _REGISTRY.families()]
        raise OptbenchError(f"unknown problem family {prefix!r}{close_matches(key, fams)}")
    return list(meta["members"]()) if meta["members"] else []


def describe(name: str) -> dict:
    """Parameters (with defaults), first docstring line, family, dims, tags of a problem or family.

    ``name`` is a registered name, a family ``prefix:`` (its ``members`` are listed too), or one
    member ``prefix:member`` (described through its family, with that member's own dims).
    """
    if not isinstance(name, str):
        raise OptbenchError(f"a problem name must be a string, got {type(name).__name__}")
    if name in _META or name in _REGISTRY.names():
        out = _REGISTRY.describe(name)
        meta = _META.get(name, {})
    else:
        head, _, member = name.partition(":")
        if not (member and head + ":" in _META):
            raise OptbenchError(f"unknown problem {name!r}{close_matches(name, names())}")
        out = _REGISTRY.describe(head + ":")
        out["name"] = name
        meta = dict(_META[head + ":"])
        valid = members(head)
        if valid and member not in valid:
            raise OptbenchError(f"unknown problem {name!r}{close_matches(member, valid)}")
        dim = get(name).dim
        meta["dims"] = str(dim)
        meta["members"] = None
    out["family"] = meta.get("family", "other")
    out["dims"] = meta.get("dims", "")
    out["dim_param"] = meta.get("dim_param")
    out["tags"] = list(meta.get("tags", ()))
    if name.endswith(":") and meta.get("members"):
        out["members"] = list(meta["members"]())
    return out


def families() -> List[dict]:
    """The catalogue by family, in display order: ``[{"family", "doc", "names"}, ...]``.

    ``names`` holds registered names and ``prefix:`` families (expand those with :func:`members`).
    """
    groups: Dict[str, List[str]] = {}
    for n in names():
        groups.setdefault(_META.get(n, {}).get("family", "other"), []).append(n)
    order = list(FAMILY_DOCS)
    return [{"family": g, "doc": FAMILY_DOCS.get(g, g), "names": groups[g]}
            for g in sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g))]
