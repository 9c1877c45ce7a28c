"""``python -m bench`` is the ``optbench`` command."""
from .cli import entry

entry()
