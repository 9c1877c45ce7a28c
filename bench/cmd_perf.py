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
from . import suite as _suite
from .solve import (XLA_OPTIONS_ENV, disable_compilation_cache, enable_compilation_cache, resolve_device,
                    user_xla_options)

NAME = "perf"
#: the most timed rounds ``--repeats`` may ask for (the default takes at most 41): a guard against
#: a typo that would otherwise time for days
MAX_REPEATS = _suite.MAX_REPEATS
#: the file that reserves an output directory for the perf writing to it (removed when it is done)
IN_PROGRESS = ".perf-in-progress"
HELP = "time optbench against hand-written JAX kernels and scipy/optimistix/optax/jaxopt (medians, ratios)"


def add_arguments(p):
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (seconds; what the test suite runs)")
    size.add_argument("--large", action="store_true",
                      help="extended Rosenbrock n = 10⁵, 10⁶ and a 2·10⁶×50 float32 regression (minutes)")
    p.add_argument("--cases", help=f"comma-separated families to run (default all: {', '.join(perf.CASE_FAMILIES)})")
    p.add_argument("--methods", help="comma-separated methods to time, with the case's floor and their own (default all: "
                   + ", ".join(perf.all_methods()) + ")")
    p.add_argument("--device", default="cpu", help="where the JAX side runs: cpu or gpu (scipy stays on the host)")
    p.add_argument("--clock", default="wall", choices=sorted(perf.CLOCKS),
                   help="time runs by wall clock, or by this process's CPU time (steadier on a shared machine)")
    p.add_argument("--repeats", type=int,
                   help=f"timed rounds per case, exactly, 1 to {MAX_REPEATS} (default: at least 5 — large 3 — and "
                        "more, up to 41 — large 15 — until the case's rounds have taken 3 s — large 10 s; quick: "
                        "exactly 2)")
    p.add_argument("--out", help="output directory (default results/perf/<UTC timestamp>)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--warm-cache", action="store_true",
                   help="let the persistent compilation cache serve compiles (default: cold compiles, so the "
                        "compile column compares like with like)")


def _default_dir():
    """``results/perf/<UTC timestamp>[-i]``, claimed with ``os.mkdir`` (:func:`bench.store.default_run_dir`)
    so that two perfs started in the same second cannot both pick it and one replace the other's
    files. Returns the path and the directories created, deepest first."""
    parent = os.path.join("results", "perf")
    created = _missing_dirs(parent)
    try:
        path = store.default_run_dir(parent, "perf's files")
    except OptbenchError:
        _remove_empty(created)
        raise
    return path, [os.path.abspath(path)] + created


def _in_use(path):
    return OptbenchError(f"{path}: another optbench perf is writing there (if none is running, one was "
                         f"killed: remove {os.path.join(path, IN_PROGRESS)}); choose another --out")


def _missing_dirs(path):
    """``path`` and those of its parents that do not exist yet, deepest first (absolute): what
    creating it makes, for :func:`_remove_empty` to take back."""
    out, d = [], os.path.abspath(path)
    while d and not os.path.lexists(d):
        out.append(d)
        d = os.path.dirname(d)
    return out


def _check_empty(path, reserved=False):
    """The output directory holds nothing (``reserved``: nothing but this perf's reservation,
    as another perf may have written its files between the first look and the reservation)."""
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise OptbenchError(f"{path}: cannot read the output directory ({exc.strerror or exc})") from None
    if not reserved and entries == [IN_PROGRESS]:
        raise _in_use(path)
    if entries != ([IN_PROGRESS] if reserved else []):
        raise OptbenchError(f"{path}: exists and is not empty")


def _prepare_out(path):
    """Make ``path`` ready for perf's files before anything is timed: absent (it is created now)
    or an empty directory, and writable; then reserve it (the file ``IN_PROGRESS``, created only
    where it does not exist), so a second perf given the same ``--out`` stops at once instead
    of replacing this one's files when it finishes. A bad ``--out`` is one line at once rather
    than after minutes of timing. Returns the directories created here, deepest first, and the
    reservation, so a perf that fails before writing can remove them and leave nothing behind."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OptbenchError(f"{path}: exists and is not a directory; choose another --out")
        _check_empty(path)
    created = _missing_dirs(path)
    mark = os.path.join(path, IN_PROGRESS)
    try:
        store.writable_dir(path, "perf's files")
        try:
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise _in_use(path) from None
        except OSError as exc:
            raise OptbenchError(f"{path}: cannot write perf's files there ({exc.strerror or exc})") from None
        try:
            _check_empty(path, reserved=True)
        except OptbenchError:
            _release(mark)
            raise
    except OptbenchError:
        _remove_empty(created)
        raise
    return created, mark


def _release(mark):
    try:
        os.remove(mark)
    except OSError:
        pass


def _remove_empty(dirs):
    """Remove the directories :func:`_prepare_out` created, deepest first, while they are empty."""
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            return


def _dtypes(rows):
    """The precision the rows ran in: float64, but the regression family in float32."""
    found = {"float32" if r.get("family") == "linreg" else "float64" for r in rows}
    return "float64" if found <= {"float64"} else "float32" if found == {"float32"} else "float64 (linreg: float32)"


def _clean(v):
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def run(args) -> int:
    sizes = perf.QUICK if args.quick else perf.LARGE if args.large else perf.DEFAULT
    families = (tuple(s.strip() for s in args.cases.split(",") if s.strip()) if args.cases is not None
                else perf.CASE_FAMILIES)
    if not families:
        raise OptbenchError(f"--cases {args.cases!r} names no case family: choose from "
                            f"{', '.join(perf.CASE_FAMILIES)}")
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
    if not perf.case_builders(sizes, None, families, methods):
        # e.g. --large, which has no 2-D Rosenbrock case: an empty table and exit 0 looked like
        # a perf that had run
        timed = [f for f in families if methods is None or set(methods) & set(perf.FAMILY_METHODS[f])]
        preset = "--quick" if args.quick else "--large" if args.large else "the default preset"
        raise OptbenchError(f"nothing to time: {preset} has no {' or '.join(timed)} case"
                            + (f" for --methods {args.methods}" if methods else ""))
    if args.repeats is not None and not 1 <= args.repeats <= MAX_REPEATS:
        raise OptbenchError(f"--repeats must be from 1 to {MAX_REPEATS}, got {args.repeats}")
    if args.no_write and args.out:   # --out was ignored without a word
        raise OptbenchError("--no-write writes nothing, so --out has no use; give one or the other")
    device = resolve_device(args.device)   # one line, exit 2, when there is no such device
    user_options = user_xla_options()        # a malformed value fails here, before any work
    if not args.warm_cache:
        disable_compilation_cache()
    else:
        # on before the first compile: solve() turns it on at its first call, and the floor
        # kernels compiled before that were never stored, so their column stayed cold
        enable_compilation_cache()
    with _cold_compiles(not args.warm_cache):
        return _write_or_print(args, sizes, families, methods, device, user_options)


def _cold_compiles(cold):
    """Keep JAX's persistent compilation cache out of the compile columns: optbench's own cache
    is off (``disable_compilation_cache``), but a cache directory set in the environment
    (``JAX_COMPILATION_CACHE_DIR``) would still serve every contender's compile from disk. JAX
    decides whether it uses the cache at its first compile, so in a fresh process (the command)
    this turns it off; the setting is restored afterwards."""
    import contextlib

    import jax

    if not cold:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def off():
        saved = jax.config.jax_enable_compilation_cache
        jax.config.update("jax_enable_compilation_cache", False)
        try:
            yield
        finally:
            jax.config.update("jax_enable_compilation_cache", saved)
    return off()


def _write_or_print(args, sizes, families, methods, device, user_options) -> int:
    created, mark = [], None
    if args.no_write:
        path = None
    elif args.out:
        path = args.out
        created, mark = _prepare_out(path)
    else:
        path, made = _default_dir()
        try:
            created, mark = _prepare_out(path)
        except BaseException:
            _remove_empty(made)
            raise
        created = created + made
    try:
        rc = _timed(args, sizes, families, methods, device, user_options, path)
    except BaseException:
        if mark:
            _release(mark)
        _remove_empty(created)   # failed or interrupted before writing: no empty directory stays
        raise
    if mark:
        _release(mark)
    return rc


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
    missing = perf.missing_peers()
    if missing:   # skipped, not an error: the table says whose rows it lacks
        table += (f"\n\nPeers not installed (their rows are skipped): {', '.join(missing)}; "
                  "pip install 'optbench[peers]' for all of them.")
    if user_options:   # a table measured with other XLA options says so under itself
        table += (f"\n\nXLA options from {XLA_OPTIONS_ENV} (optbench's programs and the floors; the peers "
                  f"compile with XLA's defaults): {json.dumps(user_options, sort_keys=True)}")
    print(table)
    if path is None:
        return 0
    meta = {**store.command_record(getattr(args, "cli_argv", None)),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": {"preset": "quick" if args.quick else "large" if args.large else "default",
                       "sizes": sizes, "families": list(families), "device": args.device,
                       "methods": list(methods) if methods else None,
                       # at least this many rounds; with min_case_s > 0, more (up to max_repeats)
                       # while a case's rounds take less than min_case_s: each row's own
                       # ``repeats`` says how many it ran
                       "repeats": args.repeats or sizes["repeats"],
                       "min_case_s": 0.0 if args.repeats else sizes.get("min_case_s", 0.0),
                       "max_repeats": args.repeats or max(sizes["repeats"], sizes.get("max_repeats", 0)),
                       "warm_cache": bool(args.warm_cache),
                       "clock": args.clock},
            "peers": perf.peer_versions(), "peers_missing": missing, "wall_s": time.perf_counter() - t0,
            **store.provenance(_dtypes(rows), device)}
    clean_rows = [{k: _clean(v) for k, v in r.items()} for r in rows]
    store.write_json(os.path.join(path, "perf.json"), {"meta": meta, "rows": clean_rows})
    store.atomic_write_text(os.path.join(path, "perf.csv"), perf.rows_csv(clean_rows))
    store.atomic_write_text(os.path.join(path, "table.md"), table + "\n")
    print(f"\nperf directory: {path}")
    return 0
