"""Named problems (model × objective × data, or synthetic): `problems.get(name, **options)`."""

from problems.registry import get, names

__all__ = ["get", "names"]
