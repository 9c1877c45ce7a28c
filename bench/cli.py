"""The ``optbench`` command line. Subcommands live in modules named in ``COMMAND_MODULES``, each
exposing ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code``.

User errors (bad names, bad values, bad files) print one line and exit 2; no traceback unless
``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback
from typing import List, Optional

from optbench_core import OptbenchError

COMMAND_MODULES = ["bench.cmd_list", "bench.cmd_run", "bench.cmd_plot", "bench.cmd_report", "bench.cmd_compare",
                   "bench.cmd_baseline", "bench.cmd_check", "bench.cmd_perf"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting, so errors stay one line."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        # argparse takes "-1e-8" for an option (its pattern knows only -1 and -.5), so
        # `--gtol -1e-8` would say "expected one argument" instead of "must be >= 0"
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$|^-nan$")

    def error(self, message):
        raise OptbenchError(message)


def build_parser():
    parser = _Parser(prog="optbench", description="Benchmark numerical optimizers (JAX, CPU or GPU).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--cpu-threads", metavar="N", default=None,
                        help="threads XLA runs compiled CPU programs on (default: $OPTBENCH_CPU_THREADS, else one "
                             "per CPU); 1 avoids hand-offs between threads, often faster for many small kernels")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = {}
    for modname in COMMAND_MODULES:
        mod = importlib.import_module(modname)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
        p.add_argument("--cpu-threads", metavar="N", default=argparse.SUPPRESS,
                       help="threads XLA runs compiled CPU programs on (see optbench --help)")
        mod.add_arguments(p)
        modules[mod.NAME] = mod
    return parser, modules


#: what an option names, for the error on an empty value (default: "a value")
_EMPTY_WHAT = {("run", "out"): "a directory", ("compare", "out"): "a directory", ("perf", "out"): "a directory",
               ("report", "out"): "a file", ("baseline", "out"): "a file", ("check", "out"): "a file",
               ("check", "baseline"): "a file", ("run", "resume"): "a directory",
               ("run", "device"): "cpu, gpu, cpu:N or gpu:N", ("perf", "device"): "cpu or gpu"}
#: positional arguments (checked by their commands, with messages of their own)
_POSITIONAL = ("command", "suite", "run_dir", "run_dirs", "cli_argv")


def refuse_empty_options(args) -> None:
    """A one-line error for an option given an empty (or blank) value: ``--out ''`` quietly meant
    the default place for some commands, ``--device ''`` was recorded as a device, ``--methods ''``
    meant all methods and ``--cpu-threads ''`` was ignored — typically a shell variable left unset."""
    for dest, value in vars(args).items():
        if dest in _POSITIONAL:
            continue
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, str) and not v.strip():
                what = _EMPTY_WHAT.get((args.command, dest), "a value")
                raise OptbenchError(f"--{dest.replace('_', '-')} needs {what}, got an empty string")


#: whether the last failure stopped every process of a multi-process run at the same point (see
#: :func:`entry`; set by errors that carry ``together = True``)
_FAILED = {"together": False}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _FAILED["together"] = False
    debug = "--debug" in argv
    try:
        parser, modules = build_parser()
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:   # -h/--help after the command: argparse printed it and exits;
            return exc.code or 0    # main(argv) returns the code rather than ending the caller
        if args.command is None:   # options but no command: the usage goes to stderr, as an error's
            parser.print_help(sys.stderr)
            return 2
        refuse_empty_options(args)
        threads = getattr(args, "cpu_threads", None)
        from .solve import CPU_THREADS_ENV, set_cpu_threads
        source = "--cpu-threads"
        if threads is None:
            threads, source = os.environ.get(CPU_THREADS_ENV) or None, f"${CPU_THREADS_ENV}"
        if threads is not None:
            set_cpu_threads(threads, source)
        # the arguments this command was given: main(argv) from Python is not the host's sys.argv
        args.cli_argv = argv
        return int(modules[args.command].run(args) or 0)
    except OptbenchError as exc:
        if debug:   # the traceback, then the same line and exit code (raising exited 1, a
            traceback.print_exc()   # "regression" to `check`)
        print(f"optbench: error: {exc}", file=sys.stderr)
        _FAILED["together"] = bool(getattr(exc, "together", False))
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt as exc:
        # a SIGTERM that a run turned into bench.interrupt.Interrupted exits 143, not Ctrl-C's 130
        signame = getattr(exc, "signame", None)
        print(f"optbench: interrupted{f' by {signame}' if signame else ''}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except Exception as exc:  # an internal fault: one line, after the traceback with --debug
        if debug:
            traceback.print_exc()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        note = getattr(exc, "optbench_note", "")   # what a run kept (bench.cmd_run)
        if _lost_a_process(exc, msg):
            print(f"optbench: error: the distributed run lost a process (it stopped or cannot be reached; "
                  f"its own output says why): {msg}{note}", file=sys.stderr)
            return 1
        hint = "" if debug else " (rerun with --debug for the traceback)"
        print(f"optbench: internal error: {type(exc).__name__}: {msg}{note}{hint}", file=sys.stderr)
        return 1


def entry() -> None:
    code = main()
    if code and _in_distributed_run() and not _FAILED["together"]:
        _leave_distributed_run(code)
    sys.exit(code)


def _lost_a_process(exc: Exception, msg: str) -> bool:
    """Whether ``exc`` is a collective of a multi-process run that failed because another process
    went away (the CPU collectives' library, Gloo, reports a closed or reset connection, or a
    peer that never published its address)."""
    if type(exc).__name__ not in ("JaxRuntimeError", "XlaRuntimeError") or not _in_distributed_run():
        return False
    return "Gloo" in msg and any(s in msg for s in ("by peer", "timed out", "Connection", "DEADLINE_EXCEEDED"))


def _in_distributed_run() -> bool:
    """Whether this process joined a run of several processes (``jax.distributed``)."""
    jax = sys.modules.get("jax")
    try:
        return bool(jax is not None and jax.distributed.is_initialized() and jax.process_count() > 1)
    except Exception:   # noqa: BLE001 — a JAX without these: no run to leave
        return False


def _leave_distributed_run(code: int) -> None:
    """End a process of a multi-process run whose command failed, at once, with ``code``.

    Exiting normally runs JAX's exit handler, which waits at the coordination service's shutdown
    barrier for every other process. After a failure those may never come: a process that stopped
    with an error while the others wait for it in a collective left them all waiting (until the
    collectives' own timeout), and a process whose partner died waited JAX's heartbeat timeout
    (100 s) there and was then aborted from C++ (exit 134). Leaving without that barrier closes
    this process's connections, so the others' collectives fail at once and they end the same way.
    (A failure that stops every process at one point — their runs differ — leaves through the
    barrier: each process gets there, and leaving without it let the coordinator's process end
    the service while another still printed its line, which JAX then aborted.)"""
    from .cmd_run import _flush_c_stdio
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _flush_c_stdio()   # what native code buffered on C's streams
    os._exit(code)
