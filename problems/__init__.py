"""Named problems (model × objective × data, or synthetic): `problems.get(name, **options)`."""

from problems import registry
from problems.problem import EXECUTION_OPTIONS
from problems.registry import get, names


def block_count(name: str, **options) -> int:
    """N of a named problem, known without building it (so bad input is refused before any
    table is opened or created). `options` are those of `get`."""
    registered = registry.registered_block_count(name)
    if registered is not None:
        return registered
    if name.startswith("synthetic/"):
        return get(name).n_blocks
    from problems.model_problems import problem_spec

    return problem_spec(name, **_shaping(options))["model"]["n_blocks"]


def identity(name: str, **options) -> tuple[str, str]:
    """(name, fingerprint) of a named problem with `get`'s options: a model problem's name as
    built — ("Meta-Llama-3-8B/ppl", …) for smollm2-135m/ppl with model=… — known without
    building it (no table opened, no model loaded); any other problem's name as given."""
    if name.startswith("synthetic/") or registry.registered_block_count(name) is not None:
        # Named as the caller names it: a registered alias keeps its own name.
        with get(name, **options) as problem:
            return name, problem.oracle.fingerprint
    from problems.model_problems import problem_spec

    spec = problem_spec(name, **_shaping(options))
    return spec["name"], spec["fingerprint"]


def _shaping(options: dict) -> dict:
    """The options that shape a model problem (and so its fingerprint)."""
    return {key: value for key, value in options.items() if key not in EXECUTION_OPTIONS}


__all__ = ["block_count", "get", "identity", "names"]
