"""Named problems: `get(name, **options) -> Problem`.

Three ways a name is known:
- registered exactly with `register(name, factory)`; the factory is called as
  `factory(name, **options)` with the caller's options (oracle="live"|"replay", table=...,
  device=..., and whatever else that problem accepts), so one factory can serve many names;
- matched by a name pattern: `synthetic/<quadratic|higher-order>-N<n>-seed<s>` for any N in
  2..256 and any seed;
- owned by a module registered under a name prefix (the live model problems), imported on
  first use so that start-up never pays for it.
"""

import importlib
import re
from collections.abc import Callable
from typing import Any

from oracle.errors import UnknownProblem
from problems.problem import Problem
from problems.synthetic import NAME_FORM as SYNTHETIC_NAME_FORM
from problems.synthetic import NAME_PATTERN as SYNTHETIC_NAME_PATTERN
from problems.synthetic import make_synthetic_problem

Factory = Callable[..., Problem]

# Modules that register the problems whose names start with a prefix; imported on first use.
LAZY_MODULES: dict[str, str] = {
    "smollm2-135m/": "problems.model_problems",
    "gemma3-270m/": "problems.model_problems",
}

_exact: dict[str, Factory] = {}
_block_counts: dict[str, int] = {}
_patterns: list[tuple[re.Pattern[str], Factory, str, tuple[str, ...]]] = []
_loaded_modules: set[str] = set()


def get(name: str, **options: Any) -> Problem:
    """Build the problem called `name`; options go to its factory unchanged."""
    if name not in _exact:
        for prefix, module in LAZY_MODULES.items():
            if name.startswith(prefix):
                _load(module, name)
    factory = _exact.get(name)
    if factory is not None:
        return factory(name, **options)
    for pattern, pattern_factory, _, _ in _patterns:
        if pattern.fullmatch(name):
            return pattern_factory(name, **options)
    raise UnknownProblem(f"unknown problem {name!r}; known: {_known_names_line()}")


def names() -> list[str]:
    """Every exactly registered name (loading the lazy modules that can be loaded), then
    examples of the patterned names."""
    for module in sorted(set(LAZY_MODULES.values())):
        try:
            _load(module, None)
        except UnknownProblem:
            pass
    examples = [example for _, _, _, pattern_examples in _patterns for example in pattern_examples]
    return sorted(_exact) + [example for example in examples if example not in _exact]


def register(name: str, factory: Factory, *, n_blocks: int | None = None, replace: bool = False) -> None:
    """Make `get(name, **options)` return `factory(name, **options)`; `n_blocks` lets the grid
    check k without building the problem. Registering a name twice is a programming error
    unless `replace` is true."""
    if not replace and name in _exact and _exact[name] is not factory:
        raise ValueError(f"problem {name!r} is already registered")
    _exact[name] = factory
    if n_blocks is not None:
        _block_counts[name] = n_blocks


def registered_block_count(name: str) -> int | None:
    """N as given to `register`, else None."""
    return _block_counts.get(name)


def register_pattern(
    pattern: re.Pattern[str], factory: Factory, form: str, examples: tuple[str, ...]
) -> None:
    """Make every name matching `pattern` resolve to `factory(name, **options)`; `form` says
    the pattern in words and `examples` are listed by `names()`."""
    _patterns.append((pattern, factory, form, examples))


def _load(module: str, name: str | None) -> None:
    """Import a module that registers problems; a module that does not exist (yet) means its
    names are unknown."""
    if module in _loaded_modules:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        # Only the registering module itself (or its package) being absent means "unknown";
        # anything it fails to import is a real fault and propagates.
        if error.name is None or not (module == error.name or module.startswith(error.name + ".")):
            raise
        known = _known_names_line()
        what = f"problem {name!r}" if name is not None else f"problems of {module}"
        raise UnknownProblem(f"unknown {what}: {module} is not available; known: {known}") from None
    _loaded_modules.add(module)


def _known_names_line() -> str:
    known = sorted(_exact) + [form for _, _, form, _ in _patterns]
    return ", ".join(known)


register_pattern(
    SYNTHETIC_NAME_PATTERN,
    make_synthetic_problem,
    SYNTHETIC_NAME_FORM,
    ("synthetic/quadratic-N30-seed0", "synthetic/higher-order-N30-seed0"),
)
