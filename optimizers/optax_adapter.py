"""Any optax optimizer, by its factory name: ``optax:adam:learning_rate=0.01``, ``optax:lbfgs``.

The factory ``optax.<name>`` is called with the spec's keyword arguments (checked against its
signature; ``learning_rate`` defaults to 1e-3 where the factory requires one, and the random
``key`` to 0 where it takes one, e.g. ``optax:noisy_sgd``; a ``learning_rate`` that is zero,
negative or not finite is refused), and its
``GradientTransformation`` runs inside the driver like any other method:
x ← x + update(∇f(x)). Transformations that take extra arguments (optax's L-BFGS and line
searches) get ``value``, ``grad`` and ``value_fn``; where they store the value and gradient at
the new point in their state (optax's line searches do), those are reused instead of being
recomputed, and the line-search trials optax reports (``num_linesearch_steps``, each one f and
one gradient) are counted. A step that leaves x and the optax state exactly as they were (a
fixed point of the update, as when optax.sgd's step rounds away at x) ends the start ``stalled``.
"""
from __future__ import annotations

import inspect

import jax.numpy as jnp

from optbench_core import OptbenchError, call_with_params, close_matches

from .base import Optimizer, State, fixed_point, initial_state, stall_where


def _optax():
    try:
        import optax
    except ImportError:  # optax is a dependency, but say so plainly if it is missing
        raise OptbenchError("optax optimizers need the optax package (pip install optax)") from None
    return optax


def _members(optax):
    return sorted(n for n in dir(optax) if not n.startswith("_") and n.islower() and callable(getattr(optax, n)))


def _takes_text(annotation) -> bool:
    """Whether a parameter's annotation admits a string (a dtype name, a mode, or untyped)."""
    if annotation is inspect.Parameter.empty:
        return True
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return any(word in text for word in ("str", "Any", "Literal"))


def optax_family(name: str, **params) -> Optimizer:
    """An optax optimizer by factory name with its keyword arguments (``optax:<name>:key=value``)."""
    optax = _optax()
    fac = getattr(optax, name, None)
    if fac is None or not callable(fac) or name.startswith("_") or inspect.isclass(fac):
        raise OptbenchError(f"unknown optax optimizer {name!r}{close_matches(name, _members(optax))}")
    try:
        sig = inspect.signature(fac)
    except (TypeError, ValueError):
        raise OptbenchError(f"optax.{name} is not an optimizer factory") from None
    lr = sig.parameters.get("learning_rate")
    if lr is not None and lr.default is inspect.Parameter.empty and "learning_rate" not in params:
        params = dict(params, learning_rate=1e-3)
    key = sig.parameters.get("key")
    if key is not None and key.default is None and not {"key", "seed"} & set(params):
        # a random transformation (noisy_sgd, add_noise) gets a fixed seed, so that a run repeats
        # itself exactly; optax would otherwise warn that a key will be required
        params = dict(params, key=0)
    for key, value in params.items():
        par = sig.parameters.get(key)
        if par is None:
            continue   # an unknown name: call_with_params names the allowed ones
        # a parameter without a typed default is passed to optax as parsed, so text (a typo such
        # as momentum=abc) or NaN would only fail, or poison x, inside the compiled step
        if isinstance(value, str) and not isinstance(par.default, str) and not _takes_text(par.annotation):
            numeric = any(word in repr(par.annotation) for word in ("float", "int", "number"))
            raise OptbenchError(f"optax:{name}: {key} must be a number, got {value!r}" if numeric else
                                f"optax:{name}: {key} cannot be given in a spec string, got {value!r}")
        if isinstance(value, float) and value != value:
            raise OptbenchError(f"optax:{name}: {key} must be a number, got nan")
    rate = params.get("learning_rate")
    if isinstance(rate, bool) or (isinstance(rate, (int, float)) and not 0 < rate < float("inf")):
        # a zero, negative or non-finite rate is ascent, a standstill or NaN from the first step:
        # never a minimiser, and true/false is no rate at all (a schedule, passed from Python, is
        # optax's to check)
        raise OptbenchError(f"optax:{name}: learning_rate must be a positive finite number, got {rate}")
    tx = call_with_params("optimizer", f"optax:{name}", fac, params)
    if not isinstance(tx, optax.GradientTransformation):
        raise OptbenchError(f"optax.{name} does not build an optimizer (got {type(tx).__name__})")
    extra = isinstance(tx, optax.GradientTransformationExtraArgs)

    def stored(opt_state, key):
        try:
            return optax.tree_utils.tree_get(opt_state, key, None)
        except Exception:  # ambiguous (several entries): do not guess
            return None

    def init(oracle, x0):
        s = initial_state(oracle, x0)
        return s._replace(aux=(tx.init(x0),))

    def step(oracle, s: State) -> State:
        (opt_state,) = s.aux
        if extra:
            updates, opt_state = tx.update(s.g, opt_state, s.x, value=s.f, grad=s.g, value_fn=oracle.f)
        else:
            updates, opt_state = tx.update(s.g, opt_state, s.x)
        x = optax.apply_updates(s.x, updates).astype(s.x.dtype)
        value, grad, trials = stored(opt_state, "value"), stored(opt_state, "grad"), stored(opt_state, "num_linesearch_steps")
        nls = jnp.int32(0) if trials is None else jnp.asarray(trials, jnp.int32)
        if value is not None and grad is not None and getattr(grad, "shape", None) == x.shape:
            f, g, nf = jnp.asarray(value, x.dtype), jnp.asarray(grad, x.dtype), nls
        else:
            f, g = oracle.value_and_grad(x)
            nf = nls + 1
        new = s._replace(x=x, f=f, g=g, nfev=s.nfev + nf, njev=s.njev + nf, aux=(opt_state,))
        # a step that leaves x and optax's state exactly as they were (optax.sgd whose update
        # rounds away at x) would repeat forever; a state with a step counter (adam) never does
        return stall_where(fixed_point((x, opt_state), (s.x, s.aux[0])), new)

    return Optimizer(f"optax:{name}", init, step, dict(params), description=f"optax.{name}")
