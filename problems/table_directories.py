"""Where tables live: the shipped ones, installed with the package and never written, and the
user's, where live evaluations are stored.

A problem with a shipped table is served by that table and by the user's table of the same
fingerprint read together (`oracle.layered_table`), so the memo keeps growing while installed
files never change."""

import os
from importlib.resources import files
from pathlib import Path

import platformdirs

# A regular package on disk, so its resources are plain files (h5py needs a path).
SHIPPED_TABLES = Path(files("surrogate_tables"))
# Per-item downstream evaluations of pruned models (`bench downstream`), apart from the
# calibration tables: they are not L(S) landscapes (no singles, pairs or surrogate).
SHIPPED_DOWNSTREAM = SHIPPED_TABLES / "downstream"


def shipped_directory(problem: str) -> Path:
    """Where the shipped table of a problem (by name) lives."""
    from problems.model_problems import DOWNSTREAM_SETS

    return SHIPPED_DOWNSTREAM if problem.partition("/")[2] in DOWNSTREAM_SETS else SHIPPED_TABLES


def user_table_directory() -> Path:
    """$DEPTHBENCH_TABLES when set, else the user's data directory (on Linux
    ~/.local/share/depthbench/tables). Not created until a table is written."""
    return Path(os.environ.get("DEPTHBENCH_TABLES") or Path(platformdirs.user_data_dir("depthbench")) / "tables")


def companion_table(path: Path) -> Path | None:
    """The table read together with `path`: the user's table of a shipped one, or the shipped
    table of a user's one (same file name, hence same fingerprint), if it exists."""
    user = user_table_directory().resolve()
    shipped = [SHIPPED_TABLES.resolve(), SHIPPED_DOWNSTREAM.resolve()]
    where = path.resolve().parent
    if where in shipped and where != user:
        candidates = [user / path.name]
    elif where == user and user not in shipped:
        candidates = [directory / path.name for directory in shipped]
    else:
        return None
    return next((candidate for candidate in candidates if candidate.exists()), None)
