"""optbench's bench layer: the driver (:func:`solve`), results on disk, plots and the CLI."""
import importlib as _importlib
import sys as _sys

from optbench_core import OptbenchError


def _check_packages() -> None:
    """optbench's sibling packages must be optbench's: ``python -m bench`` (and a Python session)
    put the current directory first on the import path, where a plain folder named ``problems``,
    ``optimizers`` or ``suites`` became an empty namespace package ahead of an editable install's
    (``max() arg is an empty sequence`` from ``list suites``, ``no attribute 'families'``)."""
    for name in ("problems", "optimizers", "suites"):
        mod = _importlib.import_module(name)
        if getattr(mod, "__file__", None) is None:
            where = next(iter(getattr(mod, "__path__", [])), name)
            msg = (f"the directory {where} hides optbench's {name!r} package (the current directory comes "
                   f"first on the import path): use the optbench command, or run from another directory")
            if _sys.argv[:1] == ["-m"]:   # `python -m bench` is being located: one line, exit 2
                print(f"optbench: error: {msg}", file=_sys.stderr)
                raise SystemExit(2)
            raise ImportError(msg)


_check_packages()

from . import plugins  # noqa: F401  (bench.plugins.load_plugin after `import bench`, as the README shows)
from .solve import (Result, Trace, compile_count, cpu_threads, enable_program_cache, precompile, program_load_count,
                    set_cpu_threads, solve)

__all__ = ["solve", "precompile", "Result", "Trace", "compile_count", "cpu_threads", "set_cpu_threads",
           "enable_program_cache", "program_load_count", "OptbenchError"]
