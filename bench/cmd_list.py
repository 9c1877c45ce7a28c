"""``optbench list problems|optimizers``: what is registered, with parameters and defaults."""
from __future__ import annotations

import optimizers
import problems
from optbench_core import OptbenchError

NAME = "list"
HELP = "list registered problems or optimizers"
WHAT = ("problems", "optimizers")


def add_arguments(p):
    p.add_argument("what", help="problems or optimizers")


def _rows(mod):
    out = []
    for name in mod.names():
        d = mod.describe(name)
        params = " ".join(f"{k}={v}" for k, v in d["params"].items())
        out.append((name, params, d["doc"]))
    return out


def run(args) -> int:
    if args.what not in WHAT:
        raise OptbenchError(f"can list {' or '.join(WHAT)}, not {args.what!r}")
    mod = problems if args.what == "problems" else optimizers
    rows = _rows(mod)
    w0 = max(len(r[0]) for r in rows)
    w1 = min(44, max(len(r[1]) for r in rows))
    for name, params, doc in rows:
        print(f"{name:<{w0}}  {params:<{w1}}  {doc}")
    return 0
