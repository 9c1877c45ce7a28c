"""``optbench list problems|optimizers|suites``: what is registered, with parameters and defaults,
and the shipped benchmark suites."""
from __future__ import annotations

import optimizers
import problems
from optbench_core import OptbenchError, close_matches

NAME = "list"
HELP = "list registered problems or optimizers, or the shipped suites"
WHAT = ("problems", "optimizers", "suites")


def add_arguments(p):
    p.add_argument("what", help="problems, optimizers or suites")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="import a file that registers problems/optimizers first (repeatable)")


#: what may open the sentence after a period besides a capital: inline code or emphasis
#: (gauss-newton's "… ‖r + Jp‖². ``linesearch``: …" is two sentences)
_SENTENCE_OPENERS = "`*"


def _first_sentence(text: str, limit: "int | None" = None) -> str:
    """The first sentence of a docstring's first paragraph, its lines joined: a period outside
    brackets followed by a capital, inline code or emphasis (or the paragraph's end) ends it, so
    ``(… Math. Prog. 45:503; N&W Alg. 7.5)`` does not."""
    para = " ".join(text.strip().split("\n\n")[0].split())
    depth = 0
    for i, ch in enumerate(para):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "." and depth <= 0 and (i + 1 == len(para) or (
                para[i + 1] == " " and i + 2 < len(para) and (para[i + 2].isupper()
                                                              or para[i + 2] in _SENTENCE_OPENERS))):
            return _shorten(para[:i + 1], limit or DOC_MAX)
    return _shorten(para, limit or DOC_MAX)


#: a description longer than this is cut at a clause (or word) boundary, marked with "…"
DOC_MAX = 120


def _shorten(s: str, limit: int = DOC_MAX) -> str:
    if len(s) <= limit:
        return s[:-1] + " …" if s.endswith(":") else s   # a sentence introducing a list
    head = s[:limit]
    depth, cut = 0, -1
    for i, ch in enumerate(head):
        depth += (ch in "([{") - (ch in ")]}")
        if depth <= 0 and ch in ";:," and i > limit // 3:
            cut = i
    if cut < 0:
        cut = head.rfind(" ") if " " in head else limit
    return s[:cut].rstrip(" ;:,") + " …"


def _doc(mod, name: str, first_line: str, limit: "int | None" = None) -> str:
    """A name's description for the table: the whole first sentence of its factory's docstring
    (``describe`` gives only its first line, which a wrapped docstring cuts mid-sentence),
    shortened past ``limit`` characters (default :data:`DOC_MAX`)."""
    reg = getattr(getattr(mod, "registry", None), "_REGISTRY", None)
    fac = None
    if reg is not None:
        fac = (getattr(reg, "_prefixes", {}).get(name[:-1]) if name.endswith(":")
               else getattr(reg, "_factories", {}).get(name))
    doc = getattr(fac, "__doc__", None)
    return _first_sentence(doc, limit) if doc and doc.strip() else first_line


def _rows(mod):
    out = []
    for name in mod.names():
        d = mod.describe(name)
        params = " ".join(f"{k}={v}" for k, v in d["params"].items())
        out.append((name, params, _doc(mod, name, d["doc"])))
    return out


def run(args) -> int:
    if args.what not in WHAT:
        raise OptbenchError(f"can list problems or optimizers or suites, not {args.what!r}"
                            f"{close_matches(str(args.what).lower(), WHAT)}")
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
            # the whole first sentence, as for optimizers (a plug-in's wrapped docstring showed its
            # first line, cut mid-sentence); problems' one-line sentences run longer than
            # DOC_MAX and are kept whole
            rows.append((name, str(d.get("dims") or ""), params,
                         _doc(problems, name, d["doc"], max(DOC_MAX, len(d["doc"])))))
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
