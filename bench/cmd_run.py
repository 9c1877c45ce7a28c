"""``optbench run [SUITE]``: every selected problem × optimizer from the same starts, written cell by cell.

Without a suite file the shipped ``default`` suite runs; ``--problems``/``--optimizers`` replace a
suite's selection and the other options override its settings (see ``bench.suite``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import time

import numpy as np

import optimizers
from optbench_core import DTYPES, OptbenchError, first_line

from . import interrupt, store
from . import limits as _limits
from . import plugins as _plugins
from . import suite as _suite
from .progress import Progress
from .solve import resolve_device, resolve_devices

NAME = "run"
HELP = "run problems × optimizers and write a run directory (meta.json, CSVs, traces, plots)"

#: the suite ``optbench run`` runs when no suite file is given (small classics, about a minute)
DEFAULT_SUITE = "default"


def add_arguments(p):
    p.add_argument("suite", nargs="?", metavar="SUITE",
                   help="suite file (.toml) or shipped suite name (optbench list suites); default: 'default'")
    p.add_argument("--problems", help="comma-separated problem specs, grids allowed (replace the suite's)")
    p.add_argument("--optimizers", help="comma-separated optimizer specs, grids (gd:lr=[1e-3,1e-2]) and "
                                        "scipy:<method> allowed (replace the suite's)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="import a file that registers problems/optimizers first (repeatable)")
    p.add_argument("--starts", type=int,
                   help="starts per problem: x0 plus N-1 random in the box (default: the suite's; 10 in the default suite)")
    p.add_argument("--seed", type=int, help="seed of the random starts (default: the suite's; 0 where it names none)")
    p.add_argument("--max-iter", type=int,
                   help="iteration budget per start (default: the suite's; 1000 in the default suite)")
    p.add_argument("--gtol", type=float, help="stop when the gradient norm is at most this (default: the suite's; 1e-8 where it names none)")
    p.add_argument("--dtype", choices=list(DTYPES), help="default: the suite's; float64 where it names none")
    p.add_argument("--device", help="cpu, gpu, cpu:N or gpu:N (default: the suite's, else cpu)")
    p.add_argument("--repeats", type=int,
                   help="timed repeats per cell, median reported (default: the suite's; 3 in the default suite)")
    p.add_argument("--pack", action="store_true", default=None,
                   help="step only the tiles of a batch that hold running starts once most have finished "
                        "(batches of 2048+ starts; one more compile per cell)")
    p.add_argument("--fuse-loops", action="store_true", default=None,
                   help="CPU: compile each loop as one function instead of kernel by kernel (faster for "
                        "single starts and small batches, slower for large ones; results differ in the last bits)")
    p.add_argument("--out", help="run directory (default results/runs/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="finish an interrupted run: skip its finished cells, run the rest with its stored settings")
    p.add_argument("--no-plots", action="store_true", help="skip figures (and so the report)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report (RUN_DIR/report.html)")
    p.add_argument("--jobs", type=int, help="cells compiled at once before the timed runs (default min(4, cores); "
                                            "1 compiles each cell just before it runs)")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="print only the run directory")
    talk.add_argument("--json", action="store_true", help="print the run directory and summary as JSON on stdout")


def _split(text):
    return _suite.split_specs(text) if text else []


def default_optimizers():
    return [n for n in optimizers.names() if not n.endswith(":")]


def cli_overrides(args) -> dict:
    """The command-line values that override a suite's, validated like the suite's own keys."""
    out = {}
    for key, attr in (("starts", "starts"), ("max_iter", "max_iter"), ("gtol", "gtol"), ("dtype", "dtype"),
                      ("repeats", "repeats"), ("pack", "pack"), ("fuse_loops", "fuse_loops")):
        v = getattr(args, attr, None)
        if v is not None:
            out[key] = _suite._check_value("cli", key, v)
    if getattr(args, "seed", None) is not None:
        out["seeds"] = (_suite._check_value("cli", "seed", args.seed),)
    for key in ("problems", "optimizers"):
        text = getattr(args, key, None)
        if text is not None:
            specs = _split(text)
            if not specs:
                raise OptbenchError(f"--{key} is empty")
            out[key] = _suite._check_value("cli", key, specs)
    return out


class Plan:
    """What a run will do, resolved and validated before any file is written."""

    def __init__(self, suite, cells, device, device_name):
        self.suite, self.cells, self.device, self.device_name = suite, cells, device, device_name

    def config(self) -> dict:
        return dict(_suite.config(self.suite, self.cells), device=self.device_name)


def build_plan(args) -> Plan:
    """Load plug-ins and the suite, apply command-line overrides, resolve every name."""
    overrides = cli_overrides(args)
    _plugins.load_plugins(getattr(args, "plugin", None) or [])
    suite = _suite.load(getattr(args, "suite", None) or DEFAULT_SUITE)
    for plug in suite.plugins:   # a missing file named with the suite file and key, as its other mistakes
        if not os.path.exists(plug):
            raise OptbenchError(f"{suite.path or suite.name}: key 'plugins': plugin file {plug} not found")
    _plugins.load_plugins(suite.plugins)
    cells = _suite.expand(suite, overrides)
    device_name = getattr(args, "device", None) or suite.device or "cpu"
    device = resolve_device(device_name)
    _limits.check_cells(cells, device)
    return Plan(suite, cells, device, device_name)


# -- --resume ----------------------------------------------------------------------------------

#: the settings of a stored cell (bench.suite.Cell.config), each validated on the way back in
_CELL_KEYS = ("problem", "optimizer", "starts", "seeds", "max_iter", "gtol", "dtype", "repeats")


def _identities(kind: str, specs, where: str) -> set:
    """The settings spec strings select, however spelled (``gd``, ``gd:lr=1e-3`` and
    ``gd:lr=0.001`` are one: the registry's name with every parameter, defaults filled in);
    ``where`` names the specs' source in errors."""
    if kind == "optimizers":
        out = []
        for s in specs:
            out.extend(_suite.all_optimizers() if s == _suite.ALL else [s])
        built = [_suite._get_optimizer(s, where) for s in out]
    else:
        built = [_suite._get_problem(s, where) for s in specs]
    return {getattr(b, "_identity", b.spec) for b in built}


def _check_resume_args(args, cfg: dict, mpath: str) -> None:
    """A resumed run takes every setting from meta.json; an option that says otherwise is an error
    (silently ignoring it would mislabel the results, obeying it would mix two configurations)."""
    def conflict(option, given, stored):
        raise OptbenchError(f"--resume takes its settings from {mpath}; {option} {given} conflicts with the stored "
                            f"{stored} (drop {option}, or start a new run elsewhere)")
    run_dir = os.path.dirname(mpath)
    if getattr(args, "out", None) and os.path.realpath(args.out) != os.path.realpath(run_dir):
        conflict("--out", args.out, f"run directory {run_dir}")
    if getattr(args, "suite", None):
        name = _suite.load(args.suite).name
        if name != cfg.get("suite"):
            conflict("suite", args.suite, f"suite {cfg.get('suite')!r}")
    if getattr(args, "device", None) and args.device != cfg.get("device", "cpu"):
        # cpu:0 names the same device as cpu where there is one; cpu on a host of four does not
        # (a CPU and a GPU both number their first device 0: the platform is compared too)
        def devices(name):
            return [(d.platform, d.id) for d in resolve_devices(name)]
        try:
            same = devices(args.device) == devices(cfg.get("device", "cpu"))
        except OptbenchError:   # --device names no device here: it cannot be the stored one
            same = False
        if not same:
            conflict("--device", args.device, f"device {cfg.get('device', 'cpu')!r}")
    for key, value in cli_overrides(args).items():
        option = "--seed" if key == "seeds" else "--" + key.replace("_", "-")
        given = value[0] if key == "seeds" else value
        if key in ("problems", "optimizers"):
            if _identities(key, value, option) != _identities(key, cfg.get(key) or [], f"{mpath}: {key}"):
                conflict(option, ",".join(value), f"{key} {','.join(cfg.get(key) or [])}")
        elif key == "seeds":
            if list(value) != cfg.get("seeds"):
                conflict(option, given, f"seeds {cfg.get('seeds')}")
        elif value != cfg.get(key):
            conflict(option, given, f"{key} {cfg.get(key)!r}")


def resume_plan(args) -> Plan:
    """The plan of the run in ``args.resume``, rebuilt from its meta.json (every cell with its
    stored settings), after checking that no command-line option contradicts it."""
    path = args.resume
    meta = store.load_meta(path)
    mpath = os.path.join(path, "meta.json")
    cfg = meta.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cells"), list) or not cfg["cells"]:
        raise OptbenchError(f"{mpath}: no per-cell configuration to resume from")
    _plugins.load_plugins(list(cfg.get("plugins") or []) + list(cfg.get("cli_plugins") or [])
                          + list(getattr(args, "plugin", None) or []))
    _check_resume_args(args, cfg, mpath)
    cells = []
    for i, c in enumerate(cfg["cells"], 1):
        where = f"{mpath}: cells[{i}]"
        if not isinstance(c, dict) or any(k not in c for k in _CELL_KEYS):
            raise OptbenchError(f"{where} must hold {', '.join(_CELL_KEYS)}")
        if not (isinstance(c["problem"], str) and isinstance(c["optimizer"], str)):
            raise OptbenchError(f"{where}: problem and optimizer must be spec strings")
        settings = {k: _suite._check_value(where, k, c[k]) for k in _CELL_KEYS[2:]}
        settings["pack"] = _suite._check_value(where, "pack", c.get("pack", False))   # absent before pack existed
        settings["fuse_loops"] = _suite._check_value(where, "fuse_loops", c.get("fuse_loops", False))   # likewise
        cell = _suite.Cell(problem=_suite._get_problem(c["problem"], where),
                           optimizer=_suite._get_optimizer(c["optimizer"], where), **settings)
        if cell.key != (c["problem"], c["optimizer"]):
            raise OptbenchError(f"{where}: {c['problem']} × {c['optimizer']} now resolves to "
                                f"{cell.key[0]} × {cell.key[1]}; the stored run cannot be continued")
        cells.append(cell)
    device_name = cfg.get("device") or "cpu"
    device = resolve_device(device_name)
    _limits.check_cells(cells, device)
    suite = _suite.Suite(name=cfg.get("suite") or "resumed", path=cfg.get("suite_file"))
    return Plan(suite, cells, device, device_name)


def _note_stale_outputs(path: str, plots_stale: bool, report_stale: bool) -> None:
    """After a resume that added cells without redrawing: say which figures or report predate it
    (they are left in place, not deleted) and how to bring them up to date."""
    from . import report
    stale, redraw = [], []
    if plots_stale and os.path.isdir(os.path.join(path, "plots")) and os.listdir(os.path.join(path, "plots")):
        stale.append("plots/")
        redraw.append(f"optbench plot {path}")
    if report_stale and os.path.isfile(os.path.join(path, report.REPORT_NAME)):
        stale.append(report.REPORT_NAME)
        redraw.append(f"optbench report {path}")
    if stale:
        print(f"optbench: {' and '.join(stale)} in {path} predate{'s' if len(stale) == 1 else ''} the cells "
              f"this resume added; redraw with: {' and '.join(redraw)}", file=sys.stderr)


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


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


def _precompile_cells(cells, device_name, bar, jobs=None, index=1) -> None:
    """Compile every cell's programs before any is timed, several at once (XLA compiles without
    the GIL): a cold suite spends most of its wall time compiling, and compiling in parallel does
    not disturb the timings, which all come after. A cell whose compile fails is left to its own
    run, which reports the error as it would have. ``index`` is the run's number of the first of
    ``cells``, where the progress bar stands while they compile."""
    import concurrent.futures
    jobs = jobs or min(4, os.cpu_count() or 1)
    todo = [c for c in cells if not c.is_scipy]
    if jobs < 2 or len(todo) < 2:
        return
    # the bar stays at the first of these cells: at 0 it went back to an empty bar and [0/N]
    # each time a later window of cells compiled
    bar.cell(index, f"compiling {len(todo)} cells, {min(jobs, len(todo))} at a time")
    bar.phase("compile")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="optbench-compile")
    futures = []
    _COMPILES[:] = futures   # what an interrupt leaves running (see _wait_for_compiles)
    try:
        futures.extend(pool.submit(c.precompile, device_name) for c in todo)
        _COMPILES[:] = futures
        for f in concurrent.futures.as_completed(futures):
            try:
                f.result()
            except Exception:   # reported by the cell's own run, with its usual message
                pass
    finally:
        # on an interrupt, compiles not yet started are dropped; running ones finish in the background
        pool.shutdown(wait=False, cancel_futures=True)


#: the compile futures of the last _precompile_cells: an interrupt leaves the running ones going
_COMPILES: list = []


def _wait_for_compiles(exit_code: int) -> None:
    """After an interrupt, wait for the compiles already under way (XLA cannot stop one midway, and
    the interpreter would wait for their threads at exit anyway), saying so; a second SIGINT or
    SIGTERM meanwhile ends the process at once with ``exit_code`` (the run directory is already
    consistent and released) instead of a traceback from the interpreter's exit."""
    import concurrent.futures
    import signal
    running = [f for f in _COMPILES if not f.done()]
    _COMPILES.clear()
    if not running:
        return
    print(f"optbench: waiting for {len(running)} compile(s) already under way to end "
          f"(interrupt again to quit at once)", file=sys.stderr, flush=True)

    def quit_now(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(exit_code)

    old = {}
    if interrupt.in_main_thread():
        for s in interrupt.SIGNALS:
            try:
                old[s] = signal.signal(s, quit_now)
            except (ValueError, OSError):  # pragma: no cover - restricted environments
                pass
    try:
        concurrent.futures.wait(running)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _NoWriter:
    """What a process other than process 0 of a multi-process run writes: nothing (its share of
    every cell is computed, and process 0 receives the whole result and writes it)."""

    summary: list = []
    meta: dict = {}

    def done_cells(self):
        return set()

    def add_cell(self, *args, **kwargs):
        pass

    def finish(self, **kwargs):
        pass

    def release(self):
        pass

    def mark_interrupted(self, signame):
        pass


def join_processes() -> int:
    """Join a multi-process run when the environment asks for one (``OPTBENCH_NUM_PROCESSES``,
    with ``OPTBENCH_COORDINATOR`` and ``OPTBENCH_PROCESS_ID``; see ``bench.solve.init_distributed``)
    before anything uses JAX; returns this process's index (0 when there is one process)."""
    if not os.environ.get("OPTBENCH_NUM_PROCESSES"):
        return 0
    import jax
    from .solve import init_distributed
    init_distributed()
    return jax.process_index()


def _process_count() -> int:
    """How many processes this run spans (1 unless it joined a multi-process run)."""
    jax = sys.modules.get("jax")
    return jax.process_count() if jax is not None and os.environ.get("OPTBENCH_NUM_PROCESSES") else 1


#: where each process of a multi-process run says what it runs, and process 0 the verdict
PLAN_KEY = "optbench/plan/"


def _plan_identity(args, plan) -> dict:
    """What must be the same in every process of a run: the settings and cells (the run's
    config, device included), whether it resumes, and the contents of the suite file and of the
    plug-in files, the suite's and ``--plugin``'s (their paths may differ from host to host).
    ``--out`` may differ: only process 0 writes."""
    import hashlib

    def content(path):
        try:
            with open(path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()[:16]
        except (OSError, TypeError):
            return None

    config = plan.config()
    suite_file = config.pop("suite_file", None)
    suite_plugins = config.pop("plugins", [])
    return {"config": config, "resume": bool(getattr(args, "resume", None)),
            "suite_file": content(suite_file) if suite_file else None,
            "plugins": [content(p) for p in list(suite_plugins) + list(getattr(args, "plugin", None) or [])]}


def _first_difference(a, b, where=""):
    """(path, a's value, b's value) of the first place two JSON-like values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}{k}", a.get(k, "(not set)"), b.get(k, "(not set)")
            hit = _first_difference(a[k], b[k], f"{where}{k}.")
            if hit:
                return hit
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            hit = _first_difference(u, v, f"{where.rstrip('.')}[{i}].")
            if hit:
                return hit
        return None
    return None if a == b else (where.rstrip("."), a, b)


def _short(value, width=60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 1] + "…"


def _same_plan_everywhere(args, rank: int, make_plan):
    """Build this process's plan and agree on it with the other processes before any cell runs.

    Every process publishes what it runs (or the error that stopped it) in the coordination
    service's key-value store; process 0 reads them all and publishes a verdict that every process
    waits for, so they go on together or stop together with one line each. Processes started with
    different commands (another --starts, say) had run into a collective whose sizes did not match
    and were aborted from C++ (gloo: "Received data size doesn't match expected size"); one that
    failed alone (a spec it could not read) left the others waiting in a collective."""
    from jax._src import distributed as jd
    from .solve import INIT_TIMEOUT_ENV, init_timeout_s
    client = jd.global_state.client
    nproc = _process_count()
    wait_s = init_timeout_s()
    own_error, plan = None, None
    try:
        plan = make_plan()
        mine = {"run": _plan_identity(args, plan)}
    except OptbenchError as exc:
        own_error, mine = exc, {"error": str(exc)}
    # every process's entry is compared as published (JSON), process 0's own too: a tuple here is
    # a list there, and a NaN is equal to itself only as text
    mine_text = json.dumps(mine, sort_keys=True)
    mine = json.loads(mine_text)

    def read(key, who):
        try:
            return client.blocking_key_value_get(PLAN_KEY + key, wait_s * 1000)
        except Exception:   # noqa: BLE001 — a timeout (or a service gone), in one line
            raise OptbenchError(f"process {who} did not say within {wait_s} s which run it starts "
                                f"({INIT_TIMEOUT_ENV} sets the wait)") from None

    client.key_value_set(PLAN_KEY + str(rank), mine_text)
    if rank == 0:
        verdict = ""
        for i in range(1, nproc):
            theirs_text = read(str(i), i)
            theirs = json.loads(theirs_text)
            if verdict:
                continue
            if "error" in mine:
                verdict = f"process 0 could not start the run: {mine['error']}"
            elif "error" in theirs:
                verdict = f"process {i} could not start the run: {theirs['error']}"
            elif theirs_text != mine_text:
                where, ours, other = _first_difference(mine["run"], theirs["run"]) or ("run", "", "")
                verdict = (f"process {i} was started with another run than process 0 ({where}: {_short(other)} "
                           f"there, {_short(ours)} in process 0); start every process with the same command")
        client.key_value_set(PLAN_KEY + "verdict", json.dumps(verdict or "ok"))
    else:
        verdict = json.loads(read("verdict", 0))
        verdict = "" if verdict == "ok" else verdict
    if own_error is not None or verdict:
        exc = own_error if own_error is not None else OptbenchError(verdict)
        exc.together = True   # every process stops here: they may leave through JAX's shutdown barrier
        raise exc
    return plan


def run(args) -> int:
    if os.environ.get("OPTBENCH_NUM_PROCESSES"):
        return _run_native_quiet(args)
    if not getattr(args, "json", False):
        return _run(args, sys.stdout)
    # with --json, stdout carries the JSON document alone: whatever else is printed on the way
    # (a plug-in's own prints, say) goes to stderr
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        return _run(args, out)


def _run_native_quiet(args) -> int:
    """A multi-process run: the CPU collectives' library (Gloo) prints its connection lines on
    file descriptor 1 from C++, where Python's redirect cannot reach, and they broke ``--json``'s
    document and ``--quiet``'s single line. The descriptor points at stderr while the run lasts;
    what the run prints for the user goes to the real stdout (a duplicate of it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with os.fdopen(os.dup(saved), "w", encoding=sys.stdout.encoding or "utf-8") as real, \
                contextlib.redirect_stdout(sys.stderr):
            try:
                return _run(args, real)
            finally:
                real.flush()
    finally:
        sys.stdout.flush()
        _flush_c_stdio()   # C's buffered stdout: written at exit, after fd 1 is back, otherwise
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """fflush(NULL): what native code has buffered on C's streams goes out now."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _run(args, out) -> int:
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        raise OptbenchError(f"--jobs must be at least 1, got {args.jobs}")
    if not getattr(args, "no_plots", False):   # a bad $OPTBENCH_PLOT_JOBS is one line now, not after every cell ran
        from . import plots
        plots.plot_jobs(1)
    resume = getattr(args, "resume", None)
    # an empty SUITE ran the default suite (`optbench run "$SUITE"` with the variable unset); empty
    # option values (--out, --resume, --device) are refused for every command by
    # bench.cli.refuse_empty_options
    suite = getattr(args, "suite", None)
    if suite is not None and not str(suite).strip():
        raise OptbenchError("SUITE needs a suite file or shipped suite name, got an empty string")
    rank = join_processes()
    # compiled programs kept on disk for the next run of the same cells (bench.solve.enable_program_cache)
    from .solve import enable_program_cache
    enable_program_cache()

    def make_plan():
        if rank and resume:
            raise OptbenchError("--resume is not supported in a multi-process run; resume with one process")
        return resume_plan(args) if resume else build_plan(args)

    plan = _same_plan_everywhere(args, rank, make_plan) if _process_count() > 1 else make_plan()
    cells = plan.cells
    path = resume or args.out or store.default_run_dir()
    if resume:
        meta = None
        done_run = store.load_run(path)   # loading it checks every file but the traces
        if done_run.meta.get("complete"):
            print(f"run {path} is already complete; nothing to resume", file=sys.stderr)
            # still the output --json/--quiet promise: a script reading stdout gets the run's
            # summary (it got nothing, and json.loads failed on an empty document)
            return _print_result(args, out, path, plan.suite.name, done_run.summary, None)
    else:
        config = plan.config()
        config["cli_plugins"] = [os.path.abspath(p) for p in (getattr(args, "plugin", None) or [])]
        dtype = config["dtype"] if isinstance(config["dtype"], str) else "mixed"
        meta = {**_command(args),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "config": config, **store.provenance(dtype, plan.device, resolve_devices(plan.device_name))}
    t0 = time.perf_counter()
    quiet = args.quiet or getattr(args, "json", False)
    # SIGINT/SIGTERM stop the run between files: finished cells kept, meta.json says incomplete,
    # lock released, exit 128 + signal number; `--resume` finishes it later
    with interrupt.Guard() as guard:
        writer = None
        try:
            with guard.critical():  # a signal here is held until the writer exists, then handled below
                writer = _NoWriter() if rank else store.RunWriter(path, meta, resume=bool(resume))
            done = writer.done_cells()
            todo = [c for c in cells if c.key not in done]
            if resume and done and todo and not args.no_plots:
                # the figures read every cell's trace: a damaged one of a cell done before stopped
                # the resume only after the missing cells ran, and every later resume the same way
                kept = store.load_run(path)
                for key in sorted(done):
                    kept.cell(*key, padded=False)
            if resume:
                with guard.critical():
                    writer.note_resumed({"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                         "command": _command(args)["command"], "cells_before": len(done),
                                         **store.provenance(writer.meta.get("dtype", "float64"), plan.device,
                                                           resolve_devices(plan.device_name))})
            with Progress(len(todo), enabled=None if not quiet else False) as bar:
                # compiled ahead in windows that the in-process program cache keeps
                window = max(1, sys.modules["bench.solve"].COMPILED_MAX // 2)
                for i, cell in enumerate(todo, 1):
                    if (i - 1) % window == 0:
                        _precompile_cells(todo[i - 1:i - 1 + window], plan.device_name, bar,
                                          getattr(args, "jobs", None), index=i)
                    p, o = cell.problem, cell.optimizer
                    bar.cell(i, f"{p.spec} × {o.spec}")
                    res = cell.run(device=plan.device_name, progress=bar.phase)
                    with guard.critical():
                        writer.add_cell(res, p.dim, extra=getattr(res, "extra", None))
            if rank:
                print(f"optbench: process {rank}: {len(todo)} cells computed; process 0 writes {path}",
                      file=sys.stderr)
                return 0
            figures = None
            if not args.no_plots:
                # imported here, not at the top: plots brings in matplotlib (about half a second),
                # which --no-plots and the other commands (all of which load this module to build
                # the command line) do not need
                from . import plots
                figures = plots.plot_run_index(store.load_run(path))
            with guard.critical():
                writer.finish(wall_s=writer.meta.get("wall_s", 0.0) + time.perf_counter() - t0 if resume
                              else time.perf_counter() - t0)
            # after finish, so the report's provenance says complete and carries the wall time
            report_path = None
            if figures is not None and not getattr(args, "no_report", False):
                from . import report
                report_path = report.write_report(store.load_run(path), figures=figures)
            if resume and todo:
                _note_stale_outputs(path, figures is None, report_path is None)
        except interrupt.Interrupted as exc:
            if writer is None:  # nothing to keep
                raise
            if writer.meta.get("complete"):   # every cell is in; stopped while writing the report
                print(f"optbench: interrupted by {exc.signame}: the run in {path} is complete (every cell kept); "
                      f"if its report is missing, write it with: optbench report {path}", file=sys.stderr, flush=True)
                return exc.exit_code
            with guard.critical():
                writer.mark_interrupted(exc.signame)
            n = len(writer.done_cells())
            writer.release()
            print(f"optbench: interrupted by {exc.signame}: {n} of {len(cells)} cells are kept in {path}; "
                  f"finish with: optbench run --resume {path}", file=sys.stderr, flush=True)
            _wait_for_compiles(exc.exit_code)
            return exc.exit_code
        except Exception as exc:
            if writer is not None and not resume and not rank:
                writer.discard()  # a new run that failed before its first cell leaves nothing behind
            if writer is not None and not rank and writer.meta.get("cells_done") and not writer.meta.get("complete"):
                # cells are kept: say where, and how to finish once the cause is fixed (a plug-in
                # optimizer that fails on its first cell, after other cells ran)
                n = len(writer.done_cells())
                with guard.critical():
                    writer.mark_interrupted(f"error: {first_line(exc)}")
                kept = f"{n} of {len(cells)} cells are kept in {path} (incomplete)"
                if isinstance(exc, OptbenchError):
                    raise OptbenchError(f"{first_line(exc)} — {kept}; once fixed, finish with: "
                                        f"optbench run --resume {path}") from None
                # any other failure (a process of a multi-process run lost, an internal fault):
                # the same note, which bench.cli adds to its line
                exc.optbench_note = f" — {kept}; finish with: optbench run --resume {path}"
            raise
        finally:
            if writer is not None:
                writer.release()
    return _print_result(args, out, path, plan.suite.name, writer.summary, report_path)


def _print_result(args, out, path, suite_name, summary, report_path) -> int:
    """What a finished run prints on stdout: the JSON document (--json), the run directory
    (--quiet), or the table, the report's path and the run directory."""
    if getattr(args, "json", False):
        rows = [{k: _json_safe(v) for k, v in r.items()} for r in summary]
        print(json.dumps({"run_dir": path, "suite": suite_name, "summary": rows}, indent=1), file=out)
        return 0
    if not args.quiet:
        print(format_table(summary), file=out)
        print(file=out)
        if report_path:
            print(f"report: {report_path}", file=out)
    print(f"run directory: {path}", file=out)
    return 0



def _command(args) -> dict:
    """meta.json's ``command`` and ``argv`` (:func:`bench.store.command_record`)."""
    return store.command_record(getattr(args, "cli_argv", None))
