"""One exception class per failure kind, under a common base.

The CLI turns a `BadInput` into one line and exit code 2; anything else that escapes is an
internal failure (exit 1)."""


class DepthbenchError(Exception):
    """Base of every error depthbench raises on purpose."""


class BadInput(DepthbenchError):
    """The user asked for something that cannot be done; nothing was changed."""


class InvalidSubset(BadInput):
    """A subset with duplicate, out-of-range or non-integer block indices, or the wrong size."""


class UnknownProblem(BadInput):
    """A problem name that is not in the registry."""


class DataError(BadInput):
    """Calibration or evaluation data that cannot be read or does not have the expected form."""


class ModelUnavailable(BadInput):
    """A model whose weights are not on this machine (with the command that installs them)."""


class SolverUnavailable(BadInput):
    """A solver whose library is not installed (with the command that installs it)."""


class TableError(BadInput):
    """A table file that cannot be used: corrupt, foreign, locked or of another problem."""


class TableLocked(TableError):
    """Another process is writing to the table."""


class FingerprintMismatch(TableError):
    """The table was built for a problem with another fingerprint."""


class TokenMismatch(TableError):
    """The calibration token ids made here differ from those the table's rows were made on."""


class TableMiss(BadInput):
    """A replayed table holds no row for the requested subset and misses are not allowed."""

    def __init__(self, subset: tuple[int, ...], table: str):
        self.subset = subset
        self.table = table
        super().__init__(f"table miss: subset {list(subset)} is not in {table} (on_miss='strict')")
