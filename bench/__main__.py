"""``python -m bench`` is the ``optbench`` command."""
from .cli import entry

if __name__ == "__main__":   # not when a process drawing figures (bench.plots) imports this module anew
    entry()
