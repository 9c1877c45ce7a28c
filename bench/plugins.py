"""User plug-ins: a Python file that registers problems and/or optimizers through the public API.

``optbench run --plugin my_problems.py`` (or ``plugins = [...]`` in a suite file, or
:func:`load_plugin` from Python) imports the file before any name is resolved, so what it
registers — ``problems.register(problems.Problem(...))``, ``@problems.register("name")``,
``optimizers.register("name", factory)``, ``@optimizers.register("name")`` — is selected by
``--problems``/``--optimizers`` and appears in every table and figure like a built-in.

A file is imported once per process (the registries are global): loading the same path again
returns the module already imported. Errors raised while importing it become one line naming
the file.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from types import ModuleType
from typing import Dict, Iterable, List

from optbench_core import OptbenchError

_LOADED: Dict[str, ModuleType] = {}


def _where_in_file(exc: BaseException, path: str) -> str:
    """`` (line N)`` for the deepest frame of the traceback that lies in the plug-in file."""
    line = None
    for fr in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(fr.filename) == path:
            line = fr.lineno
    return f" (line {line})" if line else ""


def snapshot_registries():
    """What the problem and optimizer registries (and the problem catalogue) hold now, for
    :func:`restore_registries`: a plug-in that fails halfway is undone this way."""
    from optimizers import registry as oreg
    from problems import registry as preg
    return (oreg._REGISTRY.snapshot(), preg._REGISTRY.snapshot(), dict(preg._META), dict(preg.FAMILY_DOCS))


def restore_registries(saved) -> None:
    """Put the registries back as :func:`snapshot_registries` found them."""
    from optimizers import registry as oreg
    from problems import registry as preg
    opt, prob, meta, docs = saved
    oreg._REGISTRY.restore(opt)
    preg._REGISTRY.restore(prob)
    for mine, old in ((preg._META, meta), (preg.FAMILY_DOCS, docs)):
        mine.clear()
        mine.update(old)


def load_plugin(path: str) -> ModuleType:
    """Import the plug-in file at ``path`` (a ``.py`` file) and return its module.

    Raises a one-line :class:`OptbenchError` if the file is missing, is not Python, fails to
    import, or registers a name that is already taken.
    """
    if not isinstance(path, str) or not path:
        raise OptbenchError(f"plugin path must be a file name, got {path!r}")
    if not os.path.exists(path):
        raise OptbenchError(f"plugin file {path} not found")
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise OptbenchError(f"plugin {path} must be a Python file ending in .py")
    real = os.path.realpath(path)
    if real in _LOADED:
        return _LOADED[real]
    modname = "optbench_plugin_" + hashlib.sha1(real.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(modname, real)
    if spec is None or spec.loader is None:
        raise OptbenchError(f"plugin {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    # the plug-in may import helper modules that sit next to it (also later, from inside its
    # functions), so its folder stays on the path
    folder = os.path.dirname(real)
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    saved = snapshot_registries()
    try:
        try:
            spec.loader.exec_module(module)
        except BaseException:
            # undo what the file registered before it failed, so that loading it again (fixed)
            # reports its own error, not "already registered"; nor does its folder stay importable
            restore_registries(saved)
            if added and folder in sys.path:
                sys.path.remove(folder)
            raise
    except OptbenchError as exc:
        sys.modules.pop(modname, None)
        raise OptbenchError(f"plugin {path}{_where_in_file(exc, real)}: {exc}") from None
    except SyntaxError as exc:
        sys.modules.pop(modname, None)
        line = f" (line {exc.lineno})" if exc.lineno else ""   # null bytes, say, have no line
        raise OptbenchError(f"plugin {path}{line}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        sys.modules.pop(modname, None)
        raise OptbenchError(f"plugin {path} called exit({exc.code}) while being imported") from None
    except Exception as exc:  # the user's code: report it in one line, never a traceback
        sys.modules.pop(modname, None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise OptbenchError(f"plugin {path}{_where_in_file(exc, real)} failed: {type(exc).__name__}: {msg}") from None
    _LOADED[real] = module
    return module


def load_plugins(paths: Iterable[str]) -> List[ModuleType]:
    """Load several plug-in files in order (see :func:`load_plugin`)."""
    return [load_plugin(p) for p in paths]
