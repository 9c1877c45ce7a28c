"""Figures from stored traces (never from a live solve), so ``optbench plot`` can redraw any run.

Convergence per problem: f − f* (or ‖∇f‖ where f* is unknown) against iterations, the median
across starts as a line and the interquartile range as a band, log scale, one colour per
optimizer (the same colour for an optimizer in every figure of a run).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .store import Run  # noqa: E402

#: plotted values are floored here so exact zeros stay on a log axis
LOG_FLOOR = 1e-20


def optimizer_colors(names: List[str]) -> Dict[str, tuple]:
    """A fixed colour per optimizer, by its order in the run (tab10, then tab20)."""
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def convergence_values(cell: Dict[str, np.ndarray]) -> (np.ndarray, str):
    """The (B, T) series a convergence plot shows: f − f* if f* is known, else ‖∇f‖."""
    f_star = float(cell["f_star"])
    if np.isfinite(f_star):
        return cell["trace_f"] - f_star, "f − f*"
    return cell["trace_grad_norm"], "‖∇f‖"


def median_band(values: np.ndarray) -> (np.ndarray, np.ndarray, np.ndarray):
    """Median and interquartile range across starts (axis 0), ignoring NaN; floored for log axes."""
    v = np.where(np.isfinite(values), values, np.nan)
    v = np.maximum(v, LOG_FLOOR)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q25, med, q75 = np.nanpercentile(v, [25, 50, 75], axis=0)
    return med, q25, q75


def plot_convergence(run: Run, problem: str, out_dir: str, colors: Optional[Dict[str, tuple]] = None,
                     formats=("png",)) -> List[str]:
    """Write ``convergence_<problem>.<fmt>``: one median line + IQR band per optimizer."""
    colors = colors or optimizer_colors(run.optimizers())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ylabel = "f − f*"
    for row in run.summary:
        if row["problem"] != problem:
            continue
        cell = run.cell(problem, row["optimizer"])
        vals, ylabel = convergence_values(cell)
        nit_max = int(np.max(cell["nit"])) if cell["nit"].size else 0
        vals = vals[:, : nit_max + 1]
        med, q25, q75 = median_band(vals)
        k = np.arange(vals.shape[1])
        c = colors.get(row["optimizer"])
        label = f"{row['optimizer']} ({row['success_rate']:.0%} solved)"
        ax.plot(k, med, color=c, lw=1.8, label=label)
        ax.fill_between(k, q25, q75, color=c, alpha=0.2, lw=0)
    ax.set_yscale("log")
    if ax.get_xlim()[1] > 200:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel + " (median, IQR band)")
    ax.set_title(f"{problem}: convergence over {row['starts'] if run.summary else 0} starts")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, "convergence_" + safe_name(problem))
    paths = []
    for fmt in formats:
        paths.append(f"{base}.{fmt}")
        fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def safe_name(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def plot_run(run: Run, formats=("png",)) -> List[str]:
    """Every figure of a run, under ``<run>/plots/``."""
    out = os.path.join(run.path, "plots")
    colors = optimizer_colors(run.optimizers())
    paths = []
    for p in run.problems():
        paths += plot_convergence(run, p, out, colors, formats)
    return paths
