"""Fuzzing the parsers a user's typing reaches: spec strings, the registries behind them, and suite
files. Whatever the input, the answer is a parsed value or one :class:`OptbenchError` line — never
another exception, never a traceback."""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optimizers
import problems
from bench import suite as suite_mod
from optbench_core import OptbenchError, format_spec, parse_spec

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

#: characters that matter to the grammar, plus some that should not
SPEC_CHARS = st.sampled_from(list(":=,[]{}\"' \t\n\\._-+eE0123456789abcxyzé∞") + ["\x00", "ß", "🙂"])


def _one_line(exc):
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)


def _same(a, b):
    """Equality that treats NaN as equal to itself (``lr=nan`` parses to NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@FUZZ
@given(st.one_of(st.text(SPEC_CHARS, max_size=40), st.text(max_size=40)))
def test_parse_spec_parses_or_says_why(text):
    try:
        name, params = parse_spec(text)
    except OptbenchError as exc:
        _one_line(exc)
        return
    assert isinstance(name, str) and name and all(seg.strip() for seg in name.split(":"))
    assert all(k.isidentifier() for k in params)
    # what parses, printed back, parses to the same thing
    name2, params2 = parse_spec(format_spec(name, params))
    assert name2 == name and list(params2) == list(params)
    assert all(_same(params[k], params2[k]) or isinstance(params[k], str) for k in params)


# -- the registries: names that exist, keys that exist or nearly, values of every kind ----------

VALUES = ["0", "1", "2", "3", "10", "-1", "-7", "0.5", "1e-3", "1e3", "-0.0", "1e400", "-1e400", "nan", "inf",
          "true", "false", "none", "abc", "[1,2]", "1,2", "0x10", "1_0", "  4  ", "9" * 30, "1e-320", "é"]


def _problem_names():
    out = []
    for n in problems.names():
        if n.endswith(":"):
            try:
                out.extend(f"{n}{m}" for m in problems.members(n[:-1])[:4])
            except OptbenchError:
                pass
            out.append(n + "nosuchmember")
        else:
            out.append(n)
    return out + ["rosenbrok", "", "nist"]


def _param_names(registry_describe, name):
    try:
        return list(registry_describe(name)["params"])
    except Exception:
        return []


@st.composite
def specs(draw, names, describe):
    name = draw(st.sampled_from(names))
    keys = _param_names(describe, name) or ["dim"]
    n = draw(st.integers(0, 3))
    parts = [name]
    for _ in range(n):
        key = draw(st.one_of(st.sampled_from(keys), st.sampled_from(["dimm", "seed", "lr", "x", "_", "1a"])))
        parts.append(f"{key}={draw(st.sampled_from(VALUES))}")
    return ":".join(parts)


def _guarded(build, spec):
    try:
        obj = build(spec)
    except OptbenchError as exc:
        _one_line(exc)
        return None
    return obj


@FUZZ
@given(data=st.data())
def test_problem_specs_build_or_say_why(data):
    spec = data.draw(specs(_problem_names(), problems.describe))
    p = _guarded(problems.get, spec)
    if p is not None:
        try:
            p.check()
        except OptbenchError as exc:
            _one_line(exc)


def _optimizer_names():
    return [n for n in optimizers.names() if not n.endswith(":")] + [
        "optax:adam", "optax:sgd", "optax:nosuch", "optax:", "newtn", "scipy"]


@FUZZ
@given(data=st.data())
def test_optimizer_specs_build_or_say_why(data):
    spec = data.draw(specs(_optimizer_names(), _describe_optimizer))
    _guarded(optimizers.get, spec)


def _describe_optimizer(name):
    if name.startswith("optax:"):
        return {"params": {"learning_rate": None, "b1": None, "momentum": None}}
    return optimizers.describe(name)


# -- suite files ---------------------------------------------------------------------------------

KEYS = list(suite_mod.GROUP_KEYS) + list(suite_mod.TOP_KEYS) + ["strats", "problem", "Problems", ""]
TOML_VALUES = ['"rosenbrock"', '["rosenbrock"]', '["himmelblau", "sphere:dim=3"]', '"all"', '["newton"]',
               '["gd:lr=[1e-3,1e-2]"]', '["gd:lr=[1e-3"]', '["nist:*"]', '["nosuch:*"]', "3", "0", "-1", "1.5",
               "-1e-8", "1e-8", "true", '"float64"', '"float16"', "[1, 2]", "[]", '[2, "x"]', "[0, 0]",
               '{name = "gd", lr = [0.1, 0.2]}', '[{name = "gd", lr = [0.1]}]', '[{lr = 1}]', "nan", "inf",
               '"cpu"', '["plugin_that_is_not_there.py"]', "1979-05-27", '"""multi\nline"""']


GOOD = {"problems": ['["himmelblau"]', '["rosenbrock", "sphere:dim=3"]'],
        "optimizers": ['["newton"]', '["gd:lr=[1e-3,1e-2]", "bfgs"]', '"all"'], "starts": ["3"],
        "seeds": ["[0, 1]"], "max_iter": ["50"], "gtol": ["1e-6"], "dtype": ['"float32"'], "repeats": ["1"],
        "dims": ["[2, 4]"], "name": ['"fuzz"']}


@st.composite
def _table(draw, required):
    """A TOML table: mostly valid entries, then a couple of random keys/values (each key once)."""
    table = {"problems": draw(st.sampled_from(GOOD["problems"]))} if required else {}
    for key in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=4, unique=True)):
        table[key] = draw(st.sampled_from(GOOD[key]))
    for _ in range(draw(st.integers(0, 2))):
        table[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(TOML_VALUES))
    return [f"{k} = {v}" for k, v in table.items() if k]


@st.composite
def suite_texts(draw):
    """Mostly valid suites (so expansion is reached too), each with a few random edits."""
    lines = draw(_table(draw(st.booleans())))
    for _ in range(draw(st.integers(0, 2))):
        lines.append(draw(st.sampled_from(["[[group]]", "[[group]]", "[group]", "[other]"])))
        lines += draw(_table(draw(st.booleans())))
    if draw(st.integers(0, 4)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(SPEC_CHARS, max_size=20)))
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=st.one_of(suite_texts(), st.text(max_size=80)))
def test_suite_parser_parses_or_says_why(text):
    try:
        parsed = suite_mod.parse(text, path="fuzz.toml")
    except OptbenchError as exc:
        _one_line(exc)
        assert str(exc).startswith("fuzz.toml") or "suite" in str(exc), str(exc)
        return
    try:
        cells = suite_mod.expand(parsed)
    except OptbenchError as exc:
        _one_line(exc)
        return
    assert cells and all(c.starts >= 1 and c.max_iter >= 1 and c.gtol >= 0 for c in cells)


def test_fuzzers_draw_real_parameter_names():
    """The fuzzers above draw parameter names from the registries' listings: check they are there,
    so the fuzzing reaches the factories' own validation and not only the unknown-key error."""
    assert "dim" in _param_names(problems.describe, "rosenbrock")
    assert "lr" in _param_names(optimizers.describe, "gd")
    for n in optimizers.names():
        if not n.endswith(":"):
            assert isinstance(optimizers.describe(n)["params"], dict)
