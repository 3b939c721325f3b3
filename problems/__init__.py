"""Named problems (model × objective × data, or synthetic): `problems.get(name, **options)`."""

from problems.registry import get, names


def block_count(name: str) -> int:
    """N of a named problem, known without building it (so bad input is refused before any
    table is opened or created)."""
    if name.startswith("synthetic/"):
        return get(name).n_blocks
    from problems.model_problems import problem_spec

    return problem_spec(name)["model"]["n_blocks"]


__all__ = ["block_count", "get", "names"]
