"""Benchmark suites: TOML files naming problems, optimizers, dims, starts, seeds and tolerances,
expanded into the list of *cells* (one problem × one optimizer with its settings) that
``optbench run`` executes.

A suite file (read with the standard library's :mod:`tomllib`)::

    name = "quick"
    description = "a handful of small problems × every registered optimizer"
    problems   = ["rosenbrock", "himmelblau", "quadratic:dim=10:cond=1e3"]
    optimizers = "all"                      # or a list of spec strings
    exclude    = ["newton-raphson"]         # drop names from "all"
    dims       = [2, 10]                    # sets the dimension of every scalable problem
    starts     = 10                         # standard x0 + 9 random starts in the problem's box
    seeds      = [0]                        # or seed = 0
    max_iter   = 1000
    gtol       = 1e-8
    dtype      = "float64"
    repeats    = 3
    pack       = false                      # true: bench.solve(pack=True) for batches of 2048+ starts
    fuse_loops = false                      # true: bench.solve(fuse_loops=True), each loop one function (CPU)
    plugins    = ["my_problems.py"]         # imported first; paths relative to the suite file

    [[group]]                               # optional: sections with their own selection and
    problems   = ["rosenbrock:dim=1000000"] # settings; top-level keys are their defaults
    optimizers = ["lbfgs", "newton-cg"]
    starts     = 1

Parameter grids: a value in brackets expands to one entry per value — ``gd:lr=[1e-3,1e-2,1e-1]``
is three optimizers, and several grids in one spec give their Cartesian product (benchopt's
``name[param=[...]]`` selectors, in spec-string form). A problem family can be taken whole with
a pattern: ``nist:*``, ``mgh:*``, ``root:*``. Entries may also be inline tables: ``{name = "gd", lr = [1e-3, 1e-2]}``.

Seeds: each seed draws ``starts − 1`` random starts; the starts of all seeds are pooled behind
the problem's standard x0, so every optimizer of a cell sees the same batch.

Every mistake is a one-line :class:`OptbenchError` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import itertools
import os
import tomllib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import optimizers as _optimizers
import problems as _problems
from optbench_core import DTYPES, OptbenchError, close_matches, parse_spec

#: the settings a cell needs, with the values used when neither the suite nor the command line
#: gives one
DEFAULTS: Dict[str, Any] = {"starts": 10, "seeds": (0,), "max_iter": 1000, "gtol": 1e-8, "dtype": "float64",
                            "repeats": 3, "pack": False, "fuse_loops": False}
#: keys a group (or the top level, as defaults for its groups) may set
GROUP_KEYS = ("problems", "optimizers", "exclude", "dims", "starts", "seed", "seeds", "max_iter", "gtol", "dtype",
              "repeats", "pack", "fuse_loops")
#: keys only the top level may set
TOP_KEYS = ("name", "description", "plugins", "device", "group")
#: the optimizer selector meaning "every registered optimizer" (families such as optax: excluded)
ALL = "all"
#: optimizer specs with this prefix run through scipy (``bench.scipy_runner``), not ``bench.solve``
SCIPY_PREFIX = "scipy:"


# -- where suites live -------------------------------------------------------------------------

def suites_dir() -> str:
    """The directory of the shipped suites (the ``suites`` package: repo checkout or installed)."""
    import importlib.resources
    import suites as _suites_pkg
    return str(importlib.resources.files(_suites_pkg))


def shipped() -> List[str]:
    """Names of the shipped suites (``quick``, ``default``, ...), sorted."""
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(suites_dir(), "*.toml")))


def find(ref: str) -> str:
    """The file a suite reference names: an existing path, else a shipped suite by name.

    ``quick``, ``quick.toml`` and ``suites/quick.toml`` all find the shipped quick suite even
    when the current directory is not a checkout, so CI and docs can use the repo path.
    """
    if os.path.isfile(ref):
        return ref
    base = os.path.basename(ref)
    stem = base[:-5] if base.endswith(".toml") else base
    cand = os.path.join(suites_dir(), stem + ".toml")
    if os.path.isfile(cand) and (ref in (stem, base) or os.path.normpath(ref) == os.path.join("suites", base)):
        return cand
    if os.path.isdir(ref):
        raise OptbenchError(f"suite {ref} is a directory, not a .toml file")
    raise OptbenchError(f"suite file {ref} not found (shipped suites: {', '.join(shipped())}){close_matches(stem, shipped())}")


# -- specs and grids ---------------------------------------------------------------------------

def split_specs(text: str) -> List[str]:
    """Split a comma-separated list of specs, keeping commas inside ``[...]`` grids."""
    out, depth, cur = [], 0, []
    for ch in text or "":
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def expand_grid(spec: str, where: str = "spec") -> List[str]:
    """Expand ``key=[a,b,c]`` segments of a spec string into one spec per combination.

    ``gd:lr=[1e-3,1e-2]`` → ``["gd:lr=1e-3", "gd:lr=1e-2"]``; two grids give their product in
    row-major order (the first grid varies slowest).
    """
    choices = []
    for seg in spec.split(":"):
        key, eq, val = seg.partition("=")
        val = val.strip()
        if eq and (val.startswith("[") or val.endswith("]")):
            if not (val.startswith("[") and val.endswith("]")) or "[" in val[1:-1] or "]" in val[1:-1]:
                raise OptbenchError(f"{where}: unbalanced brackets in {spec!r}")
            vals = [v.strip() for v in val[1:-1].split(",")]
            if not vals or any(not v for v in vals):
                raise OptbenchError(f"{where}: empty value in grid {seg.strip()!r} of {spec!r}")
            choices.append([f"{key.strip()}={v}" for v in vals])
        else:
            choices.append([seg])
    return [":".join(c) for c in itertools.product(*choices)]


def _table_to_spec(entry: dict, where: str) -> str:
    """``{name = "gd", lr = [1e-3, 1e-2]}`` → ``"gd:lr=[0.001,0.01]"``."""
    if "name" not in entry or not isinstance(entry["name"], str):
        raise OptbenchError(f"{where}: an inline table needs a string 'name'")
    parts = [entry["name"]]
    for k, v in entry.items():
        if k == "name":
            continue
        vals = v if isinstance(v, list) else [v]
        texts = []
        for x in vals:
            if isinstance(x, bool):
                texts.append("true" if x else "false")
            elif isinstance(x, (int, float, str)) and not (isinstance(x, str) and any(c in x for c in ":,[]=")):
                texts.append(str(x))
            else:
                raise OptbenchError(f"{where}: parameter {k!r} of {entry['name']!r} has an unsupported value {x!r}")
        parts.append(f"{k}=[{','.join(texts)}]" if isinstance(v, list) else f"{k}={texts[0]}")
    return ":".join(parts)


# -- validation --------------------------------------------------------------------------------

def _label(where: str, key: str) -> str:
    """How a key is named in an error: ``--max-iter`` for the command line, else file: key."""
    if where == "cli":
        return "--" + key.replace("_", "-")
    return f"{where}: key {key!r}"


#: the most timed repeats a cell may ask for (as ``optbench perf --repeats``)
MAX_REPEATS = 1000
#: the largest seed: ``Problem.random_starts`` draws from the seed's low 32 bits, so seed 2³² would
#: repeat seed 0's starts (and ``seeds = [0, 4294967296]`` pool the same starts twice)
MAX_SEED = 2 ** 32 - 1


def _check_int(where, key, v, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise OptbenchError(f"{_label(where, key)} must be an integer, got {v!r}")
    if v < lo:
        raise OptbenchError(f"{_label(where, key)} must be at least {lo}, got {v}")
    if hi is not None and v > hi:
        raise OptbenchError(f"{_label(where, key)} must be at most {hi}, got {v}")
    return v


def _check_value(where: str, key: str, v: Any) -> Any:
    """Validate and normalise one setting; ``where`` is a file label or ``"cli"``."""
    if key == "repeats":   # timed repeats of a whole cell: a typo (1e6) would time for days
        v = _check_int(where, key, v, 1)
        if v > MAX_REPEATS:
            raise OptbenchError(f"{_label(where, key)} must be at most {MAX_REPEATS}, got {v}")
        return v
    if key in ("starts", "max_iter"):
        return _check_int(where, key, v, 1)
    if key == "seed":
        return _check_int(where, key, v, 0, MAX_SEED)
    if key == "seeds":
        if not isinstance(v, list) or not v:
            raise OptbenchError(f"{_label(where, key)} must be a non-empty list of integers, got {v!r}")
        seeds = tuple(_check_int(where, key, s, 0, MAX_SEED) for s in v)
        if len(set(seeds)) != len(seeds):
            raise OptbenchError(f"{_label(where, key)} repeats a seed: {list(seeds)}")
        return seeds
    if key == "dims":
        if not isinstance(v, list) or not v:
            raise OptbenchError(f"{_label(where, key)} must be a non-empty list of integers, got {v!r}")
        return tuple(_check_int(where, key, d, 1) for d in v)
    if key == "gtol":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise OptbenchError(f"{_label(where, key)} must be a finite number >= 0, got {v!r}")
        return float(v)
    if key in ("pack", "fuse_loops"):
        if not isinstance(v, bool):
            raise OptbenchError(f"{_label(where, key)} must be true or false, got {v!r}")
        return v
    if key == "dtype":
        if v not in DTYPES:
            raise OptbenchError(f"{_label(where, key)} must be one of {', '.join(DTYPES)}, got {v!r}")
        return v
    if key in ("problems", "optimizers", "exclude"):
        if key == "optimizers" and v == ALL:
            return ALL
        if isinstance(v, str):
            v = split_specs(v)
        if not isinstance(v, list) or not v:
            extra = f' or "{ALL}"' if key == "optimizers" else ""
            raise OptbenchError(f"{_label(where, key)} must be a non-empty list of names{extra}, got {v!r}")
        out = []
        for e in v:
            if isinstance(e, dict):
                e = _table_to_spec(e, _label(where, key))
            if not isinstance(e, str) or not e.strip():
                raise OptbenchError(f"{_label(where, key)}: entries must be spec strings, got {e!r}")
            if key == "optimizers" and e.strip() == ALL:
                out.append(ALL)
                continue
            for s in expand_grid(e.strip(), _label(where, key)):
                if key != "exclude" and not s.split(":")[0].strip():
                    raise OptbenchError(f"{_label(where, key)}: empty name in {e!r}")
                out.append(s)
        return out
    if key in ("name", "description", "device"):
        if not isinstance(v, str):
            raise OptbenchError(f"{_label(where, key)} must be a string, got {v!r}")
        if key == "device" and v not in ("", "default"):
            # the syntax bench.solve.resolve_devices accepts, checked here so that a typo names the
            # file and the key (whether such a device exists is decided when the run starts)
            kind, colon, idx = v.lower().partition(":")
            if kind not in ("cpu", "gpu") or (colon and not (idx.isascii() and idx.isdigit())):
                raise OptbenchError(f"{_label(where, key)} must be cpu, gpu, cpu:N or gpu:N, got {v!r}")
        return v
    if key == "plugins":
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise OptbenchError(f"{_label(where, key)} must be a list of file paths, got {v!r}")
        return list(v)
    raise OptbenchError(f"{_label(where, key)} is not a suite key")  # unreachable for known keys


def _check_table(where: str, table: dict, allowed: Sequence[str]) -> Dict[str, Any]:
    out = {}
    for key, v in table.items():
        if key not in allowed:
            raise OptbenchError(f"{where}: unknown key {key!r}{close_matches(key, allowed)}; "
                                f"allowed: {', '.join(allowed)}")
        if key == "group":
            continue
        out[key] = _check_value(where, key, v)
    if "seed" in out and "seeds" in out:
        raise OptbenchError(f"{where}: give 'seed' or 'seeds', not both")
    if "seed" in out:
        out["seeds"] = (out.pop("seed"),)
    if "exclude" in out and "optimizers" in out and out["optimizers"] != ALL and ALL not in out["optimizers"]:
        raise OptbenchError(f"{where}: key 'exclude' applies only to optimizers = \"{ALL}\"")
    return out


# -- the suite ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Suite:
    """A parsed, validated suite: defaults and groups of settings, names still unresolved."""

    name: str
    path: Optional[str]
    description: str = ""
    groups: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    plugins: List[str] = dataclasses.field(default_factory=list)
    device: Optional[str] = None

    @property
    def where(self) -> str:
        """How errors name this suite: its file, else its name."""
        return self.path or f"suite {self.name!r}"


def parse(text: str, path: Optional[str] = None, name: Optional[str] = None) -> Suite:
    """Parse and validate suite TOML text (names are resolved later by :func:`expand`)."""
    where = path or "suite"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptbenchError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table: a file nested thousands of
        # levels deep exhausts Python's stack, which no suite comes near
        raise OptbenchError(f"{where}: not valid TOML: arrays or tables nested too deeply to read") from None
    top = _check_table(where, data, GROUP_KEYS + TOP_KEYS)
    raw_groups = data.get("group", [])
    if not isinstance(raw_groups, list) or not all(isinstance(g, dict) for g in raw_groups):
        raise OptbenchError(f"{where}: 'group' must be an array of tables ([[group]] sections)")
    defaults = {k: v for k, v in top.items() if k in GROUP_KEYS}
    groups = []
    for i, g in enumerate(raw_groups, 1):
        gw = f"{where} [group {i}]"
        merged = dict(defaults)
        own = _check_table(gw, g, GROUP_KEYS)
        if "seeds" in own:
            merged.pop("seeds", None)
        if "optimizers" in own and "exclude" not in own:
            merged.pop("exclude", None)
        merged.update(own)
        if "exclude" in merged and merged.get("optimizers", ALL) != ALL and ALL not in merged["optimizers"]:
            # the group's own exclude against the top level's list: expand would ignore it silently
            raise OptbenchError(f"{gw}: key 'exclude' applies only to optimizers = \"{ALL}\"")
        merged["where"] = gw
        merged["own_dims"] = "dims" in own
        groups.append(merged)
    if not groups:
        groups = [dict(defaults, where=where, own_dims=True)]
    for g in groups:
        if "problems" not in g:
            raise OptbenchError(f"{g['where']}: no 'problems' given")
        if "optimizers" not in g:
            g["optimizers"] = ALL
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    plugins = [p if os.path.isabs(p) else os.path.join(base, p) for p in top.get("plugins", [])]
    sname = top.get("name") or name or (os.path.splitext(os.path.basename(path))[0] if path else "suite")
    return Suite(name=sname, path=path, description=top.get("description", ""), groups=groups, plugins=plugins,
                 device=top.get("device"))


def load(ref: str) -> Suite:
    """Load a suite by path or shipped name (see :func:`find`); one-line errors on any fault."""
    path = find(ref)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise OptbenchError(f"{path}: cannot read suite file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OptbenchError(f"{path}: not a UTF-8 text file") from None
    return parse(text, path=_display_path(path))


def _display_path(path: str) -> str:
    """A path for messages: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def describe_shipped() -> List[Tuple[str, str, str]]:
    """(name, description, path) of every shipped suite, for ``optbench list suites``."""
    out = []
    for n in shipped():
        s = load(os.path.join(suites_dir(), n + ".toml"))
        out.append((n, s.description, os.path.join(suites_dir(), n + ".toml")))
    return out


# -- expansion into cells ----------------------------------------------------------------------

@dataclasses.dataclass
class Cell:
    """One problem × one optimizer with the settings it runs under."""

    problem: Any            # problems.Problem
    optimizer: Any          # optimizers.Optimizer or bench.scipy_runner.ScipyMethod
    starts: int
    seeds: Tuple[int, ...]
    max_iter: int
    gtol: float
    dtype: str
    repeats: int
    pack: bool = False      # bench.solve(pack=True): the batch's tail stepped over its running tiles
    fuse_loops: bool = False   # bench.solve(fuse_loops=True): each loop compiled as one function (CPU)

    @property
    def key(self) -> Tuple[str, str]:
        """(problem spec, optimizer spec): a cell's identity in the run directory."""
        return (self.problem.spec, self.optimizer.spec)

    @property
    def is_scipy(self) -> bool:
        """Whether scipy runs this cell (a ``scipy:`` optimizer) rather than ``bench.solve``."""
        return self.optimizer.spec.startswith(SCIPY_PREFIX)

    def x0s(self) -> np.ndarray:
        """The batch of starts: x0 and ``starts − 1`` random starts per seed (see module doc)."""
        blocks = [self.problem.random_starts(self.starts, self.seeds[0])]
        blocks += [self.problem.random_starts(self.starts, s)[1:] for s in self.seeds[1:]]
        return np.vstack(blocks)

    def config(self) -> Dict[str, Any]:
        """The cell's settings as stored in meta.json (enough to run it again)."""
        return {"problem": self.problem.spec, "optimizer": self.optimizer.spec, "starts": self.starts,
                "seeds": list(self.seeds), "max_iter": self.max_iter, "gtol": self.gtol, "dtype": self.dtype,
                "repeats": self.repeats, "pack": self.pack, "fuse_loops": self.fuse_loops}

    def precompile(self, device: Optional[str] = None) -> float:
        """Compile this cell's programs without running them (nothing for a scipy cell)."""
        if self.is_scipy:
            return 0.0
        from .solve import precompile
        return precompile(self.problem, self.optimizer, self.x0s(), max_iter=self.max_iter, gtol=self.gtol,
                          dtype=self.dtype, device=device, pack=self.pack, fuse_loops=self.fuse_loops)

    def run(self, device: Optional[str] = None, progress=None):
        """Solve this cell (``bench.solve``, or scipy for ``scipy:`` optimizers) → ``bench.Result``.

        ``progress(phase)`` is called with ``"compile"`` and ``"run"`` as the work proceeds.
        """
        x0s = self.x0s()
        if self.is_scipy:
            from . import scipy_runner
            return scipy_runner.solve(self.problem, self.optimizer, x0s, max_iter=self.max_iter, gtol=self.gtol,
                                      dtype=self.dtype, repeats=self.repeats, progress=progress)
        from .solve import solve
        return solve(self.problem, self.optimizer, x0s, max_iter=self.max_iter, gtol=self.gtol, dtype=self.dtype,
                     repeats=self.repeats, device=device, progress=progress, pack=self.pack,
                     fuse_loops=self.fuse_loops)


def all_optimizers(exclude: Sequence[str] = ()) -> List[str]:
    """Every registered optimizer name (not families such as ``optax:``), minus ``exclude``."""
    names = [n for n in _optimizers.names() if not n.endswith(":")]
    bad = [e for e in exclude if e not in names]
    if bad:
        raise OptbenchError(f"cannot exclude unknown optimizer {bad[0]!r}{close_matches(bad[0], names)}")
    return [n for n in names if n not in exclude]


def _dim_param(name: str) -> Optional[str]:
    """The parameter that sets a problem's dimension (``dim`` unless the catalogue says otherwise)."""
    try:
        d = _problems.describe(name)
    except OptbenchError:
        return None
    return d.get("dim_param") or ("dim" if "dim" in d.get("params", {}) else None)


def _expand_family(spec: str, where: str) -> List[str]:
    """A name with ``*`` → every registered problem it matches (``mgh:*``, ``root:*``), and
    ``prefix:*`` → every member of a ``prefix:`` family (``nist:*``); parameters carried over."""
    name, params = parse_spec(spec)
    if "*" not in name:
        return [spec]
    tail = "".join(f":{k}={v}" for k, v in params.items())
    names = [n for n in _problems.names() if not n.endswith(":") and fnmatch.fnmatchcase(n, name)]
    prefix = name[:-2] if name.endswith(":*") else None
    if prefix and prefix + ":" in _problems.names():
        members_fn = getattr(_problems, "members", None)
        try:
            names += [f"{prefix}:{m}" for m in (members_fn(prefix) if members_fn else [])]
        except OptbenchError as exc:
            raise OptbenchError(f"{where}: {exc}") from None
    if not names:
        raise OptbenchError(f"{where}: no registered problem matches {name!r}")
    return [n + tail for n in names]


def _problem_specs(group: Dict[str, Any], where: Optional[str]) -> List[str]:
    """The group's problem specs, families expanded and ``dims`` applied; ``where`` is None when
    the command line's ``--problems`` replaced the selection (its mistakes are then not the
    file's, and the file's ``dims`` apply to the problems that have a free dimension, if any)."""
    dims = group.get("dims")
    out = []
    scalable = False
    for spec in group["problems"]:
        for s in _expand_family(spec, where or "--problems"):
            name, params = parse_spec(s)
            dp = _dim_param(name) if dims else None
            if dp and dp not in params:
                scalable = True
                out.extend(f"{s}:{dp}={d}" for d in dims)
            else:
                out.append(s)
    if dims and not scalable and group.get("own_dims", True) and where is not None:
        raise OptbenchError(f"{where}: key 'dims' given but no problem of the group has a free dimension parameter")
    return out


def _get_problem(spec: str, where: Optional[str]):
    """Build a problem; errors name ``where`` (None: the name came from the command line)."""
    try:
        p = _problems.get(spec)
        p.check()
    except OptbenchError as exc:
        raise OptbenchError(f"{where}: {exc}" if where else str(exc)) from None
    return p


def _get_optimizer(spec: str, where: Optional[str]):
    try:
        if spec.startswith(SCIPY_PREFIX):
            from . import scipy_runner
            return scipy_runner.get(spec)
        return _optimizers.get(spec)
    except OptbenchError as exc:
        raise OptbenchError(f"{where}: {exc}" if where else str(exc)) from None


def _first_spelling(obj, first: Dict[Any, Any]):
    """``obj``, or the object built earlier for the same setting however spelled (see
    ``Registry.build``'s identity: the name with every parameter, defaults filled in)."""
    return first.setdefault(getattr(obj, "_identity", obj.spec), obj)


def expand(suite: Suite, overrides: Optional[Dict[str, Any]] = None) -> List[Cell]:
    """Resolve names and expand every group into cells (problem-major order, duplicates dropped;
    a duplicate with other settings is an error unless ``overrides`` replace the selection).

    ``overrides`` (validated command-line values: ``problems``, ``optimizers``, ``starts``,
    ``seeds``, ``max_iter``, ``gtol``, ``dtype``, ``repeats``, ``pack``, ``fuse_loops``) replace the suite's values in every
    group. Optimizers that need residuals are paired only with problems that have them.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cells: List[Cell] = []
    seen: Dict[Tuple[str, str], Tuple[str, Dict[str, Any]]] = {}   # key -> (where, settings) of its first group
    # a cell runs once, so one that two groups give with different settings would lose the second
    # group's silently; that is the file's mistake, unless the command line's --problems/--optimizers
    # replaced every group's selection (the groups then collapse onto one cell, under the first's)
    selection_overridden = "problems" in overrides or "optimizers" in overrides
    pcache: Dict[str, Any] = {}
    ocache: Dict[str, Any] = {}
    # one object per setting over the whole suite: a respelling in a later group (gd:lr=0.001
    # after gd) is the first spelling's object, so a run never holds one setting under two names
    pfirst: Dict[Any, Any] = {}
    ofirst: Dict[Any, Any] = {}
    for g in suite.groups:
        g = dict(g, **overrides)
        if "optimizers" in overrides and "exclude" in g and "exclude" not in overrides:
            g.pop("exclude")
        where = g["where"]
        pwhere = None if "problems" in overrides else where
        owhere = None if "optimizers" in overrides else where
        settings = {k: g.get(k, DEFAULTS[k]) for k in DEFAULTS}
        ospecs = []
        for o in g["optimizers"] if g["optimizers"] != ALL else [ALL]:
            if o != ALL:
                ospecs.append(o)
                continue
            try:
                ospecs.extend(all_optimizers(g.get("exclude", ())))
            except OptbenchError as exc:   # name the file (and group) and the key, as for every key
                raise OptbenchError(f"{_label(where, 'exclude')}: {exc}") from None
        probs = []
        for s in _problem_specs(g, pwhere):
            if s not in pcache:
                pcache[s] = _first_spelling(_get_problem(s, pwhere), pfirst)
            probs.append(pcache[s])
        opts = []
        for s in ospecs:
            if s not in ocache:
                ocache[s] = _first_spelling(_get_optimizer(s, owhere), ofirst)
            opts.append(ocache[s])
        if not opts:
            raise OptbenchError(f"{where}: no optimizers selected")
        fits = 0
        for p in probs:
            for o in opts:
                if getattr(o, "needs_residuals", False) and not p.has_residuals:
                    continue
                fits += 1
                key = (p.spec, o.spec)   # respellings already share their first spelling's object
                if key in seen:
                    first_where, first = seen[key]
                    diff = [k for k in DEFAULTS if first[k] != settings[k]]
                    if diff and not selection_overridden:
                        raise OptbenchError(
                            f"{where}: {p.spec} × {o.spec} is also in {first_where} with other settings ("
                            + ", ".join(f"{k} {_show(settings[k])} here, {_show(first[k])} there" for k in diff)
                            + "); a cell runs once: give it in one group")
                    continue
                seen[key] = (where, settings)
                cells.append(Cell(problem=p, optimizer=o, **settings))
        if not fits:
            # both selections from the command line: the mistake is in them, not in the suite file
            given = ("--problems/--optimizers" if pwhere is None and owhere is None
                     else where)
            raise OptbenchError(f"{given}: no problem × optimizer pair fits "
                                "(least-squares optimizers need problems with residuals)")
    if not cells:
        raise OptbenchError(f"{suite.where}: the suite selects no cells")
    return cells


def _show(v: Any) -> str:
    """A setting as a suite file writes it (seeds as a list)."""
    return str(list(v)) if isinstance(v, tuple) else str(v)


def config(suite: Suite, cells: List[Cell]) -> Dict[str, Any]:
    """The expanded configuration for meta.json: the suite, and each setting (a single value when
    every cell shares it, else the sorted distinct values), plus the full per-cell list."""
    def common(key):
        vals = []
        for c in cells:
            v = c.config()[key]
            v = tuple(v) if isinstance(v, list) else v
            if v not in vals:
                vals.append(v)
        vals = [list(v) if isinstance(v, tuple) else v for v in vals]
        return vals[0] if len(vals) == 1 else sorted(vals, key=repr)
    out = {"suite": suite.name, "suite_file": suite.path, "plugins": list(suite.plugins),
           "problems": list(dict.fromkeys(c.problem.spec for c in cells)),
           "optimizers": list(dict.fromkeys(c.optimizer.spec for c in cells))}
    for k in ("starts", "seeds", "max_iter", "gtol", "dtype", "repeats", "pack", "fuse_loops"):
        out[k] = common(k)
    seeds = out["seeds"]
    if isinstance(seeds, list) and len(seeds) == 1 and isinstance(seeds[0], int):
        out["seed"] = seeds[0]
    out["cells"] = [c.config() for c in cells]
    return out
