"""A read-only shipped table with a writable user table of the same fingerprint over it.

Reads see the rows and attributes of both; writes go to the user table only, which is created
on its first write (not on a replay that only reads), so the shipped file is never opened for
writing and may sit in a read-only installation. Where both tables hold a subset or an
attribute the shipped one answers: a replay of a shipped problem gives the shipped numbers
whatever the user has measured since (a subset can be in both only when a newer release ships
rows the user had already evaluated)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oracle.errors import TableError
from oracle.evaluation import Evaluation
from oracle.subset import Subset
from oracle.table import EvaluationTable


class LayeredTable:
    """The table interface the oracles use (lookup, append, attributes, arrays) over `shipped`
    and the user table at `user_path`. `create_user` creates (or opens for appending) the user
    table; without it the layered table is read-only."""

    def __init__(
        self,
        shipped: EvaluationTable,
        user_path: Path,
        create_user: Callable[[], EvaluationTable] | None = None,
    ):
        self.shipped = shipped
        self.user_path = Path(user_path)
        self._create_user = create_user
        self.user = (
            EvaluationTable.open(self.user_path, mode="r", expected_fingerprint=shipped.fingerprint)
            if self.user_path.exists()
            else None
        )
        self.path = shipped.path  # what messages and a run's record name; reports read its singles and pairs
        self.fingerprint = shipped.fingerprint
        self.n_blocks = shipped.n_blocks
        self.n_samples = shipped.n_samples

    @property
    def writable(self) -> bool:
        return self._create_user is not None

    def __contains__(self, subset: Sequence[int]) -> bool:
        return subset in self.shipped or (self.user is not None and subset in self.user)

    def lookup(self, subset: Sequence[int]) -> Evaluation | None:
        """The stored evaluation of `subset` (source 'table'), or None."""
        found = self.shipped.lookup(subset)
        if found is None and self.user is not None:
            found = self.user.lookup(subset)
        return found

    def canonical(self, subset: Sequence[int]) -> Subset:
        return self.shipped.canonical(subset)

    def attribute(self, name: str) -> Any:
        """An attribute of the shipped table, else of the user table (KeyError if neither has it)."""
        try:
            return self.shipped.attribute(name)
        except KeyError:
            if self.user is None:
                raise
            return self.user.attribute(name)

    @property
    def environments(self) -> list[dict[str, Any]]:
        """The shipped table's environments, then the user table's (see `to_arrays`)."""
        return self.shipped.environments + (self.user.environments if self.user is not None else [])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The shipped rows, then the user rows whose subset the shipped table lacks; a row's
        `environment` indexes `environments`."""
        arrays = self.shipped.to_arrays()
        if self.user is None:
            return arrays
        own = self.user.to_arrays()
        fresh = np.array([subset not in self.shipped for subset in self.user.subsets()], dtype=bool)
        own["environment"] = own["environment"] + len(self.shipped.environments)
        return {name: np.concatenate([column, own[name][fresh]]) for name, column in arrays.items()}

    def append(self, evaluations: Iterable[Evaluation]) -> int:
        """Store the evaluations neither table holds in the user table; the number of rows added."""
        fresh = [evaluation for evaluation in evaluations if evaluation.subset not in self.shipped]
        return self._writer().append(fresh) if fresh else 0

    def set_attribute(self, name: str, value: Any) -> None:
        self._writer().set_attribute(name, value)

    def close(self) -> None:
        self.shipped.close()
        if self.user is not None:
            self.user.close()

    def __enter__(self) -> LayeredTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _writer(self) -> EvaluationTable:
        """The user table open for writing, created (or re-opened, with the writer lock) now."""
        if self.user is None or not self.user.writable:
            if self._create_user is None:
                raise TableError(f"table {self.path} and its user table {self.user_path} are open read-only")
            if self.user is not None:
                self.user.close()
            self.user = self._create_user()
        return self.user
