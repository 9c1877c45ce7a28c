"""``optbench check RUN_DIR --baseline FILE``: compare a run with a baseline; exit 1 on a regression.

Exit codes: 0 nothing regressed, 1 a regression (or a baseline cell missing from the run),
2 bad input (missing or corrupt file, unknown schema version, a baseline made with other
settings). See :mod:`bench.check` for the metrics and rules.
"""
from __future__ import annotations

import os

from optbench_core import OptbenchError

from . import check, store

NAME = "check"
HELP = "compare a run with a baseline: exit 0 ok, 1 regression, 2 bad input"


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run directory")
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline file (optbench baseline)")
    p.add_argument("--tolerance", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tolerance (repeatable, or comma-separated): success=0 (drop in success rate), "
                        "nit=0.1 or 10%% (rise in iterations), evals=0.1 (rise in evaluation counts), "
                        "subopt=1 (decades of f-f*), failed=0 (rise in starts ending max_iter or diverged), "
                        "time=1.5 (slowdown factor; turns the time check on), "
                        "or a single metric such as nit_p90=0.2")
    p.add_argument("--time", action="store_true",
                   help="also check run time: a slowdown beyond the factor that a Mann-Whitney U test over the "
                        "repeats finds significant")
    p.add_argument("--exact", action="store_true",
                   help="any change of a convergence metric or of the status counts, better or worse, fails: "
                        "for changes that must "
                        "move no result (refactors, speed work), on the baseline's own machine and versions")
    p.add_argument("--alpha", type=float, default=check.DEFAULT_ALPHA,
                   help="significance level of the time test (default 0.05)")
    p.add_argument("--format", choices=sorted(check.FORMATTERS), default="text", help="report format (default text)")
    p.add_argument("--out", metavar="FILE", help="write the report to FILE instead of stdout (the headline is still "
                                                 "printed; a missing parent directory is created)")


def _check_out(args) -> None:
    """Refuse a --out that would replace what the check reads: a file of the run (its meta.json,
    CSVs, traces) or the baseline itself, or any other file but an earlier check report (or an
    empty file). Checked before anything is computed."""
    store.refuse_special(args.out, f"--out {args.out}")
    store.refuse_run_output(args.out, args.run_dir)
    if os.path.realpath(args.out) == os.path.realpath(args.baseline):
        raise OptbenchError(f"--out {args.out}: is the baseline file itself; writing the report there would destroy "
                            "the baseline, choose another path")
    if check.is_baseline_file(args.out):
        raise OptbenchError(f"--out {args.out}: is an optbench baseline; writing the report there would destroy "
                            "it, choose another path")
    if os.path.lexists(args.out) and not os.path.isdir(args.out) and not check.is_check_output(args.out):
        raise OptbenchError(f"--out {args.out}: exists and is not an earlier optbench check report; remove it or "
                            f"choose another file name")


def run(args) -> int:
    tol = check.parse_tolerances(args.tolerance, time=args.time, alpha=args.alpha, exact=args.exact)
    if args.out:
        _check_out(args)
    cmp = check.check(args.run_dir, args.baseline, tol)
    report = check.FORMATTERS[args.format](cmp)
    if args.out:
        # like `optbench baseline --out`: a parent directory not made yet is created
        store.write_output_text(args.out, report)
        print(cmp.headline())
        print(f"report ({args.format}): {args.out}")
    else:
        print(report, end="")
    return cmp.exit_code
