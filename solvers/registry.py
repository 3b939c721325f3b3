"""Solvers by name: `solvers.get("greedy", barriers=True)`."""

import importlib
import numbers
import types
import typing
from typing import Any

from oracle.errors import BadInput, SolverUnavailable
from oracle.integers import is_integer

# name → "module:class"; modules are imported on use so one solver's library never slows another.
SOLVERS: dict[str, str] = {
    "oneshot": "solvers.oneshot:OneShot",
    "greedy": "solvers.greedy:Greedy",
    "beam": "solvers.beam:Beam",
    "random": "solvers.random_search:RandomSearch",
    "exact": "solvers.exact:Exact",
    "ga": "solvers.genetic:GeneticAlgorithm",
    "evopress": "solvers.evopress:EvoPress",
    "bo": "solvers.bayesian:BayesianOptimisation",
    "cbo": "solvers.cbo:ConstrainedBinaryOptimisation",
    "fbs": "solvers.fast_block_select:FastBlockSelect",
}
# Every "ng-<Name>" is Nevergrad's optimiser <Name> as an exactly-k solver (random keys); the
# family is a prefix rule, not entries, so `names` does not list it.
NEVERGRAD_PREFIX = "ng-"
NEVERGRAD = "solvers.nevergrad_solver:NevergradSolver"
# The family's member in the panel: exact on 20 of 20 synthetic instances and the lowest gaps
# on the replayed SmolLM2 tables of the members measured (see solvers/nevergrad_solver.py).
PANEL_NEVERGRAD = "ng-DiscreteOnePlusOne"


def register(name: str, target: str) -> None:
    SOLVERS[name] = target


def get(name: str, **config: Any):
    target = SOLVERS.get(name)
    if name.startswith(NEVERGRAD_PREFIX):
        optimizer = name.removeprefix(NEVERGRAD_PREFIX)
        if config.setdefault("optimizer", optimizer) != optimizer:
            raise BadInput(f"{name} runs Nevergrad's {optimizer}, not optimizer={config['optimizer']!r}")
        target = NEVERGRAD
    if target is None:
        raise BadInput(f"unknown solver {name!r}; known: {', '.join(sorted(SOLVERS))}, "
                       f"{NEVERGRAD_PREFIX}<Name> (any Nevergrad optimiser)")
    module, _, cls = target.partition(":")
    try:
        solver_class = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as error:
        raise SolverUnavailable(f"solver {name!r} needs {error.name}, which is not installed: "
                                f"pip install 'depthbench[solvers]'") from None
    hints = typing.get_type_hints(solver_class.__init__)
    for option, value in config.items():
        if option in hints and not conforms(value, hints[option]):
            raise BadInput(f"{name} {option} must be {described(hints[option])}, not {value!r}")
    try:
        return solver_class(**config)
    except TypeError as error:
        raise BadInput(f"solver {name!r}: {error}") from None


def conforms(value: Any, hint: Any) -> bool:
    """Whether a configuration value has the type its constructor declares. A configuration
    comes from JSON, which has no tuples (a list stands for one) and no float/int distinction
    for whole numbers (an int is a float); a bool is no int."""
    arguments = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, argument) for argument in arguments)
    if origin is tuple:
        return (isinstance(value, (tuple, list)) and len(value) == len(arguments)
                and all(conforms(item, argument) for item, argument in zip(value, arguments)))
    if hint is int:
        return is_integer(value)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return hint is Any or isinstance(value, typing.get_origin(hint) or hint)


def described(hint: Any) -> str:
    """A type hint as a message says it: `int or None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(described(argument) for argument in typing.get_args(hint))
    return "None" if hint is type(None) else hint.__name__ if isinstance(hint, type) else str(hint)


def names() -> list[str]:
    return sorted(SOLVERS)


def panel() -> list[str]:
    """The default panel: every solver but `exact` (which would enumerate every k-subset), and
    Nevergrad's member PANEL_NEVERGRAD."""
    return sorted([name for name in SOLVERS if name != "exact"] + [PANEL_NEVERGRAD])
