"""Solvers by name: `solvers.get("greedy", barriers=True)`."""

import importlib
from typing import Any

from oracle.errors import BadInput, SolverUnavailable

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


def register(name: str, target: str) -> None:
    SOLVERS[name] = target


def get(name: str, **config: Any):
    if name not in SOLVERS:
        raise BadInput(f"unknown solver {name!r}; known: {', '.join(sorted(SOLVERS))}")
    module, _, cls = SOLVERS[name].partition(":")
    try:
        solver_class = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as error:
        raise SolverUnavailable(f"solver {name!r} needs {error.name}, which is not installed: "
                                f"pip install 'depthbench[solvers]'") from None
    try:
        return solver_class(**config)
    except TypeError as error:
        raise BadInput(f"solver {name!r}: {error}") from None


def names() -> list[str]:
    return sorted(SOLVERS)
