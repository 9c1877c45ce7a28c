"""``optbench compare RUN_A RUN_B [...]``: overlay runs in the same figures, print their differences.

The first run is the baseline; every other run's cells are set against it (success rate,
iterations, evaluations, f − f*, run time and their ratio). Figures (colour = optimizer, line
style = run) and a self-contained ``compare.html`` are written to ``--out``.
"""
from __future__ import annotations

import os

from optbench_core import OptbenchError

from . import store
from .cmd_plot import add_plugin_argument, add_weights_argument, load_plugin_args, parse_formats
from .metrics import WorkWeights

NAME = "compare"
HELP = "overlay two or more runs (e.g. CPU vs GPU, float32 vs float64) and print a table of differences"


def add_arguments(p):
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories; the first is the baseline")
    p.add_argument("--out", metavar="DIR", help="where figures and compare.html go (default results/compare/<timestamp>)")
    p.add_argument("--formats", default="png,svg", help="comma-separated figure formats: png, svg (default both)")
    add_weights_argument(p)
    add_plugin_argument(p)


def format_differences(rows) -> str:
    """The difference rows as an aligned text table."""
    from . import report
    table = [report.COMPARE_HEADER] + [report.compare_table_cells(r) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    out = []
    for j, t in enumerate(table):
        out.append("  ".join(s.ljust(w) if i < 3 else s.rjust(w) for i, (s, w) in enumerate(zip(t, widths))).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _refuse_run_figures(out: str) -> None:
    """A one-line error if ``out`` is a run directory or its ``plots/``: the comparison's figures
    have the run's own figures' names (``convergence_<problem>.png``) and replaced them silently."""
    target = os.path.realpath(out)
    parent = os.path.dirname(target)
    if os.path.isfile(os.path.join(target, "meta.json")) or (
            os.path.basename(target) == "plots" and os.path.isfile(os.path.join(parent, "meta.json"))):
        raise OptbenchError(f"--out {out}: is a run directory or its plots/, whose figures the comparison's "
                            "(same file names) would replace; choose another directory")


def run(args) -> int:
    # imported here, not at the top: plots brings in matplotlib (about half a second), which the
    # other commands, which all load this module to build the command line, do not need
    from . import plots, report
    if len(args.run_dirs) < 2:
        raise OptbenchError("compare needs at least two run directories")
    formats = parse_formats(args.formats)
    weights = WorkWeights.parse(args.work_weights)
    load_plugin_args(args)
    if args.out:
        for d in args.run_dirs:   # figures and compare.html never go into a run's data (its traces/)
            store.refuse_run_output(args.out, d)
        _refuse_run_figures(args.out)
    runs = [store.load_run(d) for d in args.run_dirs]
    for d, r in zip(args.run_dirs, runs):
        if not r.summary:
            raise OptbenchError(f"{d}: the run has no finished cells to compare")
    for r in runs:   # every trace readable before the first figure is written
        plots.check_run(r)
    labels = plots.run_labels(runs)
    out = args.out or store.default_run_dir(os.path.join("results", "compare"))
    if os.path.exists(out) and not os.path.isdir(out):
        raise OptbenchError(f"--out {out} exists and is not a directory")
    html_path = os.path.join(out, "compare.html")
    if os.path.lexists(html_path) and not report.is_report_file(html_path, report._COMPARE_TITLE):
        raise OptbenchError(f"--out {out}: its compare.html is not an earlier optbench compare page; "
                            f"remove it or choose another directory")
    plots.prepare_dir(out)   # created and writable, or one line, before any drawing
    rows = report.compare_rows(runs, labels)
    figures = plots.plot_compare(runs, out, formats, weights, labels)
    store.atomic_write_text(html_path, report.compare_html(runs, labels, rows, figures))
    print(f"baseline: {labels[0]} ({args.run_dirs[0]})")
    print(format_differences(rows))
    if figures.profiles_note:
        print(f"no performance or data profiles or ECDF: the runs' starts differ ({figures.profiles_note})")
    print()
    print(f"figures and compare.html: {out}")
    return 0
