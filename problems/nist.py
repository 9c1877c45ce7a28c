"""NIST StRD regression datasets: ``nist:<Name>`` (27 nonlinear) and ``nist-linear:<Name>`` (11 linear).

The files ship in ``problems/data/nist-strd/`` exactly as NIST publishes them (see SOURCE.md
there): the nonlinear ones with CRLF line ends, the linear ones with LF. Everything a problem
needs is read from the file text — the model formula (translated by :mod:`problems.expr`, never
``eval``-ed), both starting points, the certified parameters, their standard deviations, the
certified residual sum of squares, the difficulty and the data — so nothing is typed in by hand.

Reference: NIST Information Technology Laboratory, Statistical Reference Datasets,
https://www.itl.nist.gov/div898/strd/ (nonlinear: nls/nls_main.shtml; linear: lls/lls.shtml).
The residual is ``lhs(y) − model(b, x)`` — for Nelson the left side is log[y] — and
f = Σ residual², which is NIST's residual sum of squares: f* is the certified value.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import jax.numpy as jnp

from optbench_core import OptbenchError, close_matches

from .base import Problem
from .expr import Formula
from .registry import register_family

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "nist-strd")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Everything one StRD file says, parsed.

    ``columns`` names the data columns in file order (``y`` first); ``data`` is (n_obs, k).
    For linear files ``starts`` is None and ``params`` are ``B0…``/``B1…``.
    """

    name: str
    kind: str                      # "nonlinear" or "linear"
    difficulty: str                # "Lower", "Average" or "Higher"
    model_text: str                # the formula as printed, joined onto one line
    lhs_text: str                  # "y" or "log[y]"
    rhs_text: str                  # the model, without the "+ e" error term
    constants: Dict[str, float]    # e.g. Roszman1's "pi = 3.14159…"
    params: Tuple[str, ...]
    starts: Optional[np.ndarray]   # (2, p): Start 1, Start 2
    certified: np.ndarray          # (p,)
    certified_sd: np.ndarray       # (p,)
    rss: float                     # certified residual sum of squares
    residual_sd: float
    dof: int                       # as printed (NIST's Rat43 file says 9; n − p = 11)
    columns: Tuple[str, ...]
    data: np.ndarray
    path: str

    @property
    def n_obs(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_params(self) -> int:
        return len(self.params)

    @property
    def predictors(self) -> Tuple[str, ...]:
        return self.columns[1:]

    @functools.cached_property
    def lhs(self) -> Formula:
        return Formula(self.lhs_text, [self.columns[0]])

    @functools.cached_property
    def rhs(self) -> Formula:
        return Formula(self.rhs_text, list(self.params) + list(self.predictors) + list(self.constants))

    def residuals(self, b, cols: Dict[str, object], ns):
        """lhs(y) − model(b, x) with ``cols`` the data columns by name, in namespace ``ns``."""
        env = {name: b[i] for i, name in enumerate(self.params)}
        env.update({k: cols[k] for k in self.predictors})
        env.update(self.constants)
        return self.lhs({self.columns[0]: cols[self.columns[0]]}, ns) - self.rhs(env, ns)


def _lines(text: str) -> List[str]:
    # splitlines() treats \r\n, \n and \r alike; trailing blanks are NIST's, drop them
    return [ln.rstrip() for ln in text.splitlines()]


def _err(path: str, msg: str) -> OptbenchError:
    return OptbenchError(f"NIST file {os.path.basename(path)}: {msg}")


def _find(lines, pattern, path, what, flags=0):
    rx = re.compile(pattern, flags)
    for i, ln in enumerate(lines):
        m = rx.search(ln)
        if m:
            return i, m
    raise _err(path, f"no {what} found")


def _expand_ellipsis(rhs: str, path: str) -> str:
    """Fill in ``B2*(x**2) + ... + B9*(x**9)`` (Filip's polynomial) term by term."""
    if "..." not in rhs:
        return rhs
    m = re.search(r"B(\d+)\*\(x\*\*(\d+)\)\s*\+\s*\.\.\.\s*\+\s*B(\d+)\*\(x\*\*(\d+)\)", rhs)
    if not m or m.group(1) != m.group(2) or m.group(3) != m.group(4):
        raise _err(path, f"cannot expand '...' in model {rhs!r}")
    lo, hi = int(m.group(1)), int(m.group(3))
    terms = " + ".join(f"B{k}*(x**{k})" for k in range(lo, hi + 1))
    return rhs[:m.start()] + terms + rhs[m.end():]


def parse_file(path: str) -> Dataset:
    """Parse one StRD ``.dat`` file (nonlinear or linear; CRLF or LF)."""
    try:
        with open(path, "r", encoding="ascii", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise OptbenchError(f"cannot read NIST file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise OptbenchError(f"NIST file {os.path.basename(path)} is not ASCII") from None
    return parse_text(text, path)


def parse_text(text: str, path: str = "<text>") -> Dataset:
    """Parse the text of one StRD file; ``path`` only names it in error messages."""
    lines = _lines(text)
    _, m = _find(lines, r"Dataset Name:\s+(\S+)", path, "dataset name")
    name = m.group(1)
    _, m = _find(lines, r"Procedure:\s+(Nonlinear|Linear) Least Squares Regression", path, "procedure line")
    kind = m.group(1).lower()
    _, m = _find(lines, r"(Lower|Average|Higher) Level of Difficulty", path, "difficulty")
    difficulty = m.group(1)
    _, m = _find(lines, r"Data\s+\(lines\s+(\d+)\s+to\s+(\d+)\)", path, "data line range")
    d_lo, d_hi = int(m.group(1)), int(m.group(2))

    # -- the model block: from "Model:" to the first certified/starting-values header
    i_model, _ = _find(lines, r"^Model:", path, "Model: section")
    end_pat = re.compile(r"Starting [Vv]alues|Certified Regression Statistics|Certified Values")
    i_end = next((i for i in range(i_model + 1, len(lines)) if end_pat.search(lines[i])), None)
    if i_end is None:
        raise _err(path, "no certified values after the model")
    i_par, m = next(((i, re.search(r"(\d+)\s+Parameters?\s+\(", lines[i])) for i in range(i_model, i_end)
                     if re.search(r"(\d+)\s+Parameters?\s+\(", lines[i])), (None, None))
    if i_par is None:
        raise _err(path, "no 'N Parameters' line in the model section")
    n_par = int(m.group(1))
    statements: List[str] = []
    for ln in lines[i_par + 1:i_end]:
        s = ln.strip()
        if not s:
            continue
        if "=" in s:
            statements.append(s)
        elif statements:
            statements[-1] += " " + s      # a formula continued on the next line
        else:
            raise _err(path, f"model text {s!r} before any '='")
    constants: Dict[str, float] = {}
    model = None
    for st in statements:
        lhs, _, rhs = st.partition("=")
        lhs = lhs.strip()
        if re.fullmatch(r"[A-Za-z_]\w*", lhs) and re.fullmatch(r"\s*" + _NUM + r"\s*", rhs) and lhs != "y":
            constants[lhs] = float(rhs)
        elif model is None:
            model = (lhs, rhs.strip())
        else:
            raise _err(path, f"two model formulas: {model[0]} = … and {st!r}")
    if model is None:
        raise _err(path, "no model formula")
    lhs_text, rhs_text = model
    model_text = f"{lhs_text} = {rhs_text}"
    rhs_text = re.sub(r"\+\s*e\s*$", "", rhs_text).strip()   # NIST's additive error term
    rhs_text = _expand_ellipsis(rhs_text, path)
    if "pi" not in constants:
        constants["pi"] = math.pi  # ENSO uses pi without defining it

    # -- parameters: starting values and/or certified values
    if kind == "nonlinear":
        rx = re.compile(r"^\s*(b\d+)\s*=\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*$")
        rows = [rx.match(ln) for ln in lines[i_end:d_lo - 1]]
        rows = [r for r in rows if r]
        params = tuple(r.group(1) for r in rows)
        vals = np.array([[float(r.group(k)) for k in range(2, 6)] for r in rows])
        if len(rows) != n_par:
            raise _err(path, f"{n_par} parameters announced, {len(rows)} found")
        starts, certified, certified_sd = vals[:, :2].T.copy(), vals[:, 2].copy(), vals[:, 3].copy()
        _, m = _find(lines, r"Residual Sum of Squares:\s+(" + _NUM + ")", path, "residual sum of squares")
        rss = float(m.group(1))
        _, m = _find(lines, r"Residual Standard Deviation:\s+(" + _NUM + ")", path, "residual standard deviation")
        residual_sd = float(m.group(1))
        _, m = _find(lines, r"Degrees of Freedom:\s+(\d+)", path, "degrees of freedom")
        dof = int(m.group(1))
        _, m = _find(lines, r"Number of Observations:\s+(\d+)", path, "number of observations")
        n_obs = int(m.group(1))
    else:
        rx = re.compile(r"^\s*(B\d+)\s+(" + _NUM + r")\s+(" + _NUM + r")\s*$")
        rows = [r for r in (rx.match(ln) for ln in lines[i_end:d_lo - 1]) if r]
        if len(rows) != n_par:
            raise _err(path, f"{n_par} parameters announced, {len(rows)} found")
        params = tuple(r.group(1) for r in rows)
        certified = np.array([float(r.group(2)) for r in rows])
        certified_sd = np.array([float(r.group(3)) for r in rows])
        starts = None
        _, m = _find(lines, r"^\s*Residual\s+(\d+)\s+(" + _NUM + r")\s+(" + _NUM + ")", path, "ANOVA residual line")
        dof, rss = int(m.group(1)), float(m.group(2))
        _, m = _find(lines, r"^\s*Standard Deviation\s+(" + _NUM + ")", path, "residual standard deviation")
        residual_sd = float(m.group(1))
        _, m = _find(lines, r"^\s*(\d+)\s+Observations", path, "number of observations")
        n_obs = int(m.group(1))

    # -- data: the header line just above the declared range names the columns
    header = lines[d_lo - 2] if d_lo >= 2 else ""
    hm = re.match(r"^\s*Data:\s+(.*)$", header)
    if not hm:
        raise _err(path, f"line {d_lo - 1} should be the 'Data:' column header")
    columns = tuple(hm.group(1).split())
    if not columns or columns[0] != "y":
        raise _err(path, f"data columns {columns} do not start with y")
    if d_hi > len(lines):
        raise _err(path, f"data should run to line {d_hi}, file has {len(lines)} lines")
    try:
        data = np.array([[float(v) for v in lines[i].split()] for i in range(d_lo - 1, d_hi)])
    except ValueError:
        raise _err(path, "non-numeric entry in the data") from None
    if data.ndim != 2 or data.shape[1] != len(columns):
        raise _err(path, f"data rows do not all have {len(columns)} columns")
    if data.shape[0] != n_obs:
        raise _err(path, f"{n_obs} observations announced, {data.shape[0]} data rows")
    if any(ln.strip() for ln in lines[d_hi:]):
        raise _err(path, f"non-blank lines after the data (line {d_hi})")
    ds = Dataset(name=name, kind=kind, difficulty=difficulty, model_text=model_text, lhs_text=lhs_text,
                 rhs_text=rhs_text, constants=constants, params=params, starts=starts, certified=certified,
                 certified_sd=certified_sd, rss=rss, residual_sd=residual_sd, dof=dof, columns=columns,
                 data=data, path=path)
    # translate now, so a bad formula fails at load time with a clear message
    ds.lhs, ds.rhs
    unused = set(params) - ds.rhs.used
    if unused:
        raise _err(path, f"model does not use parameter(s) {', '.join(sorted(unused))}")
    return ds


def dataset_names(kind: str = "nonlinear") -> List[str]:
    """The shipped datasets of one kind, sorted."""
    folder = os.path.join(DATA_DIR, kind)
    return sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".dat"))


@functools.lru_cache(maxsize=None)
def load(name: str, kind: str = "nonlinear") -> Dataset:
    """Parse a shipped dataset by name (cached)."""
    valid = dataset_names(kind)
    if name not in valid:
        lower = {v.lower(): v for v in valid}
        if name.lower() in lower:
            name = lower[name.lower()]
        else:
            prefix = "nist" if kind == "nonlinear" else "nist-linear"
            raise OptbenchError(f"unknown {kind} NIST dataset {name!r}{close_matches(name, valid)}; "
                                f"{prefix}: has {', '.join(valid)}")
    return parse_file(os.path.join(DATA_DIR, kind, name + ".dat"))


def _bounds(pts: np.ndarray):
    """A box spanning the given points, widened by a quarter of its width (or ½|v|) on each side."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = np.where(hi > lo, 0.25 * (hi - lo), 0.5 * np.abs(lo))
    pad = np.where(pad > 0, pad, 1.0)
    return lo - pad, hi + pad


def _problem(ds: Dataset, x0, prefix: str, tags) -> Problem:
    cols = {c: ds.data[:, k] for k, c in enumerate(ds.columns)}
    pts = np.vstack([ds.certified[None], x0[None]] + ([ds.starts] if ds.starts is not None else []))

    def residuals(b, data):
        return ds.residuals(b, data, jnp)

    return Problem(
        name=f"{prefix}:{ds.name}", residuals=residuals, x0=x0, f_star=ds.rss, x_star=ds.certified,
        bounds=_bounds(pts), data=cols,
        tags=tuple(tags) + ("nist", "least-squares", "regression", ds.difficulty.lower()),
        description=ds.model_text,
        info={"difficulty": ds.difficulty, "certified_rss": ds.rss, "certified_sd": ds.certified_sd,
              "residual_sd": ds.residual_sd, "n_obs": ds.n_obs, "kind": ds.kind,
              "starts": None if ds.starts is None else ds.starts.copy()})


def nist(name: str, start: int = 1) -> Problem:
    """A NIST StRD nonlinear regression dataset; x0 = NIST's Start 1 or 2, f* = certified RSS.

    x* is the certified parameter vector. For Lanczos1 the certified RSS (1.4e-25) is far below
    what the 11-digit certified parameters reproduce (≈ 4e-21): compare it absolutely.
    """
    if start not in (1, 2):
        raise OptbenchError(f"nist:{name}: start must be 1 or 2, got {start}")
    ds = load(name, "nonlinear")
    return _problem(ds, ds.starts[start - 1].copy(), "nist", ("nonlinear",))


def nist_linear(name: str) -> Problem:
    """A NIST StRD linear regression dataset; x0 = 0, f* = certified residual SS, x* = certified B."""
    ds = load(name, "linear")
    return _problem(ds, np.zeros(ds.n_params), "nist-linear", ("linear", "convex"))


register_family("nist", nist, members=lambda: dataset_names("nonlinear"), family="nist",
                dims="2–9 (per dataset)", tags=("nist", "least-squares", "regression", "nonlinear"))
register_family("nist-linear", nist_linear, members=lambda: dataset_names("linear"), family="nist",
                dims="1–11 (per dataset)", tags=("nist", "least-squares", "regression", "linear"))
