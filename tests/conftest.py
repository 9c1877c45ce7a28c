"""Shared test settings: float64 everywhere, and a ``--runslow`` switch for the slow checks."""
import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

jax.config.update("jax_enable_x64", True)
# tests monkeypatch optbench's internals, which the program store's key cannot see (see
# bench.solve.enable_program_cache); tests/test_program_cache.py turns it on where it tests it
os.environ["OPTBENCH_PROGRAM_CACHE"] = "off"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running check, run with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def figure_run(tmp_path_factory):
    """A small finished run with its figures and report (two 2-D problems × two optimizers),
    shared by the plot and report tests. Same settings as test_cli's run, so a session that runs
    both compiles once. Tests that change files must work on a copy."""
    from bench.cli import main
    out = str(tmp_path_factory.mktemp("figure_run") / "run")
    rc = main(["run", "--problems", "himmelblau,rosenbrock", "--optimizers", "newton,gd-linesearch",
               "--starts", "4", "--max-iter", "200", "--repeats", "2", "--out", out, "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One cell (himmelblau × newton, same shapes as ``figure_run``, so no new compile), run with
    ``--no-report``. Tests that change files must work on a copy."""
    from bench.cli import main
    out = str(tmp_path_factory.mktemp("tiny_run") / "tiny")
    rc = main(["run", "--problems", "himmelblau", "--optimizers", "newton", "--starts", "4", "--max-iter", "200",
               "--repeats", "1", "--out", out, "--quiet", "--no-report"])
    assert rc == 0
    return out


def dir_snapshot(path):
    """Every file under ``path`` with its bytes: what "nothing already written is lost or
    corrupted" compares before and after a command that must fail cleanly."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = fh.read()
    return out


@pytest.fixture
def registry_snapshot():
    """Undo what a test (or a plug-in it loads) registers, so that later tests selecting "all"
    problems or optimizers see the registries as they were."""
    from bench import plugins
    saved = plugins.snapshot_registries()
    yield
    plugins.restore_registries(saved)
