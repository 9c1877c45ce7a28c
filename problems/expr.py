"""A small, safe translator from model formulas (as printed in NIST StRD files) to functions.

The text is never handed to ``eval``: it is tokenised against a fixed grammar and parsed by
recursive descent into a tree of closures. Only numbers, whitelisted names (parameters,
predictors, constants the caller declares) and whitelisted functions are accepted; anything else
is a one-line :class:`OptbenchError`.

Grammar (standard precedence; ``**`` binds tighter than unary minus and is right-associative,
so ``-x**2`` is −(x²) and ``2**3**2`` is 2⁹)::

    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := ('+' | '-') unary | power
    power  := atom ('**' unary)?
    atom   := NUMBER | NAME | FUNC '(' expr ')' | FUNC '[' expr ']' | '(' expr ')' | '[' expr ']'

Square brackets are parentheses, as NIST writes ``exp[-b2*x]``. Nesting (parentheses, function
calls, signs, exponents) deeper than :data:`MAX_DEPTH` levels is refused, and a chain of ``+ -``
or ``* /`` is evaluated in a loop, so neither parsing nor evaluating can exhaust Python's
recursion limit (a RecursionError would be a traceback, not one line). The compiled function takes an
environment ``{name: value}`` and a namespace of array functions (``jax.numpy`` or ``numpy``),
so one formula serves both JAX (autodiff, any dtype) and a float64 numpy check. Numbers become
Python floats, which JAX treats as weakly typed: a float32 input stays float32.
"""
from __future__ import annotations

import operator
import re
from typing import Callable, Dict, Iterable, List, Tuple

from optbench_core import OptbenchError

#: functions a formula may call, by the names NIST uses
FUNCTIONS = ("exp", "log", "sin", "cos", "tan", "arctan", "sqrt")

#: the deepest nesting a formula may have (the shipped NIST models nest 5 deep); each level costs
#: about five Python frames to parse and a few to evaluate, well inside the default limit of 1,000
#: even when evaluated under JAX's tracing
MAX_DEPTH = 64

_NUM = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(r"""
    (?P<num>""" + _NUM + r""")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|[-+*/()\[\]])
  | (?P<space>\s+)
""", re.VERBOSE | re.ASCII)   # ASCII: \d would also read "١" (Arabic-Indic one) as a digit


def _quote(text: str, limit: int = 200) -> str:
    """The formula as an error quotes it: cut short, so a runaway formula is still a short line."""
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def tokenize(text: str) -> List[Tuple[str, str]]:
    """Split a formula into (kind, text) tokens; kind is ``num``, ``name`` or ``op``."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise OptbenchError(f"cannot read formula {_quote(text)}: unexpected {text[pos]!r} at column {pos + 1}")
        kind = m.lastgroup
        if kind != "space":
            out.append((kind, m.group(kind)))
        pos = m.end()
    return out


Node = Callable[[Dict, object], object]


class _Parser:
    def __init__(self, tokens, names: Iterable[str], text: str):
        self.toks = tokens
        self.i = 0
        self.names = set(names)
        self.text = text.strip()
        self.used = set()
        self.depth = 0

    def _err(self, msg: str):
        return OptbenchError(f"cannot read formula {_quote(self.text)}: {msg}")

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, want=None):
        kind, val = self.peek()
        if kind is None:
            raise self._err("it ends too early")
        if want is not None and val != want:
            raise self._err(f"expected {want!r}, found {val!r}")
        self.i += 1
        return kind, val

    def parse(self) -> Node:
        node = self.expr()
        if self.i != len(self.toks):
            raise self._err(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self) -> Node:
        first, rest = self.term(), []
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rest.append((op, self.term()))
        return _chain(first, rest)

    def term(self) -> Node:
        first, rest = self.unary(), []
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            rest.append((op, self.unary()))
        return _chain(first, rest)

    def unary(self) -> Node:
        # every nesting (a bracket, a call, a sign, an exponent) recurses through here once
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self._err(f"it nests more than {MAX_DEPTH} levels deep")
            if self.peek()[1] in ("+", "-"):
                op = self.take()[1]
                inner = self.unary()
                return inner if op == "+" else (lambda env, ns: -inner(env, ns))
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Node:
        base = self.atom()
        if self.peek()[1] == "**":
            self.take()
            start = self.i
            expo = self.unary()
            const = _constant_of(self.toks[start:self.i])
            if const is not None and float(const).is_integer() and abs(const) <= 64:
                k = int(const)  # integer power: exact repeated multiplication, fine for negative bases
                return lambda env, ns: base(env, ns) ** k
            return lambda env, ns: base(env, ns) ** expo(env, ns)
        return base

    def atom(self) -> Node:
        kind, val = self.take()
        if kind == "num":
            v = float(val)
            return lambda env, ns: v
        if kind == "name":
            if val in FUNCTIONS:
                close = {"(": ")", "[": "]"}.get(self.peek()[1])
                if close is None:
                    raise self._err(f"function {val!r} must be followed by ( or [")
                self.take()
                arg = self.expr()
                self.take(close)
                return _call(val, arg)
            if val not in self.names:
                raise self._err(f"unknown name {val!r} (known: {', '.join(sorted(self.names)) or 'none'})")
            self.used.add(val)
            return lambda env, ns: env[val]
        if val in ("(", "["):
            node = self.expr()
            self.take(")" if val == "(" else "]")
            return node
        raise self._err(f"unexpected {val!r}")


def _constant_of(tokens):
    """The value of a token run that is a plain signed number or (number), else None."""
    vals = [v for _, v in tokens if v not in ("(", ")")]
    sign = 1.0
    while vals and vals[0] in ("+", "-"):
        sign = -sign if vals[0] == "-" else sign
        vals = vals[1:]
    if len(vals) == 1 and re.fullmatch(_NUM, vals[0]):
        return sign * float(vals[0])
    return None


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _chain(first: Node, rest) -> Node:
    """``first op₁ n₁ op₂ n₂ …``, left to right as before, but in a loop: nested closures, one per
    operator, made a sum of a few thousand terms a RecursionError when evaluated."""
    if not rest:
        return first
    steps = [(_OPS[op], node) for op, node in rest]

    def run(env, ns):
        acc = first(env, ns)
        for fn, node in steps:
            acc = fn(acc, node(env, ns))
        return acc
    return run


def _call(name: str, arg: Node) -> Node:
    return lambda env, ns: getattr(ns, name)(arg(env, ns))


class Formula:
    """A parsed formula: ``Formula(text, names)(env, ns)`` evaluates it.

    ``names`` are the variables it may use; ``used`` the ones it does use.
    """

    def __init__(self, text: str, names: Iterable[str]):
        self.text = " ".join(text.split())
        p = _Parser(tokenize(text), names, text)
        self._node = p.parse()
        self.used = frozenset(p.used)

    def __call__(self, env: Dict, ns) -> object:
        return self._node(env, ns)

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"
