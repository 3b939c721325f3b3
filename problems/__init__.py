"""Named problems (model × objective × data, or synthetic): `problems.get(name, **options)`."""

from problems import registry
from problems.registry import get, names


def block_count(name: str, **options) -> int:
    """N of a named problem, known without building it (so bad input is refused before any
    table is opened or created). `options` are the problem-shaping options of `get`."""
    registered = registry.registered_block_count(name)
    if registered is not None:
        return registered
    if name.startswith("synthetic/"):
        return get(name).n_blocks
    from problems.model_problems import problem_spec

    return problem_spec(name, **options)["model"]["n_blocks"]


__all__ = ["block_count", "get", "names"]
