"""Shared plumbing for optbench's three packages: the user-error type and spec strings.

A *spec string* names a registered thing with parameters, e.g. ``rosenbrock:dim=100``,
``gd:lr=0.001`` or ``optax:adam:learning_rate=0.01``. Colon-separated segments without ``=``
form the name; segments ``key=value`` are parameters. ``problems`` and ``optimizers`` both use
this module; neither imports the other, and neither imports ``bench``.
"""
from __future__ import annotations

import difflib
import itertools
import inspect
from typing import Any, Callable, Dict, Iterable, Tuple


#: the floating-point types a run can use (float64 by default)
DTYPES = ("float64", "float32")


class OptbenchError(Exception):
    """A user-facing error (bad name, bad parameter, bad file): printed as one line, exit code 2."""


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> str:
    """A ``did you mean`` suffix naming up to ``n`` close matches, or an empty string."""
    hits = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(hits)}?)" if hits else ""


def parse_value(text: str) -> Any:
    """Parse a parameter value: int, float, bool, ``none``, or a bare string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if "_" in t:   # Python's int() and float() read "1_0" as 10: a typo, not a number
        return t
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """Split ``name[:sub]...[:key=value]...`` into the name and a dict of parsed parameters."""
    if not isinstance(spec, str):   # not the object's whole repr, which can run to many lines
        raise OptbenchError(f"a spec must be a string, got {type(spec).__module__}.{type(spec).__name__}")
    if not spec.strip():
        raise OptbenchError(f"empty name in spec {spec!r}")
    name_parts, params = [], {}
    for seg in spec.strip().split(":"):
        seg = seg.strip()
        if not seg:
            raise OptbenchError(f"empty segment in spec {spec!r}")
        if "=" in seg:
            key, _, val = seg.partition("=")
            key = key.strip()
            if not key.isidentifier():
                raise OptbenchError(f"bad parameter name {key!r} in spec {spec!r}")
            if key in params:
                raise OptbenchError(f"parameter {key!r} given twice in spec {spec!r}")
            if not val.strip():
                raise OptbenchError(f"parameter {key!r} has no value in spec {spec!r}")
            params[key] = parse_value(val)
        else:
            if params:
                raise OptbenchError(f"name segment {seg!r} after parameters in spec {spec!r}")
            name_parts.append(seg)
    if not name_parts:
        raise OptbenchError(f"no name in spec {spec!r}")
    return ":".join(name_parts), params


def format_spec(name: str, params: Dict[str, Any]) -> str:
    """Inverse of :func:`parse_spec` (parameters in the given order)."""
    return ":".join([name] + [f"{k}={v}" for k, v in params.items()])


def _coerce(kind: str, name: str, key: str, value: Any, default: Any) -> Any:
    """Coerce a parsed value to the type of the parameter's default. Errors name the problem or
    optimizer (in ``--problems a,b,c`` the key alone does not say which spec is wrong), and
    ``none`` is refused where the default is a boolean or a number: it passed through, so
    ``quadratic:rotate=none`` ran unrotated under a spec of its own and ``gd:lr=none`` failed
    inside the factory with "'>' not supported between instances of 'NoneType' and 'int'"."""
    if default is None:
        return value
    where = f"{kind} {name!r}: parameter {key!r}"
    shown = "none" if value is None else repr(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise OptbenchError(f"{where} must be true or false, got {shown}")
    if isinstance(default, int):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise OptbenchError(f"{where} must be an integer, got {shown}")
        if not -2 ** 31 < value < 2 ** 31:   # counts become int32 in compiled code, where 2**31 wraps
            raise OptbenchError(f"{where} must be an integer of magnitude below 2**31, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptbenchError(f"{where} must be a number, got {shown}")
        if value != value:  # NaN slips through range checks written as `if x < 0: raise`
            raise OptbenchError(f"{where} must be a number, got nan")
        if value in (float("inf"), float("-inf")):   # "1e400" reads as inf: a step, rate or scale it never is
            raise OptbenchError(f"{where} must be a finite number, got {value}")
        return float(value)
    if value is None:
        return value
    if isinstance(default, str) and not isinstance(value, str):
        return str(value)
    return value


def coerce_params(kind: str, name: str, factory: Callable, params: Dict[str, Any]) -> Dict[str, Any]:
    """``params`` checked against ``factory``'s signature and coerced to the types of its
    defaults (``maxiter=1000.0`` → ``1000``); unknown keys give a one-line :class:`OptbenchError`
    naming the close matches."""
    sig = inspect.signature(factory)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    known = {k: p for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    kwargs = {}
    for key, value in params.items():
        if key not in known:
            if accepts_any:
                kwargs[key] = value
                continue
            allowed = ", ".join(known) or "none"
            raise OptbenchError(
                f"unknown parameter {key!r} for {kind} {name!r}{close_matches(key, known)}; allowed: {allowed}")
        default = known[key].default
        kwargs[key] = _coerce(kind, name, key, value, None if default is inspect.Parameter.empty else default)
    return kwargs


def call_with_params(kind: str, name: str, factory: Callable, params: Dict[str, Any]) -> Any:
    """Call ``factory(**params)`` after checking names and coercing types against its signature.

    Unknown keys give a one-line :class:`OptbenchError` naming the close matches.
    """
    kwargs = coerce_params(kind, name, factory, params)
    try:
        return factory(**kwargs)
    except OptbenchError:
        raise
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise OptbenchError(f"bad parameters for {kind} {name!r}: {first_line(exc)}") from None
    except MemoryError as exc:  # e.g. a dimension so large that building the problem cannot allocate
        raise OptbenchError(f"{kind} {name!r} with {format_spec(name, params)!r} needs more memory than "
                            f"is available ({first_line(exc)})") from None
    except Exception as exc:   # noqa: BLE001 — a plugin factory's own failure, in one line
        raise OptbenchError(f"{kind} {name!r} failed to build: {type(exc).__name__}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first non-empty line (or its type name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def real_array(value: Any, what: str, expected: str = "real numbers"):
    """``value`` as a float64 numpy array, or a one-line :class:`OptbenchError`, ``<what> must be
    <expected>``, for ragged nesting, strings, objects or complex numbers (which numpy would
    reject with its own error, or cast with the imaginary part dropped)."""
    import numpy as np
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:   # ragged nesting
        raise OptbenchError(f"{what} must be {expected} ({first_line(exc)})") from None
    if arr.dtype.kind not in "biuf":
        raise OptbenchError(f"{what} must be {expected}, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def factory_params(factory: Callable) -> Dict[str, Any]:
    """The documented parameters of a factory and their defaults (for ``optbench list``)."""
    out = {}
    for k, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            out[k] = None if p.default is inspect.Parameter.empty else p.default
    return out


#: numbers each registration (see :meth:`Registry.registration`)
_REGISTRATIONS = itertools.count(1)


class Registry:
    """Name → factory map with spec-string lookup; ``kind`` is used in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: Dict[str, Callable] = {}
        self._prefixes: Dict[str, Callable] = {}
        self._registration: Dict[str, int] = {}

    def add(self, name: str, factory: Callable, *, overwrite: bool = False) -> None:
        self._check_entry(name, factory, f"{self.kind} {name!r}")
        if not overwrite and name in self._factories:
            raise OptbenchError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory
        self._registration[name] = next(_REGISTRATIONS)

    def add_family(self, prefix: str, factory: Callable, *, overwrite: bool = False) -> None:
        """Register ``prefix:<member>`` names; ``factory(member, **params)`` builds them. A prefix
        already registered is refused unless ``overwrite`` (a second family silently replaced the
        first), and so is one holding ':' (``a:b:<member>`` reads as family ``a``: nothing could
        select it)."""
        self._check_entry(prefix, factory, f"{self.kind} family {prefix!r}")
        if ":" in prefix:
            raise OptbenchError(f"a {self.kind} family prefix cannot contain ':', got {prefix!r}")
        if not overwrite and prefix in self._prefixes:
            raise OptbenchError(f"{self.kind} family '{prefix}:' is already registered")
        self._prefixes[prefix] = factory
        self._registration[prefix + ":"] = next(_REGISTRATIONS)

    def _check_entry(self, name: str, factory: Callable, label: str) -> None:
        """A name must read back as itself from a spec string (no parameters, spaces or empty
        segments), or nothing could ever select it; the factory must be callable."""
        ok = isinstance(name, str) and name.strip() == name and bool(name)
        if ok:
            try:
                ok = parse_spec(name) == (name, {})
            except OptbenchError:
                ok = False
        if not ok:
            raise OptbenchError(f"{self.kind} name must be a non-empty name a spec can select (no '=', "
                                f"surrounding spaces or empty ':' segments), got {name!r}")
        if not callable(factory):
            raise OptbenchError(f"{label}: the factory must be callable, got {type(factory).__name__}")

    def snapshot(self):
        """What is registered now, for :meth:`restore` (a plug-in that fails halfway is undone)."""
        return dict(self._factories), dict(self._prefixes), dict(self._registration)

    def restore(self, snap) -> None:
        for mine, saved in zip((self._factories, self._prefixes, self._registration), snap):
            mine.clear()
            mine.update(saved)

    def registration(self, name: str):
        """Which registration ``name`` (or its ``prefix:`` family) was built from: a number that
        changes whenever it is registered again (``overwrite=True``), for the compile cache."""
        if name in self._factories:
            return self._registration.get(name)
        return self._registration.get(name.partition(":")[0] + ":")

    def names(self):
        return sorted(self._factories)

    def families(self):
        return sorted(self._prefixes)

    def factory(self, name: str) -> Callable:
        return self._factories[name]

    def describe(self, name: str) -> dict:
        """Parameters (with defaults) and the first docstring line of a name or ``prefix:`` family."""
        fam = name.endswith(":") if isinstance(name, str) else False
        fac = (self._prefixes.get(name[:-1]) if fam else self._factories.get(name)) if isinstance(name, str) else None
        if fac is None:
            choices = list(self._factories) + [p + ":" for p in self._prefixes]
            raise OptbenchError(f"unknown {self.kind} {name!r}{close_matches(str(name), choices)}"
                                + ("" if fam or not isinstance(name, str) or ":" not in name else
                                   f"; describe a family by its prefix ({name.partition(':')[0]}:)"))
        doc = (fac.__doc__ or "").strip().splitlines()
        params = factory_params(fac)
        if fam:  # the first argument of a family factory is the member name
            params.pop(next(iter(params)), None)
        return {"name": name, "params": params, "doc": doc[0] if doc else ""}

    def build(self, spec: str):
        """``(object, name, params, identity)`` for a spec string: ``params`` as given,
        ``identity`` the name
        with every parameter, defaults filled in — two spellings of one setting (``gd`` and
        ``gd:lr=0.001``) share it."""
        name, params = parse_spec(spec)
        if name in self._factories:
            fac = self._factories[name]
        else:
            head, _, member = name.partition(":")
            if not (member and head in self._prefixes):
                choices = list(self._factories) + [p + ":" for p in self._prefixes]
                raise OptbenchError(f"unknown {self.kind} {name!r}{close_matches(name, choices)}")
            fac = _bind_first(self._prefixes[head], member)
        kwargs = coerce_params(self.kind, name, fac, params)
        full = factory_params(fac)
        full.update(kwargs)
        identity = (name, tuple(sorted((k, repr(v)) for k, v in full.items())))
        # params stay as given: the spec written from them names the cell in stored runs and
        # baselines, which must keep resolving to the same name
        return call_with_params(self.kind, name, fac, kwargs), name, params, identity


def _bind_first(fam: Callable, member: str) -> Callable:
    sig = inspect.signature(fam)
    params = list(sig.parameters.values())[1:]

    def bound(**kw):
        return fam(member, **kw)
    bound.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return bound
