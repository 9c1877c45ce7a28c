"""``optbench run``: every selected problem × optimizer from the same starts, written cell by cell."""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time

import numpy as np

import optimizers
import problems
from optbench_core import OptbenchError

from . import plots, store
from .solve import resolve_device, solve

NAME = "run"
HELP = "run problems × optimizers and write a run directory (meta.json, CSVs, traces, plots)"

#: the default selection: small classics that together finish in about a minute on 2 CPU cores
DEFAULT_PROBLEMS = ["rosenbrock", "himmelblau", "quadratic:dim=10:cond=1000"]


def add_arguments(p):
    p.add_argument("--problems", help="comma-separated problem specs (default: a small classic set)")
    p.add_argument("--optimizers", help="comma-separated optimizer specs (default: every registered one)")
    p.add_argument("--starts", type=int, default=10, help="starts per problem: x0 plus N-1 random in the box")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--max-iter", type=int, default=1000, help="iteration budget per start")
    p.add_argument("--gtol", type=float, default=1e-8, help="stop when the gradient norm is at most this")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--device", default="cpu", help="cpu or gpu")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per cell (median reported)")
    p.add_argument("--out", help="run directory (default results/runs/<timestamp>)")
    p.add_argument("--no-plots", action="store_true", help="skip figures")
    p.add_argument("--quiet", action="store_true", help="print only the run directory")


def _split(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else []


def default_optimizers():
    return [n for n in optimizers.names() if not n.endswith(":")]


def build_plan(args):
    """Resolve and validate everything before any file is written."""
    if args.starts < 1:
        raise OptbenchError(f"--starts must be at least 1, got {args.starts}")
    if args.max_iter < 1:
        raise OptbenchError(f"--max-iter must be at least 1, got {args.max_iter}")
    if not (np.isfinite(args.gtol) and args.gtol >= 0):
        raise OptbenchError(f"--gtol must be a finite number >= 0, got {args.gtol}")
    if args.repeats < 1:
        raise OptbenchError(f"--repeats must be at least 1, got {args.repeats}")
    pspecs = _split(args.problems) or [s for s in DEFAULT_PROBLEMS if s.split(":")[0] in problems.names()]
    ospecs = _split(args.optimizers) or default_optimizers()
    if not pspecs:
        raise OptbenchError("no problems selected")
    if not ospecs:
        raise OptbenchError("no optimizers selected")
    probs = [problems.get(s) for s in pspecs]
    opts = [optimizers.get(s) for s in ospecs]
    for p in probs:
        p.check()
    device = resolve_device(args.device)
    cells = [(p, o) for p in probs for o in opts if not (o.needs_residuals and not p.has_residuals)]
    if not cells:
        raise OptbenchError("no problem × optimizer pair fits (least-squares optimizers need residual problems)")
    return probs, opts, cells, device


def format_table(rows) -> str:
    """The summary as an aligned text table."""
    cols = [("problem", "problem", "{}"), ("optimizer", "optimizer", "{}"), ("solved", "success_rate", "{:.0%}"),
            ("nit", "nit_median", "{:g}"), ("nfev", "nfev_median", "{:g}"), ("njev", "njev_median", "{:g}"),
            ("nhev", "nhev_median", "{:g}"), ("nhvp", "nhvp_median", "{:g}"), ("f-f*", "subopt_median", "{:.2e}"),
            ("compile_s", "compile_s", "{:.2f}"), ("run_ms", "run_s", "{}")]
    table = [[c[0] for c in cols]]
    for r in rows:
        line = []
        for _, key, fmt in cols:
            v = r.get(key)
            if key == "run_s":
                line.append(f"{1e3 * v:.2f}")
            elif v is None:
                line.append("-")
            else:
                line.append(fmt.format(v))
        table.append(line)
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    out = []
    for j, t in enumerate(table):
        out.append("  ".join(s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in enumerate(zip(t, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(args) -> int:
    probs, opts, cells, device = build_plan(args)
    path = args.out or store.default_run_dir()
    config = {"problems": [p.spec for p in probs], "optimizers": [o.spec for o in opts], "starts": args.starts,
              "seed": args.seed, "max_iter": args.max_iter, "gtol": args.gtol, "dtype": args.dtype,
              "device": args.device, "repeats": args.repeats}
    meta = {"command": store.command_line(), "argv": sys.argv[1:],
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config, **store.provenance(args.dtype, device)}
    writer = store.RunWriter(path, meta)
    t0 = time.perf_counter()
    try:
        for i, (p, o) in enumerate(cells, 1):
            if not args.quiet and sys.stderr.isatty():
                print(f"\r[{i}/{len(cells)}] {p.spec} × {o.spec}".ljust(70), end="", file=sys.stderr, flush=True)
            x0s = p.random_starts(args.starts, args.seed)
            res = solve(p, o, x0s, max_iter=args.max_iter, gtol=args.gtol, dtype=args.dtype,
                        repeats=args.repeats, device=args.device)
            writer.add_cell(res, p.dim)
        if not args.quiet and sys.stderr.isatty():
            print(file=sys.stderr)
        if not args.no_plots:
            plots.plot_run(store.load_run(path))
        writer.finish(wall_s=time.perf_counter() - t0)
    finally:
        writer.release()
    if not args.quiet:
        print(format_table(writer.summary))
        print()
    print(f"run directory: {path}")
    return 0
