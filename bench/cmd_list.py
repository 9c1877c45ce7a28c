"""``optbench list problems|optimizers|suites``: what is registered, with parameters and defaults,
and the shipped benchmark suites."""
from __future__ import annotations

import optimizers
import problems
from optbench_core import OptbenchError

NAME = "list"
HELP = "list registered problems or optimizers, or the shipped suites"
WHAT = ("problems", "optimizers", "suites")


def add_arguments(p):
    p.add_argument("what", help="problems, optimizers or suites")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="import a file that registers problems/optimizers first (repeatable)")


def _rows(mod):
    out = []
    for name in mod.names():
        d = mod.describe(name)
        params = " ".join(f"{k}={v}" for k, v in d["params"].items())
        out.append((name, params, d["doc"]))
    return out


def run(args) -> int:
    if args.what not in WHAT:
        raise OptbenchError(f"can list problems or optimizers or suites, not {args.what!r}")
    from . import plugins
    plugins.load_plugins(getattr(args, "plugin", None) or [])
    if args.what == "suites":
        return _list_suites()
    if args.what == "problems":
        return _list_problems()
    mod = optimizers
    rows = _rows(mod)
    w0 = max(len(r[0]) for r in rows)
    w1 = min(44, max(len(r[1]) for r in rows))
    for name, params, doc in rows:
        print(f"{name:<{w0}}  {params:<{w1}}  {doc}")
    if mod is optimizers:
        from . import scipy_runner
        print(f"\nscipy:<method> runs scipy.optimize on the same problems and starts (optional extra, "
              f"{scipy_runner.INSTALL_HINT}):\n  " + ", ".join(scipy_runner.method_names()))
    return 0


def _list_problems() -> int:
    """Problems grouped by family: name, dimensions, parameters with defaults, description."""
    fams = problems.families()
    listed = set()
    blocks = []
    for fam in fams:
        rows = []
        for name in fam["names"]:
            d = problems.describe(name)
            params = " ".join(f"{k}={v}" for k, v in d["params"].items())
            if name.endswith(":"):
                params = ("<member> " + params).strip()
            rows.append((name, str(d.get("dims") or ""), params, d["doc"]))
            listed.add(name)
        blocks.append((f"{fam['family']}: {fam['doc']}", rows))
    rest = [n for n in problems.names() if n not in listed]  # e.g. registered by a plug-in
    if rest:
        blocks.append(("other (user-registered)", [(n, "", " ".join(f"{k}={v}" for k, v in problems.describe(n)["params"].items()),
                                                     problems.describe(n)["doc"]) for n in rest]))
    allrows = [r for _, rows in blocks for r in rows]
    w = [max(len(r[i]) for r in allrows) for i in range(3)]
    w[2] = min(w[2], 44)
    for title, rows in blocks:
        print(f"# {title}")
        for name, dims, params, doc in rows:
            print(f"  {name:<{w[0]}}  {dims:<{w[1]}}  {params:<{w[2]}}  {doc}")
        print()
    for fam in fams:
        for name in fam["names"]:
            if name.endswith(":"):
                members = problems.describe(name).get("members") or []
                if members:
                    print(f"{name} members: {', '.join(members)}")
    return 0


def _list_suites() -> int:
    """Name and description of each shipped suite, and where the files are."""
    from . import suite
    rows = suite.describe_shipped()
    w0 = max(len(r[0]) for r in rows)
    for name, desc, _ in rows:
        print(f"{name:<{w0}}  {desc}")
    print(f"\n(files in {suite.suites_dir()}; run one with: optbench run NAME or optbench run FILE.toml)")
    return 0
