"""Search algorithms for k-of-N block removal, on one contract (see solvers/base.py)."""

from solvers.base import Result, Solver
from solvers.registry import get, names, panel, register

__all__ = ["Result", "Solver", "get", "names", "panel", "register"]
