"""Figures from stored traces (never from a live solve), so ``optbench plot`` can redraw any run.

Per problem:

- ``convergence_<problem>``: f − f* (or ‖∇f‖ where f* is unknown) against iterations, against
  weighted evaluations ("work", weights in the axis label) and against wall time (k × run time /
  iterations the batch ran); median across starts as a line, interquartile range as a band. A
  start that stopped keeps its final value (the trace repeats it), so every median is over all
  starts; a diverged start (its non-finite end: +inf, −inf or NaN) counts as above every other
  and is drawn on the cap line.
- ``trajectories_<problem>`` (2-D problems): filled contour of f over the problem's box on
  log-spaced levels, a few starts' paths per optimizer with a marker at each iterate, known
  minima starred — one panel per optimizer on a shared grid; a panel counts the drawn paths
  whose end lies off its frame. Without a registered problem the frame holds the starts and
  the ends near them.
- ``taylor_<problem>`` (trust-region methods, i.e. where ``trace_rho`` is not all NaN): the ratio
  ρ = actual / predicted reduction and the trust radius per iteration (Levenberg–Marquardt with
  Nielsen damping logs its scaled step length ‖Dp‖ there instead).

Every cell's arrays are checked before drawing (:func:`check_cell`): a damaged trace file is one
line naming it.

Over the whole run: ``profile_performance`` (Dolan & Moré 2002, on iterations, work and time),
``profile_data`` (Moré & Wild 2009) and ``ecdf`` (runtime ECDF over targets 1e-1 … 1e-8, COCO
style). One colour per optimizer, the same in every figure of a run; when runs are compared the
line style tells the runs apart.

Figures are written as PNG and SVG. Rendering is deterministic — no timestamp or software tag in
the files, fixed SVG ids — so redrawing a run directory reproduces its figures byte for byte.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from optbench_core import OptbenchError  # noqa: E402

from . import metrics  # noqa: E402
from .metrics import WorkWeights, convergence_values  # noqa: E402,F401  (re-exported)
from . import store  # noqa: E402
from .store import Run  # noqa: E402

#: plotted values are floored here so exact zeros stay on a log axis
LOG_FLOOR = 1e-20
#: and capped here: a diverging start's f − f* (or radius) can reach 1e300, and matplotlib's log
#: tick locator, which steps a few decades past the data, then overflows to inf and its labels fail.
#: Capping is monotone, so the median and quartiles drawn are the capped ones: a curve at this
#: line means "this high or higher"
LOG_CEIL = 1e100
#: the convergence figure draws values more than this many decades above its worst start (and
#: above 1) at that line, so a diverging method does not squash the others' curves into a
#: sliver of a 10⁻²⁰ … 10³⁰⁰ axis
DIVERGED_DECADES = 6
#: default file formats of every figure
FORMATS = ("png", "svg")
DPI = 100
#: starts whose paths a trajectory panel draws
TRAJECTORY_STARTS = 4
#: contour grid resolution per axis
CONTOUR_GRID = 160
#: ρ is clipped to this range in the Taylor-model panel (it can be hugely negative)
RHO_CLIP = (-1.0, 2.0)
#: colours after tab10's ten: Dark2's teal, orange, violet, magenta, gold, then darker tones
_EXTRA_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#e6ab02", "#000000", "#000080", "#8b4513",
                 "#2f4f4f", "#b22222")
#: the least time a solve can cost in the performance profile on time: one tick of a nanosecond
#: clock (time.perf_counter's resolution), for cells whose recorded run time is 0
TIME_FLOOR_S = 1e-9
#: line styles that tell compared runs apart
RUN_LINESTYLES = ("-", "--", ":", "-.")

#: settings that make the rendering independent of the user's matplotlibrc and reproducible
_RC = {
    "svg.hashsalt": "optbench",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "path.simplify": True,
    "axes.grid": False,
    "image.composite_image": True,
}


# -- axes ------------------------------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade_label(value, _pos=None) -> str:
    """``10⁻³``-style labels in plain Unicode: mathtext would cost a TeX-like parse per label."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return ""
    e = math.log10(abs(value))
    if abs(e - round(e)) > 1e-9:
        return ""
    sign = "−" if value < 0 else ""
    e = int(round(e))
    if e == 0:
        return sign + "1"
    return f"{sign}10{str(e).translate(_SUPERSCRIPT)}"


def _log_axis(axis, scale: str = "log", **kw) -> None:
    """Log or symlog scale with plain-text decade labels."""
    if axis.axis_name == "x":
        axis.axes.set_xscale(scale, **kw)
    else:
        axis.axes.set_yscale(scale, **kw)
    axis.set_major_formatter(FuncFormatter(_decade_label))

    def minor(value, _pos=None):
        # an axis spanning under two decades shows one or no decade label: name 2× and 5× too
        lo, hi = sorted(abs(v) for v in axis.get_view_interval())
        if lo <= 0 or hi / lo >= 100 or value <= 0:
            return ""
        m = value / 10.0 ** math.floor(math.log10(value) + 1e-12)
        return f"{value:g}" if abs(m - 2) < 1e-6 or abs(m - 5) < 1e-6 else ""

    axis.set_minor_formatter(FuncFormatter(minor) if scale == "log" else NullFormatter())


# -- styles ----------------------------------------------------------------------------------------

def optimizer_colors(names: List[str]) -> Dict[str, tuple]:
    """A fixed colour per optimizer, by its order in the run: tab10, then ten more saturated,
    mutually distinct colours (tab20's pale halves would vanish on the grey contours)."""
    palette = [plt.get_cmap("tab10")(i) for i in range(10)] + list(_EXTRA_COLORS)
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


#: above this many curves the legend goes outside the axes, on the right of the figure
LEGEND_INSIDE_MAX = 6


def _legend(fig, ax, n_curves: int, loc: str = "best") -> None:
    """A legend inside ``ax`` for a few curves, else one column outside on the right; none when
    nothing is labelled (a panel where every start diverged draws no curve, and matplotlib
    would warn "No artists with labels found" on stderr)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if n_curves <= LEGEND_INSIDE_MAX:
        ax.legend(loc=loc)
    else:
        fig.legend(handles, labels, loc="outside right upper")


def _width(base: float, n_curves: int) -> float:
    """Figure width, widened for an outside legend."""
    return base + (2.8 if n_curves > LEGEND_INSIDE_MAX else 0.0)


@dataclasses.dataclass
class Style:
    """How one curve family (an optimizer, or an optimizer in one of several compared runs) looks."""

    label: str
    color: Any
    linestyle: str = "-"


def median_band(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and interquartile range across starts (axis 0), ignoring NaN and inf; floored and
    capped (:data:`LOG_FLOOR`, :data:`LOG_CEIL`) for log axes."""
    v = np.asarray(values, dtype=np.float64)
    return metrics.median_band(np.where(np.isfinite(v), np.minimum(v, LOG_CEIL), np.nan), floor=LOG_FLOOR)


def diverged_cap(start_values: Sequence[np.ndarray]) -> float:
    """Where the convergence figure caps its curves: :data:`DIVERGED_DECADES` decades above the
    largest finite value at the start (at least 1), at most :data:`LOG_CEIL`. ``start_values``:
    per series, the plotted values at iteration 0 (one per start)."""
    top = 1.0
    for v0 in start_values:
        v0 = np.asarray(v0, dtype=np.float64)
        v0 = v0[np.isfinite(v0)]
        if v0.size:
            top = max(top, float(v0.max()))
    # a power of ten, so the line sits on a decade and reads as one
    return float(min(LOG_CEIL, 10.0 ** (math.ceil(math.log10(top)) + DIVERGED_DECADES)))


#: longest :func:`safe_name`: with a figure prefix (``trajectories_``), a format suffix and the
#: ``.<name>.tmp<pid>`` of an atomic write, a file name stays well under the usual 255-byte limit
SAFE_NAME_MAX = 160


def safe_name(text: str) -> str:
    """A file-name-safe form of a problem spec, at most :data:`SAFE_NAME_MAX` characters.

    The spec's separators ``:`` and ``=`` become ``_`` (``rosenbrock:dim=10`` →
    ``rosenbrock_dim_10``); a spec with other characters a file name cannot hold gets ``_`` for
    each run of them and a short hash of the whole spec, so that specs differing only there
    (``bowl:tag=a+b`` and ``bowl:tag=a*b``) do not write one file, and a long spec (a plug-in's
    long parameter value) is cut to fit the file system. (Two registered names that differ only
    in ``:`` against ``_``, ``a:b_c=1`` and ``a_b:c=1``, would still share a name.)
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    if re.fullmatch(r"[A-Za-z0-9._:=-]*", text) and len(name) <= SAFE_NAME_MAX:
        return name
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{name[: SAFE_NAME_MAX - len(digest) - 1]}-{digest}"


# -- writing ---------------------------------------------------------------------------------------

class FigureMemory(dict):
    """A destination for figures that keeps their bytes by file name instead of writing files.

    ``optbench report`` draws into one: it embeds the PNGs, so it needs no writable plots/
    directory (a read-only run directory still gets a report elsewhere) and never rewrites one.
    """


def prepare_dir(path: str) -> None:
    """Create ``path`` (and its parents) if needed and check that figures can be written there;
    one line naming the directory otherwise, before anything is drawn."""
    store.writable_dir(path, "figures")


def _write_bytes(path: str, data: bytes) -> None:
    """Write a figure atomically (:func:`bench.store.atomic_write_bytes`, without fsync: a figure
    can be redrawn); a failure removes the temporary — the run directory's own clean-up only looks
    at its root and traces/ — and is one line naming the file."""
    store.atomic_write_bytes(path, data, durable=False, what="figures")


_SVG_STRIP = [re.compile(r"<!DOCTYPE[^>]*>\s*", re.S), re.compile(r"\s*<metadata>.*?</metadata>", re.S)]


def figure_bytes(fig, fmt: str) -> bytes:
    """Render ``fig`` to PNG or SVG bytes with no timestamp, software tag or external reference.

    matplotlib's SVG carries an RDF metadata block and a DOCTYPE naming URLs; both are dropped
    (the file stays valid SVG), so a report embedding it references nothing outside itself.
    """
    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        return buf.getvalue()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        text = buf.getvalue().decode("utf-8")
        for pat in _SVG_STRIP:
            text = pat.sub("", text, count=1)
        return text.encode("utf-8")
    raise ValueError(f"unknown figure format {fmt!r}")


def _save(fig, out_dir, stem: str, formats: Sequence[str]) -> List[str]:
    """Write ``fig`` as ``<out_dir>/<stem>.<fmt>`` per format (or keep the bytes, when ``out_dir``
    is a :class:`FigureMemory`); returns the paths (the names, in memory). The figure is closed
    either way, so a failed write does not leak it."""
    try:
        if not isinstance(out_dir, FigureMemory):
            prepare_dir(out_dir)
        paths = []
        engine = fig.get_layout_engine()
        if engine is not None:
            # laid out once, as the PNG renderer measures the text, for every format: each
            # rendering solving it again (constrained layout measures every tick label) took
            # about 40 % of drawing a many-panel figure as SVG, and a figure's bytes would
            # depend on which formats were asked for and in what order
            engine.execute(fig)
            fig.set_layout_engine("none")
        for fmt in formats:
            name = f"{stem}.{fmt}"
            if isinstance(out_dir, FigureMemory):
                out_dir[name] = figure_bytes(fig, fmt)
                paths.append(name)
            else:
                path = os.path.join(out_dir, name)
                _write_bytes(path, figure_bytes(fig, fmt))
                paths.append(path)
    finally:
        plt.close(fig)
    return paths


# -- per-problem data --------------------------------------------------------------------------------

@dataclasses.dataclass
class Series:
    """One cell's arrays with what the figures need to draw it."""

    key: Any                      # optimizer name, or (run label, optimizer) when comparing
    cell: Dict[str, np.ndarray]
    dim: int
    run_s: Optional[float]
    success_rate: float

    @property
    def nit(self) -> np.ndarray:
        return np.asarray(self.cell["nit"]).astype(int)

    @property
    def last(self) -> int:
        return metrics.iterations_run(self.cell)

    @property
    def time_per_iteration(self) -> float:
        return metrics.time_per_iteration(self.cell, self.run_s)


def _is_numeric(a: np.ndarray) -> bool:
    return a.dtype == bool or np.issubdtype(a.dtype, np.number)


def check_cell(cell: Dict[str, np.ndarray], path: str) -> None:
    """A one-line error naming the trace file unless ``cell`` holds what the figures read: numeric
    traces of one (starts, iterations) shape, whole iteration counts within them, one success flag
    per start, a numeric f*. A hand-edited or damaged file (a trace left out, cut short, nit past
    its end) otherwise failed deep in the drawing as an internal KeyError or IndexError, or — nit
    below 0 — drew paths from the wrong columns without a word."""
    def bad(what: str):
        return OptbenchError(f"{path}: {what} (damaged or hand-edited trace file)")

    for k in ("trace_f", "trace_nfev", "nit", "success"):
        if k not in cell:
            raise bad(f"lacks the array {k!r}")
    f = cell["trace_f"]
    if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] < 1 or not _is_numeric(f):
        raise bad(f"trace_f must be numbers of shape (starts, iterations), got {f.dtype} {f.shape}")
    b, t = f.shape
    for k in ("trace_grad_norm", "trace_nfev", "trace_njev", "trace_nhev", "trace_nhvp", "trace_step", "trace_rho"):
        if k in cell and (cell[k].shape != f.shape or not _is_numeric(cell[k])):
            raise bad(f"{k} has {cell[k].dtype} {cell[k].shape}, trace_f {f.shape}")
    if "trace_x" in cell:
        tx = cell["trace_x"]
        if tx.ndim != 3 or tx.shape[:2] != f.shape or not _is_numeric(tx):
            raise bad(f"trace_x must be numbers of shape (starts, iterations, n) with (starts, iterations) = "
                      f"{f.shape} as in trace_f, got {tx.dtype} {tx.shape}")
    if "trace_rho" in cell and "trace_step" not in cell and np.any(np.isfinite(cell["trace_rho"])):
        raise bad("has a trust-region ratio trace_rho but lacks its radius trace_step")
    nit = cell["nit"]
    with np.errstate(invalid="ignore"):
        whole = (_is_numeric(nit) and nit.shape == (b,)
                 and bool(np.all((nit >= 0) & (nit <= t - 1) & (nit == np.floor(nit)))))
    if not whole:
        raise bad(f"nit must be {b} whole numbers from 0 to {t - 1} (the trace's last column)")
    if "iterations_run" in cell:
        it = cell["iterations_run"]
        if not (_is_numeric(it) and it.size == 1 and 0 <= float(it) <= t - 1):
            raise bad(f"iterations_run must be a number from 0 to {t - 1}")
    if cell["success"].shape != (b,) or not _is_numeric(cell["success"]):
        raise bad(f"success must be {b} flags, got {cell['success'].dtype} {cell['success'].shape}")
    if "f_star" in cell and (cell["f_star"].size != 1 or not _is_numeric(cell["f_star"])):
        raise bad(f"f_star must be one number, got {cell['f_star'].dtype} {cell['f_star'].shape}")
    if ("f_star" not in cell or not np.isfinite(float(cell["f_star"]))) and "trace_grad_norm" not in cell:
        raise bad("lacks trace_grad_norm, which its figures show where f* is unknown")


def check_run(run: Run) -> None:
    """:func:`check_cell` over every cell of ``run``: before a drawing that writes its figures as
    it goes (``compare``), so a damaged trace stops it before the first file, not half-way."""
    for row in run.summary:
        check_cell(run.cell(row["problem"], row["optimizer"], padded=False), os.path.join(run.path, row["trace_file"]))


def run_series(run: Run, problem: str, key: Callable[[str], Any] = lambda o: o) -> List[Series]:
    """The cells of ``problem`` in ``run``, in summary order (each checked by :func:`check_cell`)."""
    out = []
    for row in run.summary:
        if row["problem"] != problem:
            continue
        cell = run.cell(problem, row["optimizer"], padded=False)
        check_cell(cell, os.path.join(run.path, row["trace_file"]))
        out.append(Series(key(row["optimizer"]), cell, int(row["dim"]), row.get("run_s"),
                          float(row.get("success_rate") or 0.0)))
    return out


# -- convergence -------------------------------------------------------------------------------------

def _work_grid(w: np.ndarray, nit: np.ndarray, max_points: int = 600) -> np.ndarray:
    vals = w[metrics.valid_mask(nit, w.shape[1])]
    vals = np.unique(vals[np.isfinite(vals)])
    if len(vals) > max_points:
        lo = max(vals[0], 1e-12)
        vals = np.unique(np.concatenate([vals[:1], np.geomspace(lo, vals[-1], max_points), vals[-1:]]))
    return vals


def convergence_figure(problem: str, series: List[Series], styles: Dict[Any, Style],
                       weights: WorkWeights = WorkWeights(), title_extra: str = ""):
    """The three-panel convergence figure (iterations | work | time) of one problem."""
    fig, axes = plt.subplots(1, 3, figsize=(_width(15, len(series)), 4.4), sharey=True, layout="constrained")
    ylabel = "f − f*"
    starts = 0
    dims = sorted({s.dim for s in series})
    tpis = []
    values = [convergence_values(s.cell) for s in series]
    cap, capped = diverged_cap([v[:, 0] for v, _ in values]), False
    for s, (vals, ylabel) in zip(series, values):
        last = s.last
        # a start that diverged to f = +inf (the driver stops it there and repeats that value) is
        # above every cap: it is drawn at the cap like any other diverging value, not dropped from
        # the median (dropping it would draw the remaining starts' values as if all converged).
        # The driver stops a start at its first non-finite f, gradient or x (status diverged), so
        # NaN (inf − inf inside f, a NaN gradient's norm) and −inf end a diverged start just as
        # +inf does, and are drawn at the cap too: left out, three NaN starts of four made the
        # median the fourth start's value
        vals = np.where(np.isfinite(vals), vals, np.inf)[:, : last + 1]
        capped |= bool(np.any(vals > cap))
        vals = np.clip(vals, LOG_FLOOR, cap)
        starts = max(starts, vals.shape[0])
        st = styles[s.key]
        label = f"{st.label} ({s.success_rate:.0%} solved)"
        med, q25, q75 = median_band(vals)
        k = np.arange(vals.shape[1])
        # a cell whose starts all stopped at x0 has one point per panel, which a line alone does
        # not draw: mark it, or the cell is in the legend but nowhere on the axes
        dot = "o" if len(k) == 1 else None
        # iterations
        axes[0].plot(k, med, color=st.color, ls=st.linestyle, lw=1.6, marker=dot, label=label)
        axes[0].fill_between(k, q25, q75, color=st.color, alpha=0.15, lw=0)
        # work: each start has its own axis, so take the median of step functions on a common grid
        w = metrics.work(s.cell, s.dim, weights)[:, : last + 1]
        grid = _work_grid(w, np.minimum(s.nit, last))
        if len(grid):
            res = metrics.resample_steps(w, vals, grid, np.minimum(s.nit, last))
            wm, w25, w75 = median_band(res)
            axes[1].plot(grid, wm, color=st.color, ls=st.linestyle, lw=1.6, drawstyle="steps-post",
                         marker="o" if len(grid) == 1 else None)
            axes[1].fill_between(grid, w25, w75, color=st.color, alpha=0.15, lw=0, step="post")
        # wall time: k × (run time / iterations the batch ran)
        # (from iteration 1: time 0 has no place on a log axis)
        tpi = s.time_per_iteration
        if np.isfinite(tpi) and tpi > 0 and len(k) > 1:
            tpis.append(tpi)
            axes[2].plot(k[1:] * tpi, med[1:], color=st.color, ls=st.linestyle, lw=1.6)
            axes[2].fill_between(k[1:] * tpi, q25[1:], q75[1:], color=st.color, alpha=0.15, lw=0)
    for ax in axes:
        _log_axis(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
        if capped:
            ax.axhline(cap, color="0.45", lw=0.8, ls=":")
    if capped:
        axes[0].annotate(f"diverging: drawn at {_decade_label(cap) or f'{cap:.0e}'} ({DIVERGED_DECADES} decades above "
                         f"the worst start)", (0.01, 0.99), xycoords="axes fraction", va="top", fontsize=7,
                         color="0.3")
    _log_axis(axes[0].xaxis, "symlog", linthresh=1, linscale=0.4)
    axes[0].set_xlim(left=0)
    axes[0].set_xlabel("iteration")
    _log_axis(axes[1].xaxis)
    n_txt = f"n = {dims[0]}" if len(dims) == 1 else "n per problem"
    axes[1].set_xlabel(f"work = {weights.label()}  ({n_txt})", fontsize=8)
    if tpis:
        _log_axis(axes[2].xaxis)
    axes[2].set_xlabel("wall time [s]  (run time / iterations the batch ran; compile excluded)", fontsize=8)
    axes[0].set_ylabel(ylabel + "  (median, IQR band)")
    _legend(fig, axes[0], len(series))
    fig.suptitle(f"{problem}: convergence over {starts} starts{title_extra}", wrap=True)   # long specs, many runs
    return fig


def plot_convergence(run: Run, problem: str, out_dir: str, colors: Optional[Dict[str, tuple]] = None,
                     formats: Sequence[str] = FORMATS, weights: WorkWeights = WorkWeights(),
                     series: Optional[List[Series]] = None) -> List[str]:
    """Write ``convergence_<problem>.<fmt>`` for one problem of a run."""
    colors = colors or optimizer_colors(run.optimizers())
    series = series if series is not None else run_series(run, problem)
    styles = {s.key: Style(s.key, colors[s.key]) for s in series}
    with plt.rc_context(_RC):
        fig = convergence_figure(problem, series, styles, weights)
        return _save(fig, out_dir, "convergence_" + safe_name(problem), formats)


# -- trajectories ----------------------------------------------------------------------------------

def _problem_from_spec(spec: str):
    """Re-create a registered problem from its spec; None if it cannot be (e.g. a user's problem)."""
    try:
        import problems
        return problems.get(spec)
    except Exception:  # unregistered or changed problem: draw the paths without a contour
        return None


def contour_grid(problem, lo, hi, n: int = CONTOUR_GRID):
    """f on an n×n grid over the box [lo, hi] (X, Y, Z), or None if f cannot be evaluated there."""
    try:
        import jax
        import jax.numpy as jnp
        xs = np.linspace(lo[0], hi[0], n)
        ys = np.linspace(lo[1], hi[1], n)
        X, Y = np.meshgrid(xs, ys)
        try:   # on the host, wherever the run ran: the same values in every drawing process
            where = jax.default_device(jax.devices("cpu")[0])
        except RuntimeError:   # JAX started without its CPU backend
            where = contextlib.nullcontext()
        with where:
            pts = jnp.asarray(np.stack([X.ravel(), Y.ravel()], axis=1), jnp.float64)
            f = jax.jit(jax.vmap(lambda x, d: problem.objective(x, d), in_axes=(0, None)))
            Z = np.asarray(f(pts, problem.data), dtype=np.float64).reshape(X.shape)
    except Exception:
        return None
    return X, Y, Z


def _log_levels(Z: np.ndarray, f_star: Optional[float], n_levels: int = 24):
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        return None, None
    base = finite.min() if f_star is None else min(finite.min(), f_star)
    D = np.where(np.isfinite(Z), Z - base, np.nan)
    hi = np.nanmax(D)
    if not hi > 0:
        return None, None
    pos = D[D > 0]
    # the lowest ~0.1 % of the box shares the darkest level, so a few grid points right at a
    # minimum do not stretch the scale over decades nobody can see
    lo = max(np.percentile(pos, 0.1) if pos.size else hi * 1e-6, hi * 1e-8)
    levels = np.geomspace(lo, hi * 1.0001, n_levels)
    return np.clip(D, lo, None), levels


def _path_frame(paths: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """The axes box of a trajectory panel with no problem box to use (an unregistered problem):
    the drawn paths' starts, and the ends that lie within one span of the starts' box of it.

    Framing every end, as this did, let one diverging start (x = 1e143) stretch the axes so far
    that every path collapsed into one point; such ends are left off the frame (and counted in
    the panel)."""
    starts = np.array([p[0] for p in paths], dtype=np.float64).reshape(-1, 2)
    starts = starts[np.all(np.isfinite(starts), axis=1)]
    if not len(starts):
        return np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    lo, hi = starts.min(axis=0), starts.max(axis=0)
    span = np.maximum(hi - lo, 1.0)
    ends = np.array([p[-1] for p in paths], dtype=np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        near = ends[np.all(np.isfinite(ends) & (ends >= lo - span) & (ends <= hi + span), axis=1)]
    if len(near):
        lo, hi = np.minimum(lo, near.min(axis=0)), np.maximum(hi, near.max(axis=0))
    pad = np.maximum(0.1 * (hi - lo), 0.5)
    return lo - pad, hi + pad


def trajectory_figure(problem_spec: str, series: List[Series], styles: Dict[Any, Style],
                      problem=None, n_paths: int = TRAJECTORY_STARTS):
    """Panels (one per optimizer, shared axes) of starts' paths over a filled log contour of f."""
    n = len(series)
    ncols = min(n, 3 if n <= 9 else 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols + 1.0, 3.9 * nrows + 0.5), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    paths = [[s.cell["trace_x"][b, : s.nit[b] + 1] for b in range(min(n_paths, s.cell["trace_x"].shape[0]))]
             for s in series]
    if problem is not None:
        lo, hi = np.asarray(problem.bounds[0], float), np.asarray(problem.bounds[1], float)
    else:
        lo, hi = _path_frame([p for ps in paths for p in ps])
    grid = contour_grid(problem, lo, hi) if problem is not None else None
    D = levels = None
    if grid is not None:
        D, levels = _log_levels(grid[2], problem.f_star)
    cs = None
    for i, s in enumerate(series):
        ax = axes[i // ncols][i % ncols]
        if D is not None:
            cs = ax.contourf(grid[0], grid[1], D, levels=levels, norm=LogNorm(levels[0], levels[-1]),
                             cmap="Greys_r", extend="both", alpha=0.9)
            cs.set_rasterized(True)
        st = styles[s.key]
        for path in paths[i]:
            ax.plot(path[:, 0], path[:, 1], "-o", color=st.color, lw=1.0, ms=2.8, mec="none")
            ax.plot(path[0, 0], path[0, 1], "s", ms=6, mfc="white", mec=st.color, mew=1.5)
            ax.plot(path[-1, 0], path[-1, 1], "D", ms=5, color=st.color, mec="black", mew=0.6)
        # a path that ends off the frame (a diverging start, a start that left the box) has no
        # visible ◆: say so, or the panel reads as if every drawn start ended where one can see
        ends = np.array([p[-1] for p in paths[i]], dtype=np.float64).reshape(-1, 2)
        with np.errstate(invalid="ignore"):
            off = int(np.sum(~np.all(np.isfinite(ends) & (ends >= lo) & (ends <= hi), axis=1)))
        if off:
            ax.text(0.01, 0.01, f"{off} of {len(ends)} ends (◆) off the frame", transform=ax.transAxes,
                    fontsize=7, color="0.1", va="bottom", ha="left", zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
        if problem is not None:
            for m in problem.known_minimisers():
                ax.plot(m[0], m[1], "*", ms=13, mfc="gold", mec="black", mew=0.8, zorder=5)
            for x, _ in getattr(problem, "local_minima", ()):
                x = np.asarray(x, float).reshape(-1)
                ax.plot(x[0], x[1], "o", ms=7, mfc="none", mec="gold", mew=1.4, zorder=5)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(f"{st.label}  ({s.success_rate:.0%} solved)", color=st.color)
        ax.set_aspect("auto")
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
        # the panel above an empty slot is the bottom of its column: give it the x labels
        above = axes[j // ncols - 1][j % ncols]
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel("x₁")
    for ax in axes[-1]:
        ax.set_xlabel("x₁")
    for row in axes:
        row[0].set_ylabel("x₂")
    note = ("" if D is not None else "  (no contour: problem not registered)" if problem is None
            else "  (no contour: f could not be evaluated on the box)")
    # wrapped to the figure's width: a one-panel figure is narrower than this line
    fig.suptitle(f"{problem_spec}: paths of {max(len(ps) for ps in paths)} starts "
                 f"(□ start, ◆ end, ★ known minima){note}", wrap=True)
    if cs is not None:
        fs = "" if problem.f_star is None else "*"
        cb = fig.colorbar(cs, ax=axes, shrink=min(0.9, 0.35 + 0.15 * nrows), pad=0.01,
                          label=f"f − f{fs or '_min(grid)'} (log levels)")
        e_lo, e_hi = math.ceil(math.log10(levels[0])), math.floor(math.log10(levels[-1]))
        step = max(1, (e_hi - e_lo + 1) // 8)
        cb.set_ticks([10.0 ** e for e in range(e_lo, e_hi + 1, step)])
        cb.ax.yaxis.set_major_formatter(FuncFormatter(_decade_label))
        cb.ax.minorticks_off()
    return fig


def has_2d_paths(s: Series) -> bool:
    tx = s.cell.get("trace_x")
    return tx is not None and tx.ndim == 3 and tx.shape[-1] == 2


def plot_trajectories(problem_spec: str, series: List[Series], styles: Dict[Any, Style], out_dir: str,
                      formats: Sequence[str] = FORMATS) -> List[str]:
    """Write ``trajectories_<problem>.<fmt>`` if the problem is 2-D (paths were recorded)."""
    series = [s for s in series if has_2d_paths(s)]
    if not series:
        return []
    with plt.rc_context(_RC):
        fig = trajectory_figure(problem_spec, series, styles, _problem_from_spec(problem_spec))
        return _save(fig, out_dir, "trajectories_" + safe_name(problem_spec), formats)


# -- Taylor model (trust region) ---------------------------------------------------------------------

def has_rho(s: Series) -> bool:
    """Whether the cell logged a trust-region ratio ρ at some iteration it ran."""
    rho = s.cell.get("trace_rho")
    if rho is None:
        return False
    rho = np.asarray(rho, float)
    return bool(np.any(np.isfinite(rho) & metrics.valid_mask(s.nit, rho.shape[1])))


def taylor_figure(problem: str, series: List[Series], styles: Dict[Any, Style]):
    """ρ = actual/predicted reduction (left) and the trust radius (right) against iterations."""
    fig, axes = plt.subplots(1, 2, figsize=(_width(12, len(series)), 4.2), layout="constrained")
    for s in series:
        st = styles[s.key]
        rho = np.asarray(s.cell["trace_rho"], float)[:, : s.last + 1]
        rad = np.asarray(s.cell["trace_step"], float)[:, : s.last + 1]
        mask = metrics.valid_mask(s.nit, rho.shape[1])
        rho = np.where(mask, rho, np.nan)
        # a logged 0 is no radius (Levenberg–Marquardt with Nielsen damping logs its step length,
        # 0 before the first step): left out, not drawn at LOG_FLOOR, where it read as Δ = 10⁻²⁰
        # and stretched the log axis over twenty decades
        with np.errstate(invalid="ignore"):
            rad = np.where(mask & (rad > 0), rad, np.nan)
        k = np.arange(rho.shape[1])
        kk = np.broadcast_to(k, rho.shape)
        ok = np.isfinite(rho)
        axes[0].plot(kk[ok], np.clip(rho[ok], *RHO_CLIP), ".", color=st.color, ms=2.5, alpha=0.35)
        med, _, _ = metrics.median_band(rho)
        axes[0].plot(k, np.clip(med, *RHO_CLIP), color=st.color, ls=st.linestyle, lw=1.5,
                     label=st.label)
        rm, r25, r75 = median_band(rad)
        axes[1].plot(k, rm, color=st.color, ls=st.linestyle, lw=1.5)
        axes[1].fill_between(k, r25, r75, color=st.color, alpha=0.15, lw=0)
    for y in (0.25, 0.75):
        axes[0].axhline(y, color="0.4", lw=0.8, ls="--")
    axes[0].axhline(1.0, color="0.4", lw=0.8, ls=":")
    axes[0].set_ylim(RHO_CLIP[0] - 0.05, RHO_CLIP[1] + 0.05)
    axes[0].set_ylabel(f"ρ = actual / predicted reduction (clipped to [{RHO_CLIP[0]:g}, {RHO_CLIP[1]:g}])")
    # two lines: on one, the title was wider than its panel and ran off the figure's left edge
    axes[0].set_title("Taylor-model quality: median, dots = starts\n"
                      "(dashed: radius thresholds ρ = 0.25, 0.75; dotted: exact)")
    _log_axis(axes[1].yaxis)
    axes[1].set_ylabel("Δ or ‖Dp‖ (median, IQR band)")
    # what each method logs as its step (optimizers/trust_region.py, least_squares.py): not damping
    axes[1].set_title("trust radius Δ (Levenberg–Marquardt: the bound on ‖Dp‖;\n"
                      "with Nielsen damping, the scaled step length ‖Dp‖ itself)")
    for ax in axes:
        ax.set_xlabel("iteration")
        _log_axis(ax.xaxis, "symlog", linthresh=1, linscale=0.4)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    _legend(fig, axes[0], len(series))
    fig.suptitle(f"{problem}: trust-region model", wrap=True)
    return fig


def plot_taylor(problem: str, series: List[Series], styles: Dict[Any, Style], out_dir: str,
                formats: Sequence[str] = FORMATS) -> List[str]:
    """Write ``taylor_<problem>.<fmt>`` for the cells that logged ρ; nothing if none did."""
    series = [s for s in series if has_rho(s)]
    if not series:
        return []
    with plt.rc_context(_RC):
        return _save(taylor_figure(problem, series, styles), out_dir, "taylor_" + safe_name(problem), formats)


# -- profiles ----------------------------------------------------------------------------------------

class ProfileData:
    """Per-instance costs accumulated problem by problem, so cells need not stay in memory.

    ``solvers`` are the curve keys (optimizer names, or (run, optimizer) pairs when comparing).
    A solver with no cell on a problem (e.g. a least-squares method on a general objective)
    counts as not solving that problem's instances.
    """

    def __init__(self, solvers: Sequence[Any], weights: WorkWeights = WorkWeights(),
                 taus: Sequence[float] = metrics.DATA_PROFILE_TAUS, targets: Sequence[float] = metrics.ECDF_TARGETS):
        self.solvers = list(solvers)
        self.weights = weights
        self.taus = tuple(taus)
        self.targets = tuple(targets)
        self.perf: Dict[str, List[np.ndarray]] = {m: [] for m in metrics.MEASURES}
        self.data: Dict[float, List[np.ndarray]] = {t: [] for t in self.taus}
        self.dims: List[np.ndarray] = []
        self.ecdf: Dict[Any, List[np.ndarray]] = {s: [] for s in self.solvers}
        self.max_budget: Dict[Any, float] = {s: 0.0 for s in self.solvers}
        self.problems = 0

    @property
    def instances(self) -> int:
        return int(sum(len(d) for d in self.dims))

    def add_problem(self, series: List[Series]) -> None:
        """Add one problem's cells (one per solver at most)."""
        if not series:
            return
        self.problems += 1
        b = max(s.cell["trace_f"].shape[0] for s in series)
        dim = series[0].dim
        col = {k: j for j, k in enumerate(self.solvers)}
        for m in metrics.MEASURES:
            block = np.full((b, len(self.solvers)), np.inf)
            for s in series:
                c = metrics.success_costs(s.cell, m, s.dim, self.weights, s.run_s)
                # one unit is the least a solve can cost, so ratios stay finite when a start is solved at x0
                # (for time, one iteration's; a recorded run time of 0, below the clock's
                # resolution, counts as one tick, TIME_FLOOR_S, since a zero cost has no ratio;
                # an unknown time, NaN, stays unknown)
                unit = 1.0
                if m == "time":
                    tpi = s.time_per_iteration
                    unit = TIME_FLOOR_S if tpi < TIME_FLOOR_S else tpi
                block[: len(c), col[s.key]] = np.maximum(c, unit)
            self.perf[m].append(block)
        f_low = metrics.best_values([s.cell["trace_f"] for s in series], [s.nit for s in series])
        for tau in self.taus:
            block = np.full((b, len(self.solvers)), np.inf)
            for s in series:
                bs = s.cell["trace_f"].shape[0]
                idx = metrics.data_profile_test(s.cell["trace_f"], f_low[:bs], tau, s.nit)
                block[:bs, col[s.key]] = metrics.cost_at(metrics.work(s.cell, s.dim, self.weights), idx)
            self.data[tau].append(block)
        self.dims.append(np.full(b, dim))
        for s in series:
            rt = metrics.ecdf_runtimes(s.cell, s.dim, self.targets, self.weights)
            missing = b - rt.shape[0]
            if missing:
                rt = np.vstack([rt, np.full((missing, rt.shape[1]), np.inf)])
            self.ecdf[s.key].append(rt.reshape(-1))
            spent = metrics.cost_at(metrics.work(s.cell, s.dim, self.weights) / s.dim, s.nit)
            self.max_budget[s.key] = max(self.max_budget[s.key], float(np.max(spent[np.isfinite(spent)], initial=0)))
        for key in self.solvers:  # solvers absent on this problem reach no target
            if key not in {s.key for s in series}:
                self.ecdf[key].append(np.full(b * len(self.targets), np.inf))

    def perf_costs(self, measure: str) -> np.ndarray:
        return np.vstack(self.perf[measure]) if self.perf[measure] else np.zeros((0, len(self.solvers)))

    def data_costs(self, tau: float) -> np.ndarray:
        return np.vstack(self.data[tau]) if self.data[tau] else np.zeros((0, len(self.solvers)))

    def all_dims(self) -> np.ndarray:
        return np.concatenate(self.dims) if self.dims else np.zeros(0)


_MEASURE_TITLE = {"iterations": "iterations", "work": "work (weighted evaluations)", "time": "wall time"}


def performance_figure(pd: ProfileData, styles: Dict[Any, Style]):
    """Dolan–Moré performance profiles on iterations, work and time, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(_width(15, len(pd.solvers)), 4.2), sharey=True, layout="constrained")
    for ax, m in zip(axes, metrics.MEASURES):
        costs = pd.perf_costs(m)
        ratios = metrics.performance_ratios(costs) if costs.size else costs
        finite = ratios[np.isfinite(ratios)] if costs.size else np.zeros(0)
        tmax = max(2.0, float(finite.max()) * 1.25 if finite.size else 2.0)
        taus, rho = metrics.performance_profile(costs)
        taus = np.concatenate([taus, [tmax]])
        rho = np.vstack([rho, rho[-1:]]) if rho.size else np.zeros((len(taus), len(pd.solvers)))
        for j, key in enumerate(pd.solvers):
            st = styles[key]
            ax.plot(taus, rho[:, j], drawstyle="steps-post", color=st.color, ls=st.linestyle, lw=1.6, label=st.label)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(1, tmax)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("τ  (within a factor τ of the best)")
        ax.set_title(f"on {_MEASURE_TITLE[m]}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("fraction of (problem, start) pairs solved")
    _legend(fig, axes[0], len(pd.solvers), "lower right")
    fig.suptitle(f"Performance profiles (Dolan & Moré 2002): {pd.instances} (problem, start) pairs from "
                 f"{pd.problems} problems; solved = driver's success test; work = {pd.weights.label()}")
    return fig


def data_figure(pd: ProfileData, styles: Dict[Any, Style]):
    """Moré–Wild data profiles, one panel per tolerance τ."""
    n = len(pd.taus)
    ncols = 2 if n > 1 else 1
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(_width(6.4 * ncols, len(pd.solvers)), 3.9 * nrows), squeeze=False,
                             sharey=True, layout="constrained")
    dims = pd.all_dims()
    for i, tau in enumerate(pd.taus):
        ax = axes[i // ncols][i % ncols]
        costs = pd.data_costs(tau)
        kap = costs / (dims[:, None] + 1.0) if costs.size else costs
        finite = kap[np.isfinite(kap)] if costs.size else np.zeros(0)
        if finite.size:
            lo, hi = max(float(finite.min()) / 1.5, 1e-3), float(finite.max()) * 1.5
            grid = np.unique(np.concatenate([[lo], finite, [hi]]))
            prof = metrics.data_profile(costs, dims, grid)
            for j, key in enumerate(pd.solvers):
                st = styles[key]
                ax.plot(grid, prof[:, j], drawstyle="steps-post", color=st.color, ls=st.linestyle, lw=1.6,
                        label=st.label)
            _log_axis(ax.xaxis)
            ax.set_xlim(lo, hi)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"τ = {tau:g}")
        ax.set_xlabel("κ = work / (n + 1)")
        ax.grid(True, alpha=0.3)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    for row in axes:
        row[0].set_ylabel("fraction of (problem, start) pairs")
    _legend(fig, axes[0][0], len(pd.solvers), "lower right")
    fig.suptitle("Data profiles (Moré & Wild 2009): solved when f(x₀) − f(x) ≥ (1 − τ)(f(x₀) − f_L), "
                 f"f_L = best f any optimizer reached;\nwork = {pd.weights.label()}")
    return fig


def ecdf_figure(pd: ProfileData, styles: Dict[Any, Style]):
    """Runtime ECDF over all (problem, start, target) triples against work / n (COCO style)."""
    fig, ax = plt.subplots(figsize=(_width(7.5, len(pd.solvers)), 4.6), layout="constrained")
    all_rt = [np.concatenate(v) for v in pd.ecdf.values() if v]
    finite = np.concatenate([r[np.isfinite(r)] for r in all_rt]) if all_rt else np.zeros(0)
    if finite.size:
        lo = max(float(finite.min()) / 1.5, 1e-3)
        hi = max(max(pd.max_budget.values(), default=0.0), float(finite.max())) * 1.5
        for key in pd.solvers:
            if not pd.ecdf[key]:
                continue
            rt = np.concatenate(pd.ecdf[key])
            st = styles[key]
            fin = np.sort(rt[np.isfinite(rt)])
            grid = np.unique(np.concatenate([[lo], fin, [pd.max_budget[key] or lo, hi]]))
            y = metrics.runtime_ecdf(rt, grid)
            ax.plot(grid, y, drawstyle="steps-post", color=st.color, ls=st.linestyle, lw=1.6, label=st.label)
            b = pd.max_budget[key]
            if b > 0:
                ax.plot([b], [metrics.runtime_ecdf(rt, [b])[0]], "x", color=st.color, ms=9, mew=2)
        _log_axis(ax.xaxis)
        ax.set_xlim(lo, hi)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"work / n   (work = {pd.weights.label()})", fontsize=8)
    ax.set_ylabel("fraction of (problem, start, target) triples")
    tg = pd.targets
    ax.set_title(f"Runtime ECDF (COCO style): targets f − f* ∈ {{{tg[0]:.0e} … {tg[-1]:.0e}}} "
                 f"(‖∇f‖ where f* is unknown)\n{pd.instances} (problem, start) pairs; × = largest budget used",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    _legend(fig, ax, len(pd.solvers))
    return fig


def plot_profiles(pd: ProfileData, styles: Dict[Any, Style], out_dir: str,
                  formats: Sequence[str] = FORMATS) -> List[str]:
    """Write ``profile_performance``, ``profile_data`` and ``ecdf`` figures."""
    paths = []
    with plt.rc_context(_RC):
        paths += _save(performance_figure(pd, styles), out_dir, "profile_performance", formats)
        paths += _save(data_figure(pd, styles), out_dir, "profile_data", formats)
        paths += _save(ecdf_figure(pd, styles), out_dir, "ecdf", formats)
    return paths


# -- whole runs --------------------------------------------------------------------------------------

@dataclasses.dataclass
class FigureIndex:
    """Which files a plotting pass wrote: run-wide profiles and, per problem, its figures."""

    profiles: List[str] = dataclasses.field(default_factory=list)
    problems: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    #: the figures' bytes by name when they were drawn into a :class:`FigureMemory`, not files
    memory: Optional[FigureMemory] = None
    #: why there are no profiles, when they were left out on purpose (compared runs' starts differ)
    profiles_note: str = ""

    def all(self) -> List[str]:
        return self.profiles + [p for v in self.problems.values() for p in v]

    def read(self, path: str) -> bytes:
        """The bytes of one figure of this index, from memory or from its file."""
        if self.memory is not None:
            return self.memory[path]
        with open(path, "rb") as fh:
            return fh.read()


#: the environment variable that sets how many processes draw a run's figures (1: this one alone)
PLOT_JOBS_ENV = "OPTBENCH_PLOT_JOBS"
#: by default a run of at least this many problems is drawn by several processes (one per CPU,
#: at most :data:`PLOT_JOBS_MAX`): each new process takes 2–3 s to import JAX and matplotlib, which
#: a few problems' figures do not repay
PLOT_PARALLEL_MIN_PROBLEMS = 4
PLOT_JOBS_MAX = 8


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plot_jobs(n_problems: int) -> int:
    """Processes to draw ``n_problems`` problems' figures with: ``$OPTBENCH_PLOT_JOBS`` if set,
    else one per CPU for runs of :data:`PLOT_PARALLEL_MIN_PROBLEMS` problems or more; never more
    than the problems."""
    raw = os.environ.get(PLOT_JOBS_ENV, "").strip()
    if raw:
        try:
            jobs = int(raw)
            if jobs < 1:
                raise ValueError
        except ValueError:
            raise OptbenchError(f"${PLOT_JOBS_ENV} must be a whole number of processes, 1 or more; got {raw!r}") from None
    elif n_problems < PLOT_PARALLEL_MIN_PROBLEMS:
        jobs = 1
    else:
        jobs = min(_cpus(), PLOT_JOBS_MAX)
    return max(1, min(jobs, n_problems))


def _fresh_process_plugins(specs: Sequence[str]) -> Optional[List[str]]:
    """The plug-in files a new process must load to re-create every problem of ``specs`` as this
    process does (for its contour), or None where one cannot be: a problem registered from Python
    rather than by optbench or a plug-in file, or registered again since."""
    from . import plugins
    from .solve import _OWN_MODULES, registered_factory
    from problems import registry as preg
    loaded = {m.__name__: path for path, m in plugins._LOADED.items()}
    need = []
    for spec in specs:
        problem = _problem_from_spec(spec)
        if problem is None:
            continue   # the new process cannot re-create it either: paths without a contour
        factory = registered_factory(problem, preg)
        if factory is None:
            return None
        # where its code lives: the factory (a Problem registered as an instance has optbench's
        # own wrapper for one) and its functions
        for fn in (factory, problem.f, problem.residuals):
            if fn is None:
                continue
            module = getattr(getattr(fn, "func", fn), "__module__", None) or ""
            if module.partition(".")[0] in _OWN_MODULES:
                continue
            if module not in loaded:
                return None
            need.append(loaded[module])
    return list(dict.fromkeys(need))


def _draw_problem(run: Run, problem: str, colors, formats, weights, out, series=None) -> List[str]:
    """One problem's figures (convergence, trajectories, Taylor model) into ``out``."""
    styles = {o: Style(o, colors[o]) for o in run.optimizers()}
    series = series if series is not None else run_series(run, problem)
    paths = plot_convergence(run, problem, out, colors, formats, weights, series=series)
    paths += plot_trajectories(problem, series, styles, out, formats)
    paths += plot_taylor(problem, series, styles, out, formats)
    return paths


def _worker_start() -> None:
    # a new drawing process evaluates contours on the host: a GPU stays the run's alone. JAX is
    # imported already (the process re-imports the command's modules), so JAX_PLATFORMS would be
    # read too late; no backend is started yet, so its config still applies
    import jax
    jax.config.update("jax_platforms", "cpu")
    # and ends with the command: a command killed outright (SIGTERM to `optbench plot`, SIGKILL)
    # leaves its pool's processes running on, drawing the figures already queued into plots/
    import threading
    import time
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)
    threading.Thread(target=watch, name="optbench-parent-watch", daemon=True).start()


def _drawing_platforms() -> Optional[str]:
    """The platforms JAX may start in this process (in a drawing process: "cpu")."""
    import jax
    return jax.config.jax_platforms


def _elsewhere(plugin_files, out, draw: Callable[[Any], List[str]]):
    """What a drawing process returns (see :func:`_in_processes`): ``draw(destination)`` after
    loading the run's plug-in files, into ``out`` or, where it is None, into memory, whose bytes
    go back with the paths."""
    from . import plugins
    plugins.load_plugins(plugin_files)
    mem = FigureMemory() if out is None else None
    paths = draw(out if mem is None else mem)
    return paths, (dict(mem) if mem is not None else None)


def _draw_problem_elsewhere(run_path: str, problem: str, colors, formats, weights, out, plugin_files):
    """:func:`_draw_problem` in a new process."""
    return _elsewhere(plugin_files, out, lambda dest: _draw_problem(store.load_run(run_path), problem, colors,
                                                                    formats, weights, dest))


def _in_processes(jobs: int, calls, out, meanwhile: Callable[[], None]) -> List[List[str]]:
    """Each (function, args) of ``calls`` in one of ``jobs`` new processes, while ``meanwhile()``
    runs in this one; the paths each call drew, in order. Each function returns (paths, figure
    bytes by name or None); the bytes go into ``out`` where it is a :class:`FigureMemory`."""
    import concurrent.futures
    import concurrent.futures.process
    import multiprocessing

    from . import interrupt
    if not isinstance(out, FigureMemory):
        prepare_dir(out)   # one line naming it, before any process starts drawing

    def collect(results) -> List[List[str]]:
        drawn = []
        for paths, figures in results:
            if isinstance(out, FigureMemory):
                out.update(figures)
            drawn.append(paths)
        return drawn
    # SIGTERM too becomes an exception here (as Ctrl-C is), so the pool is taken down in order: a
    # command killed outright left multiprocessing's warnings about its leaked semaphores
    with interrupt.Guard():
        try:
            # "spawn": a forked copy of this process would inherit JAX's threads mid-flight
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_start,
                                                          mp_context=multiprocessing.get_context("spawn"))
        except (OSError, ImportError, NotImplementedError):
            # no working semaphores here (a container without /dev/shm): draw in this process
            meanwhile()
            return collect(fn(*args) for fn, args in calls)
        try:
            futures = [pool.submit(fn, *args) for fn, args in calls]
            meanwhile()
            return collect(fut.result() for fut in futures)
        except BaseException as exc:
            # an error, Ctrl-C or SIGTERM: stop the drawing processes now rather than after the
            # figures they have begun (ProcessPoolExecutor has no public way before Python 3.14)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            if isinstance(exc, concurrent.futures.process.BrokenProcessPool):
                raise OptbenchError(f"a process drawing figures ended without finishing (killed, or out of "
                                    f"memory?); draw in one process with {PLOT_JOBS_ENV}=1") from None
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def plot_run_index(run: Run, formats: Sequence[str] = FORMATS, weights: WorkWeights = WorkWeights(),
                   out_dir=None) -> FigureIndex:
    """Draw every figure of a run under ``<run>/plots/`` (or ``out_dir``, a directory or a
    :class:`FigureMemory`) and say which is which.

    The problems' figures are drawn by :func:`plot_jobs` processes at once (the profiles in this
    one meanwhile); the figures are the same bytes as drawn here alone."""
    out = out_dir if out_dir is not None else os.path.join(run.path, "plots")
    colors = optimizer_colors(run.optimizers())
    styles = {o: Style(o, colors[o]) for o in run.optimizers()}
    memory = out if isinstance(out, FigureMemory) else None
    idx = FigureIndex(memory=memory)
    pd = ProfileData(run.optimizers(), weights)
    problems_ = run.problems()
    jobs = plot_jobs(len(problems_))
    plugin_files = _fresh_process_plugins(problems_) if jobs > 1 else None
    if plugin_files is None:
        for p in problems_:
            series = run_series(run, p)
            idx.problems[p] = _draw_problem(run, p, colors, formats, weights, out, series)
            pd.add_problem(series)
        if run.summary:
            idx.profiles = plot_profiles(pd, styles, out, formats)
    else:
        def meanwhile():
            # the profiles need every cell: this process draws them while the others draw the rest
            for p in problems_:
                pd.add_problem(run_series(run, p))
            if run.summary:
                idx.profiles = plot_profiles(pd, styles, out, formats)
        calls = [(_draw_problem_elsewhere, (run.path, p, colors, tuple(formats), weights,
                                            None if memory is not None else out, plugin_files)) for p in problems_]
        for p, paths in zip(problems_, _in_processes(jobs, calls, out, meanwhile)):
            idx.problems[p] = paths
    return idx


def plot_run(run: Run, formats: Sequence[str] = FORMATS, weights: WorkWeights = WorkWeights()) -> List[str]:
    """Every figure of a run, under ``<run>/plots/``; returns the paths written."""
    return plot_run_index(run, formats, weights).all()


def run_labels(runs: Sequence[Run]) -> List[str]:
    """Short distinct labels for runs: the directory name (with its parent where names clash),
    plus the backend / device / dtype where those differ between the runs (CPU vs GPU, float32
    vs float64 is what a comparison is usually about)."""
    base = [os.path.basename(os.path.normpath(r.path)) for r in runs]
    if len(set(base)) != len(base):
        two = [os.path.join(*os.path.normpath(r.path).split(os.sep)[-2:]) for r in runs]
        base = two if len(set(two)) == len(two) else [f"{i + 1}:{b}" for i, b in enumerate(base)]
    keys = [k for k in ("backend", "device_kind", "dtype") if len({str(r.meta.get(k, "")) for r in runs}) > 1]
    if keys:
        base = [f"{b} ({' '.join(str(r.meta.get(k, '?')) for k in keys)})" for b, r in zip(base, runs)]
    return base


def _compare_series(runs: Sequence[Run], labels: Sequence[str], problem: str):
    """The series of ``problem`` in every run that has it, keyed (label, optimizer), and each such
    run's starts."""
    series, starts = [], []
    for run, lab in zip(runs, labels):
        if problem in run.problems():
            mine = run_series(run, problem, key=lambda o, lab=lab: (lab, o))
            starts.append((lab, mine[0].cell.get("x0", np.empty((0, 0)))))
            series += mine
    return series, starts


def _compare_draw(problem: str, series, styles, weights, extra: str, out, formats) -> List[str]:
    with plt.rc_context(_RC):
        paths = _save(convergence_figure(problem, series, styles, weights, extra), out,
                      "convergence_" + safe_name(problem), formats)
    paths += plot_trajectories(problem, series, styles, out, formats)
    paths += plot_taylor(problem, series, styles, out, formats)
    return paths


def _compare_problem_elsewhere(run_paths, labels, problem, styles, weights, extra, out, formats, plugin_files):
    """One problem's comparison figures in a new process."""
    def draw(dest):
        series, _ = _compare_series([store.load_run(p) for p in run_paths], labels, problem)
        return _compare_draw(problem, series, styles, weights, extra, dest, formats)
    return _elsewhere(plugin_files, out, draw)


def plot_compare(runs: Sequence[Run], out_dir: str, formats: Sequence[str] = FORMATS,
                 weights: WorkWeights = WorkWeights(), labels: Optional[Sequence[str]] = None) -> FigureIndex:
    """Overlay several runs: colour = optimizer, line style = run; profiles treat each
    (run, optimizer) as a solver over the shared (problem, start) pairs."""
    labels = list(labels or run_labels(runs))
    opts = list(dict.fromkeys(o for r in runs for o in r.optimizers()))
    colors = optimizer_colors(opts)
    styles = {}
    for i, (run, lab) in enumerate(zip(runs, labels)):
        for o in run.optimizers():
            styles[(lab, o)] = Style(f"{o} [{lab}]", colors[o], RUN_LINESTYLES[i % len(RUN_LINESTYLES)])
    solvers = [(lab, o) for run, lab in zip(runs, labels) for o in run.optimizers()]
    problems_all = list(dict.fromkeys(p for r in runs for p in r.problems()))
    idx = FigureIndex()
    pd = ProfileData(solvers, weights)
    starts: Dict[str, List[Tuple[str, np.ndarray]]] = {}   # per problem, each run's x0s
    extra = "  (line style: " + ", ".join(f"{RUN_LINESTYLES[i % 4]} {lab}" for i, lab in enumerate(labels)) + ")"
    jobs = plot_jobs(len(problems_all))
    plugin_files = _fresh_process_plugins(problems_all) if jobs > 1 else None

    def profiles():
        idx.profiles_note = starts_mismatch(starts, labels)
        if problems_all and not idx.profiles_note:
            idx.profiles = plot_profiles(pd, styles, out_dir, formats)

    if plugin_files is None:
        for p in problems_all:
            series, starts[p] = _compare_series(runs, labels, p)
            idx.problems[p] = _compare_draw(p, series, styles, weights, extra, out_dir, formats)
            pd.add_problem(series)
        profiles()
    else:
        def meanwhile():
            for p in problems_all:
                series, starts[p] = _compare_series(runs, labels, p)
                pd.add_problem(series)
            profiles()
        dest = None if isinstance(out_dir, FigureMemory) else out_dir
        calls = [(_compare_problem_elsewhere, ([r.path for r in runs], labels, p, styles, weights, extra, dest,
                                               tuple(formats), plugin_files)) for p in problems_all]
        for p, paths in zip(problems_all, _in_processes(jobs, calls, out_dir, meanwhile)):
            idx.problems[p] = paths
    return idx


def starts_mismatch(starts: Dict[str, List[Tuple[str, np.ndarray]]], labels: Sequence[str]) -> str:
    """Why the runs' profiles cannot be compared ("" when they can), from each problem's starts
    in each run that holds it (``starts[problem]``: (run label, x0s) pairs; within a run every
    optimizer has the same starts). A profile's instance is a (problem, start) pair, so every run
    must hold every problem from the same starts — the same number, at the same points (to
    float32 rounding: a float32 run stores its starts rounded). Runs made with other seeds or
    start counts would otherwise be scored instance by instance against unrelated points, and a
    run lacking a problem as failing it."""
    for p, held in starts.items():
        lab0, x00 = held[0][0], np.asarray(held[0][1], dtype=np.float64)
        for lab, x0 in held[1:]:
            x0 = np.asarray(x0, dtype=np.float64)
            if x0.shape != x00.shape:
                return (f"{p}: {lab} has {x0.shape[0] if x0.ndim else 0} start(s), {lab0} "
                        f"{x00.shape[0] if x00.ndim else 0}")
            if not np.allclose(x0, x00, rtol=2.0 ** -22, atol=1e-30):
                return f"{p}: {lab} ran from other starts than {lab0} (another seed?)"
    for lab in labels:
        lacking = [p for p, held in starts.items() if lab not in {h[0] for h in held}]
        if lacking:
            return f"{lab} lacks problem(s) {', '.join(lacking)}"
    return ""
