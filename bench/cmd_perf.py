"""``optbench perf``: optbench, the hand-written floor and the installed peers, side by side."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import time

from optbench_core import OptbenchError

from . import perf, store
from .solve import XLA_OPTIONS_ENV, disable_compilation_cache, resolve_device, user_xla_options

NAME = "perf"
HELP = "time optbench against hand-written JAX kernels and scipy/optimistix/optax/jaxopt (medians, ratios)"


def add_arguments(p):
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (seconds; what the test suite runs)")
    size.add_argument("--large", action="store_true",
                      help="extended Rosenbrock n = 10⁵, 10⁶ and a 2·10⁶×50 float32 regression (minutes)")
    p.add_argument("--cases", help=f"comma-separated families to run (default all: {', '.join(perf.CASE_FAMILIES)})")
    p.add_argument("--methods", help="comma-separated methods to time, with the floors (default all: "
                   + ", ".join(perf.all_methods()) + ")")
    p.add_argument("--device", default="cpu", help="where the JAX side runs: cpu or gpu (scipy stays on the host)")
    p.add_argument("--clock", default="wall", choices=sorted(perf.CLOCKS),
                   help="time runs by wall clock, or by this process's CPU time (steadier on a shared machine)")
    p.add_argument("--repeats", type=int,
                   help="timed rounds per case, exactly (default: at least 5 — large 3 — and more, up to "
                        "41 — large 15 — until the case's rounds have taken 3 s — large 10 s; quick: exactly 2)")
    p.add_argument("--out", help="output directory (default results/perf/<UTC timestamp>)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--warm-cache", action="store_true",
                   help="let the persistent compilation cache serve compiles (default: cold compiles, so the "
                        "compile column compares like with like)")


def _default_dir():
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = os.path.join("results", "perf", stamp)
    i = 1
    while os.path.exists(path):
        i += 1
        path = os.path.join("results", "perf", f"{stamp}-{i}")
    return path


def _prepare_out(path):
    """Make ``path`` ready for perf's files before anything is timed: absent (it is created now)
    or an empty directory, and writable. A bad ``--out`` is one line at once rather than after
    minutes of timing. Returns the directories created here, deepest first, so a perf that fails
    before writing can remove them again and leave nothing behind."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OptbenchError(f"{path}: exists and is not a directory; choose another --out")
        try:
            if os.listdir(path):
                raise OptbenchError(f"{path}: exists and is not empty")
        except OSError as exc:
            raise OptbenchError(f"{path}: cannot read the output directory ({exc.strerror or exc})") from None
        created = []
    else:
        created, d = [], os.path.abspath(path)
        while d and not os.path.lexists(d):
            created.append(d)
            d = os.path.dirname(d)
    try:
        store.writable_dir(path, "perf's files")
    except OptbenchError:
        _remove_empty(created)
        raise
    return created


def _remove_empty(dirs):
    """Remove the directories :func:`_prepare_out` created, deepest first, while they are empty."""
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            return


def _clean(v):
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def run(args) -> int:
    sizes = perf.QUICK if args.quick else perf.LARGE if args.large else perf.DEFAULT
    families = tuple(s.strip() for s in args.cases.split(",") if s.strip()) if args.cases else perf.CASE_FAMILIES
    bad = [f for f in families if f not in perf.CASE_FAMILIES]
    if bad:
        raise OptbenchError(f"unknown case family {bad[0]!r}: choose from {', '.join(perf.CASE_FAMILIES)}")
    methods = None
    if args.methods:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        bad = [m for m in methods if m not in perf.all_methods()]
        if bad or not methods:
            raise OptbenchError(f"unknown method {(bad or [args.methods])[0]!r} for --methods: "
                                f"choose from {', '.join(perf.all_methods())}")
        if not any(set(methods) & set(perf.FAMILY_METHODS[f]) for f in families):
            raise OptbenchError(f"--methods {args.methods} times nothing in the case families "
                                f"{', '.join(families)}")
    if args.repeats is not None and args.repeats < 1:
        raise OptbenchError(f"--repeats must be at least 1, got {args.repeats}")
    device = resolve_device(args.device)   # one line, exit 2, when there is no such device
    user_options = user_xla_options()        # a malformed value fails here, before any work
    if not args.warm_cache:
        disable_compilation_cache()
    path = None if args.no_write else args.out or _default_dir()
    created = _prepare_out(path) if path else []
    try:
        return _timed(args, sizes, families, methods, device, user_options, path)
    except BaseException:
        _remove_empty(created)   # failed or interrupted before writing: no empty directory stays
        raise


def _timed(args, sizes, families, methods, device, user_options, path) -> int:
    """Time the cases, print the table and write perf.json, perf.csv and table.md to ``path``
    (already made ready by :func:`_prepare_out`; None with ``--no-write``)."""
    tty = sys.stderr.isatty()

    def progress(msg):
        if tty:
            print(f"\r{msg[:100]}".ljust(101), end="", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    rows = perf.run_perf(sizes, args.device, families, args.repeats, progress, clock=args.clock, methods=methods)
    if tty:
        print(file=sys.stderr)
    table = perf.format_table(rows)
    if user_options:   # a table measured with other XLA options says so under itself
        table += (f"\n\nXLA options from {XLA_OPTIONS_ENV} (optbench's programs and the floors; the peers "
                  f"compile with XLA's defaults): {json.dumps(user_options, sort_keys=True)}")
    print(table)
    if path is None:
        return 0
    meta = {"command": store.command_line(), "argv": sys.argv[1:],
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": {"preset": "quick" if args.quick else "large" if args.large else "default",
                       "sizes": sizes, "families": list(families), "device": args.device,
                       "methods": list(methods) if methods else None,
                       "repeats": args.repeats or sizes["repeats"],
                       "min_case_s": 0.0 if args.repeats else sizes.get("min_case_s", 0.0),
                       "warm_cache": bool(args.warm_cache),
                       "clock": args.clock},
            "peers": perf.peer_versions(), "wall_s": time.perf_counter() - t0,
            **store.provenance("float64", device)}
    clean_rows = [{k: _clean(v) for k, v in r.items()} for r in rows]
    store.write_json(os.path.join(path, "perf.json"), {"meta": meta, "rows": clean_rows})
    store.atomic_write_text(os.path.join(path, "perf.csv"), perf.rows_csv(clean_rows))
    store.atomic_write_text(os.path.join(path, "table.md"), table + "\n")
    print(f"\nperf directory: {path}")
    return 0
