"""The shipped benchmark suites, as TOML files (``optbench list suites``; format in ``bench.suite``).

This package holds data only: ``bench.suite`` finds the files through :mod:`importlib.resources`,
so they are the same in a checkout, an editable install and a regular install.
"""
