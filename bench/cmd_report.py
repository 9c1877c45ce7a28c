"""``optbench report RUN_DIR [--out FILE]``: one self-contained HTML page for a run."""
from __future__ import annotations

import os

from optbench_core import OptbenchError

from . import store
from .cmd_plot import add_plugin_argument, add_weights_argument, load_plugin_args
from .metrics import WorkWeights

NAME = "report"
HELP = "write a self-contained HTML report of a run (figures embedded; default RUN_DIR/report.html)"


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by optbench run")
    p.add_argument("--out", metavar="FILE", help="where to write the HTML (default RUN_DIR/report.html)")
    add_weights_argument(p)
    add_plugin_argument(p)


def run(args) -> int:
    # imported here, not at the top: plots brings in matplotlib (about half a second), which the
    # other commands, which all load this module to build the command line, do not need
    from . import report
    weights = WorkWeights.parse(args.work_weights)
    load_plugin_args(args)
    if args.out and os.path.isdir(args.out):
        raise OptbenchError(f"--out {args.out} is a directory; give a file name such as report.html")
    r = store.load_run(args.run_dir)
    if args.out:   # never onto the run's own data (--out RUN/summary.csv destroyed the run)
        store.refuse_run_output(args.out, args.run_dir)
    # an unwritable destination fails here, before a second of drawing
    path = report.report_path(r, args.out)
    # no figures given: the PNGs it embeds are drawn afresh in memory, so the run directory is
    # only read (it may be read-only, and its plots/ are ``optbench plot``'s to redraw)
    path = report.write_report(r, out=path, weights=weights)
    print(f"report: {path}")
    return 0
