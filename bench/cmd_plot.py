"""``optbench plot RUN_DIR``: redraw every figure of a run from its stored traces (no solving)."""
from __future__ import annotations

import os

from optbench_core import OptbenchError

from . import store
from .metrics import WorkWeights

NAME = "plot"
HELP = "redraw a run's figures (PNG and SVG under RUN_DIR/plots) from its stored traces"


def add_weights_argument(p):
    """The ``--work-weights`` option shared by plot, report and compare."""
    p.add_argument("--work-weights", metavar="g=1,h=2n,hvp=2",
                   help="weights of the work axis nfev + g·njev + h·nhev + hvp·nhvp; h=2n scales with the "
                        "dimension (default g=1,h=2n,hvp=2)")


def add_plugin_argument(p):
    """The ``--plugin`` option of plot, report and compare: a run of a plug-in's problem redraws
    its contours (and so its figures byte for byte) only when that problem is registered again."""
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="import a file that registers problems/optimizers first, as the run did (repeatable)")


def load_plugin_args(args) -> None:
    from . import plugins
    plugins.load_plugins(getattr(args, "plugin", None) or [])


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by optbench run")
    p.add_argument("--formats", default="png,svg", help="comma-separated figure formats: png, svg (default both)")
    add_weights_argument(p)
    add_plugin_argument(p)


def parse_formats(text: str):
    fmts = [f.strip().lower() for f in (text or "").split(",") if f.strip()]
    bad = [f for f in fmts if f not in ("png", "svg")]
    if bad or not fmts:
        raise OptbenchError(f"--formats takes png and/or svg, got {text!r}")
    return tuple(dict.fromkeys(fmts))


def run(args) -> int:
    # imported here, not at the top: plots brings in matplotlib (about half a second), which the
    # other commands, which all load this module to build the command line, do not need
    from . import plots
    formats = parse_formats(args.formats)
    weights = WorkWeights.parse(args.work_weights)
    load_plugin_args(args)
    r = store.load_run(args.run_dir)
    if not r.summary:
        raise OptbenchError(f"{args.run_dir}: the run has no finished cells to plot")
    out = os.path.join(args.run_dir, "plots")
    plots.prepare_dir(out)   # a read-only run directory: one line naming it, before any drawing
    paths = plots.plot_run(r, formats=formats, weights=weights)
    print(f"{len(paths)} figures written to {out}")
    return 0
