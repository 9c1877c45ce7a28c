"""optbench's bench layer: the driver (:func:`solve`), results on disk, plots and the CLI."""
from optbench_core import OptbenchError

from .solve import Result, Trace, compile_count, cpu_threads, precompile, set_cpu_threads, solve

__all__ = ["solve", "precompile", "Result", "Trace", "compile_count", "cpu_threads", "set_cpu_threads",
           "OptbenchError"]
