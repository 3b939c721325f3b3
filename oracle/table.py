"""Evaluation tables: every L(S) of one problem, memoised in an HDF5 file.

A table file holds the rows of one problem fingerprint. Root attributes: `fingerprint`, `spec`
(JSON), `description`, `n_blocks`, `n_samples`, `format_version`, `created` and `updated` (ISO
UTC), `environment` (JSON, the environment that created the table), `environments` (JSON list of
every environment that produced rows), `generation`, `source_codes`, plus any extra JSON
attribute set with `set_attribute`. Row datasets, all of the same length, chunked and resizable:
`mask` (packed bits of the removed blocks), `loss` (f8), `per_sample` (f4, n_samples wide,
NaN-filled where `per_sample_valid` is 0), `cost_s`, `source` (code into `source_codes`),
`time` (unix seconds) and `environment` (index into `environments`).

Crash safety. The HDF5 file is never modified in place. A writer appends each batch to a sidecar
journal `PATH.journal` (records framed by length and CRC32, flushed and fsynced before `append`
returns). Compaction merges the journal into the HDF5 file by writing a complete new file next
to it, fsyncing it and renaming it over the old one; it runs when the journal holds as many rows
as the HDF5 file (so rewriting costs O(1) per row, amortised), on `close()`, and when a writer
opens a table whose previous writer died. A SIGKILL at any moment therefore leaves the old or
the new HDF5 file, each complete, plus a journal whose torn last record, if any, fails its
length or CRC check and is dropped: every batch whose `append` returned survives. In-place HDF5
appends are not safe: resizing the datasets, writing, updating a committed row counter and
flushing after every batch still left 1 unreadable file in 1,800 kill -9 trials ("addr
overflow" reading a dataset): HDF5 makes no promise about the file a writer killed in the middle
of a metadata flush leaves behind.

The journal header carries the HDF5 file's `generation`, which each compaction increments; a
reader ignores a journal of an older generation (its rows are already merged) and re-reads if it
finds a newer one (the HDF5 file was replaced while it was reading).

Concurrency: one writer at a time, enforced with a non-blocking `flock` on `PATH.lock`; readers
take no lock, read the HDF5 file and the journal once on open, and keep the rows in memory (a
dict from packed mask to row gives the lookups their speed).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oracle.environment import current_environment
from oracle.errors import BadInput, FingerprintMismatch, TableError, TableLocked, TokenMismatch
from oracle.evaluation import Evaluation
from oracle.fingerprint import canonical_json
from oracle.subset import Subset, canonical_subset, packed_width

FORMAT_VERSION = 1
SOURCES = ("live", "table", "surrogate")
_SOURCE_CODE = {name: code for code, name in enumerate(SOURCES)}

_BUILTIN_ATTRIBUTES = frozenset(
    {
        "fingerprint",
        "spec",
        "description",
        "n_blocks",
        "n_samples",
        "format_version",
        "created",
        "updated",
        "environment",
        "environments",
        "generation",
        "source_codes",
    }
)
_REQUIRED_ATTRIBUTES = ("fingerprint", "n_blocks", "n_samples", "format_version", "generation")


def table_path(directory: str | os.PathLike, problem_name: str, fingerprint: str) -> Path:
    """Where the table of a problem lives: DIR/<problem name with '/' as '__'>__<fingerprint>.h5."""
    safe_name = problem_name.replace("/", "__").replace(os.sep, "__")
    return Path(directory) / f"{safe_name}__{fingerprint}.h5"


class EvaluationTable:
    """The memo of one problem: rows of evaluations keyed by subset, on disk and in memory.

    Build with `create` (writer) or `open` (reader, or writer with mode='a')."""

    #: The journal is merged into the HDF5 file once it holds this many rows and at least as
    #: many rows as the HDF5 file.
    compact_min_rows = 4096

    def __init__(self, path: Path):
        self.path = path
        self.writable = False
        self._closed = False
        self._lock: _WriterLock | None = None
        self._journal: _JournalWriter | None = None
        self._journal_rows = 0
        self._environment_id: int | None = None
        self._environment_extra: dict[str, Any] | None = None

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        fingerprint: str,
        n_blocks: int,
        n_samples: int,
        spec: dict,
        description: str = "",
        environment: dict | None = None,
    ) -> EvaluationTable:
        """Create the table at `path` and open it for writing; an existing table of the same
        fingerprint is opened for appending, one of another fingerprint is refused."""
        path = Path(path)
        if n_blocks < 1 or n_samples < 0:
            raise BadInput(f"a table needs n_blocks >= 1 and n_samples >= 0, got {n_blocks} and {n_samples}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TableError(f"cannot create directory {path.parent}: {error.strerror}") from None
        table = cls(path)
        table._lock = _WriterLock.acquire(path)
        try:
            if path.exists():
                table._load()
                table._check_fingerprint(fingerprint)
                if (table.n_blocks, table.n_samples) != (n_blocks, n_samples):
                    raise TableError(
                        f"table {path} has n_blocks={table.n_blocks}, n_samples={table.n_samples}, "
                        f"expected n_blocks={n_blocks}, n_samples={n_samples}"
                    )
            else:
                table._init_empty(fingerprint, n_blocks, n_samples, spec, description, environment)
                table._write_snapshot(generation=0)
            table._start_writing(environment)
        except BaseException:
            table._release()
            raise
        return table

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        mode: str = "r",
        expected_fingerprint: str | None = None,
        environment: dict | None = None,
    ) -> EvaluationTable:
        """Open an existing table for reading (mode='r', no lock, works while a writer is
        active) or appending (mode='a', takes the writer lock)."""
        path = Path(path)
        if mode not in ("r", "a"):
            raise BadInput(f"table mode must be 'r' or 'a', got {mode!r}")
        if not path.exists():
            raise TableError(f"table {path} does not exist")
        table = cls(path)
        if mode == "a":
            table._lock = _WriterLock.acquire(path)
        try:
            table._load()
            if expected_fingerprint is not None:
                table._check_fingerprint(expected_fingerprint)
            if mode == "a":
                table._start_writing(environment)
        except BaseException:
            table._release()
            raise
        return table

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._rows.n

    def __contains__(self, subset: Sequence[int]) -> bool:
        return self._key(subset) in self._index

    def lookup(self, subset: Sequence[int]) -> Evaluation | None:
        """The stored evaluation of `subset` (source 'table'), or None."""
        subset, key = self._canonical_key(subset)
        row = self._index.get(key)
        if row is None:
            return None
        return self._evaluation(row, subset)

    def canonical(self, subset: Sequence[int]) -> Subset:
        """`subset` as a sorted tuple, refusing invalid ones (a fast oracle.subset.canonical_subset)."""
        return self._canonical_key(subset)[0]

    def lookup_many(self, subsets: Iterable[Sequence[int]]) -> list[Evaluation | None]:
        """`lookup` of each subset, in order."""
        return [self.lookup(subset) for subset in subsets]

    def subsets(self) -> list[Subset]:
        """Every stored subset, in row order."""
        removed = self._removed_matrix()
        return [tuple(np.flatnonzero(row).tolist()) for row in removed]

    def rows(self) -> Iterator[Evaluation]:
        """Every stored evaluation (source 'table'), in row order."""
        for row, subset in enumerate(self.subsets()):
            yield self._evaluation(row, subset)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the columns: `removed` (bool, rows × n_blocks), `mask`, `loss`,
        `per_sample`, `per_sample_valid` (bool), `cost_s`, `source` (the stored source names),
        `time` and `environment` (index into `environments`)."""
        arrays = {name: self._rows.column(name).copy() for name in self._rows.names}
        arrays["per_sample_valid"] = arrays["per_sample_valid"].astype(bool)
        arrays["source"] = np.array(SOURCES)[arrays["source"]]
        arrays["removed"] = self._removed_matrix()
        return arrays

    def coverage(self) -> dict[str, Any]:
        """Rows per subset size, and how many of the possible singles and pairs are present."""
        counts = np.bincount(self._removed_matrix().sum(axis=1), minlength=3)
        n = self.n_blocks
        return {
            "by_size": {int(size): int(count) for size, count in enumerate(counts) if count},
            "singles": {"present": int(counts[1]), "possible": n},
            "pairs": {"present": int(counts[2]), "possible": n * (n - 1) // 2},
        }

    def info(self) -> dict[str, Any]:
        """Everything a person wants to know about the table, as plain data."""
        produced = np.bincount(self._rows.column("environment"), minlength=len(self._environments))
        journal = _journal_path(self.path)
        return {
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "description": self.description,
            "n_blocks": self.n_blocks,
            "n_samples": self.n_samples,
            "rows": len(self),
            "coverage": self.coverage(),
            "environment": self.environment,
            "environments": [
                {"environment": environment, "rows": int(produced[i])}
                for i, environment in enumerate(self._environments)
            ],
            "attributes": dict(self._extra),
            "created": self.created,
            "updated": self.updated,
            "format_version": self.format_version,
            "file_bytes": _size_or_zero(self.path),
            "journal_bytes": _size_or_zero(journal),
            "mode": "a" if self.writable else "r",
        }

    @property
    def environments(self) -> list[dict[str, Any]]:
        """Every environment that produced rows (the row column `environment` indexes it)."""
        return list(self._environments)

    def attribute(self, name: str) -> Any:
        """A root attribute: an extra JSON attribute or one of the built-in ones."""
        if name in self._extra:
            return self._extra[name]
        builtin = {
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "description": self.description,
            "n_blocks": self.n_blocks,
            "n_samples": self.n_samples,
            "format_version": self.format_version,
            "created": self.created,
            "updated": self.updated,
            "environment": self.environment,
            "environments": self.environments,
            "generation": self._generation,
            "source_codes": list(SOURCES),
        }
        if name not in builtin:
            raise KeyError(f"table {self.path} has no attribute {name!r}")
        return builtin[name]

    # ---- writing ------------------------------------------------------------------------

    def append(self, evaluations: Iterable[Evaluation]) -> int:
        """Store one batch of evaluations, skipping subsets already present; the batch is on
        disk when this returns. Returns the number of rows added."""
        self._check_writable()
        keys: list[bytes] = []
        fresh: list[Evaluation] = []
        seen: set[bytes] = set()
        for evaluation in evaluations:
            key = self._key(evaluation.subset)
            if key in self._index or key in seen:
                continue
            seen.add(key)
            keys.append(key)
            fresh.append(evaluation)
        if not fresh:
            return 0
        columns = self._columns_of(fresh, keys)
        self._journal.write_rows(columns)
        self._take_rows(columns)
        self._journal_rows += len(fresh)
        if self._journal_rows >= max(self.compact_min_rows, len(self) - self._journal_rows):
            self._compact()
        return len(fresh)

    def merge(self, others: Sequence[EvaluationTable]) -> list[tuple[int, list[str], list[str]]]:
        """Take from `others`, tables of the same problem built elsewhere (parallel builds, other
        machines), the rows this one lacks, with their times and build environments, and the
        extra attributes this one lacks; an attribute already held keeps this table's value.
        Tables of another fingerprint, or whose calibration tokens differ, are refused before
        anything is written. Per other table: (rows added, attributes added, attributes held
        with another value)."""
        self._check_writable()
        digest = self._extra.get("token_digest")
        for other in others:
            if other.fingerprint != self.fingerprint:
                raise FingerprintMismatch(f"table {other.path} (fingerprint {other.fingerprint}) is not of the "
                                          f"problem of table {self.path} (fingerprint {self.fingerprint})")
            if (other.n_blocks, other.n_samples) != (self.n_blocks, self.n_samples):
                raise TableError(f"table {other.path} has {other.n_blocks} blocks and {other.n_samples} samples per "
                                 f"row, table {self.path} {self.n_blocks} and {self.n_samples}")
            theirs = other._extra.get("token_digest")
            if digest is not None and theirs is not None and theirs != digest:
                raise TokenMismatch(f"table {other.path} was built on other calibration tokens than the tables "
                                    f"merged into {self.path}")
            digest = digest or theirs
        return [self._merge_one(other) for other in others]

    def _merge_one(self, other: EvaluationTable) -> tuple[int, list[str], list[str]]:
        masks = other._rows.column("mask")
        fresh = [row for row in range(len(masks)) if masks[row].tobytes() not in self._index]
        if fresh:
            columns = {name: other._rows.column(name)[fresh].copy() for name in other._rows.names}
            environments = self._environments + [environment for environment in other._environments
                                                 if environment not in self._environments]
            if environments != self._environments:
                self._journal.write_attribute("environments", environments)
                self._apply_attribute("environments", environments, time.time())
            ids = np.array([environments.index(environment) for environment in other._environments], dtype="<u2")
            columns["environment"] = ids[columns["environment"]]
            self._journal.write_rows(columns)
            self._take_rows(columns)
            self._journal_rows += len(fresh)
            self.updated = _iso(time.time())  # the rows keep their times; the table changed now
        added = [name for name in sorted(other._extra) if name not in self._extra]
        differing = [name for name in sorted(other._extra) if name in self._extra
                     and canonical_json(self._extra[name]) != canonical_json(other._extra[name])]
        for name in added:
            self.set_attribute(name, other._extra[name])
        if self._journal_rows >= max(self.compact_min_rows, len(self) - self._journal_rows):
            self._compact()
        return len(fresh), added, differing

    def set_attribute(self, name: str, value: Any) -> None:
        """Store an extra JSON attribute (e.g. block scores) in the table."""
        self._check_writable()
        if name in _BUILTIN_ATTRIBUTES:
            raise BadInput(f"attribute name {name!r} is reserved by the table format")
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise BadInput(f"attribute {name!r} is not JSON data: {error}") from None
        self._journal.write_attribute(name, value)
        self._apply_attribute(name, value, time.time())

    def close(self) -> None:
        """Merge the journal into the HDF5 file and release the writer lock (writers); a
        closed table still answers lookups from memory."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.writable and self._journal is not None:
                self._journal.close()
                if self._journal_rows or self._journal_attributes:
                    self._compact(start_journal=False)
                _unlink_quietly(_journal_path(self.path))
        finally:
            self.writable = False
            self._release()

    def __enter__(self) -> EvaluationTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "a" if self.writable else "r"
        return f"EvaluationTable({str(self.path)!r}, rows={len(self)}, mode={mode!r})"

    # ---- details: keys and rows ---------------------------------------------------------

    def _key(self, subset: Sequence[int]) -> bytes:
        return self._canonical_key(subset)[1]

    def _canonical_key(self, subset: Sequence[int]) -> tuple[Subset, bytes]:
        """The canonical subset and its packed bit mask (the bytes of
        oracle.subset.pack_subset), refusing invalid subsets."""
        bits = 0
        n = self.n_blocks
        if not isinstance(subset, (tuple, list)):
            return self._canonical_key(canonical_subset(subset, n))
        for block in subset:
            # Anything but a valid plain int goes through canonical_subset for its checks.
            if type(block) is not int or not 0 <= block < n or bits >> block & 1:
                return self._canonical_key(canonical_subset(subset, n))
            bits |= 1 << block
        return tuple(sorted(subset)), bits.to_bytes(self._width, "little")

    def _evaluation(self, row: int, subset: Subset) -> Evaluation:
        data = self._rows.data
        per_sample = data["per_sample"][row].copy() if data["per_sample_valid"][row] else None
        return Evaluation(subset, float(data["loss"][row]), per_sample, float(data["cost_s"][row]), "table")

    def _removed_matrix(self) -> np.ndarray:
        masks = self._rows.column("mask")
        return np.unpackbits(masks, axis=1, bitorder="little")[:, : self.n_blocks].astype(bool)

    def _columns_of(self, evaluations: list[Evaluation], keys: list[bytes]) -> dict[str, np.ndarray]:
        n = len(evaluations)
        per_sample = np.full((n, self.n_samples), np.nan, dtype="<f4")
        valid = np.zeros(n, dtype="u1")
        for i, evaluation in enumerate(evaluations):
            if evaluation.source not in _SOURCE_CODE:
                raise BadInput(f"evaluation source {evaluation.source!r} is not one of {list(SOURCES)}")
            if evaluation.per_sample is not None:
                values = np.asarray(evaluation.per_sample, dtype="<f4").reshape(-1)
                if values.shape[0] != self.n_samples:
                    raise BadInput(
                        f"evaluation of {list(evaluation.subset)} has {values.shape[0]} per-sample "
                        f"losses, table {self.path} holds {self.n_samples} per row"
                    )
                per_sample[i] = values
                valid[i] = 1
        now = time.time()
        return {
            "mask": np.frombuffer(b"".join(keys), dtype="u1").reshape(n, self._width),
            "loss": np.array([float(e.loss) for e in evaluations], dtype="<f8"),
            "per_sample": per_sample,
            "per_sample_valid": valid,
            "cost_s": np.array([float(e.cost_s) for e in evaluations], dtype="<f8"),
            "source": np.array([_SOURCE_CODE[e.source] for e in evaluations], dtype="u1"),
            "time": np.full(n, now, dtype="<f8"),
            "environment": np.full(n, self._writer_environment_id(), dtype="<u2"),
        }

    def _take_rows(self, columns: dict[str, np.ndarray]) -> None:
        """Add rows to memory, dropping any whose mask is already indexed (a journal replayed
        over a file that already merged it)."""
        masks = columns["mask"]
        keep = []
        for i in range(len(masks)):
            key = masks[i].tobytes()
            if key not in self._index:
                self._index[key] = self._rows.n + len(keep)
                keep.append(i)
        if len(keep) == len(masks):
            self._rows.extend(columns)
        elif keep:
            self._rows.extend({name: column[keep] for name, column in columns.items()})
        if keep:
            self.updated = _iso(float(columns["time"][keep].max()))

    def _writer_environment_id(self) -> int:
        if self._environment_id is None:
            # Taken at the first row, once the libraries that computed it (torch) are loaded, and
            # normalised like the environments read back from JSON to compare with them.
            current = json.loads(canonical_json(current_environment(self._environment_extra)))
            if current in self._environments:
                self._environment_id = self._environments.index(current)
            else:
                environments = self._environments + [current]
                self._journal.write_attribute("environments", environments)
                self._apply_attribute("environments", environments, time.time())
                self._environment_id = len(environments) - 1
        return self._environment_id

    def _apply_attribute(self, name: str, value: Any, when: float) -> None:
        if name == "environments":
            self._environments = list(value)
        else:
            self._extra[name] = value
        self._journal_attributes += 1
        self.updated = _iso(when)

    def _check_writable(self) -> None:
        if not self.writable:
            state = "closed" if self._closed else "open read-only"
            raise TableError(f"table {self.path} is {state}; open it with mode='a' to write")

    def _check_fingerprint(self, expected: str) -> None:
        if self.fingerprint != expected:
            raise FingerprintMismatch(
                f"table {self.path} was built for fingerprint {self.fingerprint}, "
                f"but the problem has fingerprint {expected}"
            )

    # ---- details: files -----------------------------------------------------------------

    def _init_empty(self, fingerprint, n_blocks, n_samples, spec, description, environment) -> None:
        self.fingerprint = str(fingerprint)
        self.n_blocks = int(n_blocks)
        self.n_samples = int(n_samples)
        self.spec = json.loads(canonical_json(spec))
        self.description = str(description)
        self.format_version = FORMAT_VERSION
        self.created = self.updated = _iso(time.time())
        self.environment = json.loads(canonical_json(current_environment(environment)))
        self._environments = []
        self._extra: dict[str, Any] = {}
        self._generation = 0
        self._width = packed_width(self.n_blocks)
        self._rows = _Rows(self._width, self.n_samples)
        self._index: dict[bytes, int] = {}
        self._journal_records = self._journal_rows = self._journal_attributes = 0

    def _load(self) -> None:
        """Read the HDF5 file and the journal of its generation into memory."""
        for _ in range(50):
            try:
                handle = _open_h5(self.path)
            except FileNotFoundError:
                # Between a compaction's rename and our open the name always exists; a missing
                # file here means it was deleted.
                raise TableError(f"table {self.path} does not exist") from None
            with handle:
                inode = os.fstat(handle.id.get_vfd_handle()).st_ino
                self._read_h5(handle)
            journal = _read_journal(_journal_path(self.path), self._width, self.n_samples)
            try:
                replaced = os.stat(self.path).st_ino != inode
            except FileNotFoundError:
                replaced = True
            if replaced or (journal is not None and journal.generation > self._generation):
                continue  # a writer compacted while we read: read the new file
            self._journal_records = self._journal_rows = self._journal_attributes = 0
            # A journal of an older generation was merged before the writer died: ignore it.
            if journal is not None and journal.generation == self._generation:
                for kind, payload in journal.records:
                    if kind == "rows":
                        self._take_rows(payload)
                        self._journal_rows += len(payload["loss"])
                    else:
                        self._apply_attribute(payload["name"], payload["value"], payload["time"])
                self._journal_records = len(journal.records)
            return
        raise TableError(f"table {self.path} kept changing while being read; try again")

    def _read_h5(self, handle: h5py.File) -> None:
        attrs = handle.attrs
        try:
            missing = [name for name in _REQUIRED_ATTRIBUTES if name not in attrs]
            if missing:
                raise _not_a_table(self.path, f"no {missing[0]!r} attribute")
            format_version = int(attrs["format_version"])
            if format_version > FORMAT_VERSION:
                raise TableError(
                    f"table {self.path} has format version {format_version}; this depthbench "
                    f"reads up to {FORMAT_VERSION}"
                )
            self.fingerprint = _text(attrs["fingerprint"])
            self.n_blocks = int(attrs["n_blocks"])
            self.n_samples = int(attrs["n_samples"])
            self.format_version = format_version
            self._generation = int(attrs["generation"])
            self.spec = json.loads(_text(attrs.get("spec", "{}")))
            self.description = _text(attrs.get("description", ""))
            self.created = _text(attrs.get("created", ""))
            self.updated = _text(attrs.get("updated", ""))
            self.environment = json.loads(_text(attrs.get("environment", "{}")))
            self._environments = json.loads(_text(attrs.get("environments", "[]")))
            self._extra = {
                name: json.loads(_text(value)) for name, value in attrs.items() if name not in _BUILTIN_ATTRIBUTES
            }
            self._width = packed_width(self.n_blocks)
            self._rows = _Rows(self._width, self.n_samples)
            columns = {}
            for name in self._rows.names:
                if name not in handle:
                    raise _not_a_table(self.path, f"no {name!r} dataset")
                columns[name] = handle[name][()]
        # RuntimeError: what h5py raises iterating over damaged attributes.
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
            raise _not_a_table(self.path, str(error).splitlines()[0] if str(error) else type(error).__name__) from None
        n = len(columns["loss"])
        for name, column in columns.items():
            expected = (n,) + self._rows.row_shape[name]
            if column.shape != expected:
                raise _not_a_table(self.path, f"dataset {name!r} has shape {column.shape}, expected {expected}")
        if n and columns["source"].max() >= len(SOURCES):
            raise _not_a_table(self.path, f"source codes up to {columns['source'].max()}, expected < {len(SOURCES)}")
        self._rows.extend(columns)
        buffer = self._rows.column("mask").tobytes()
        width = self._width
        self._index = {buffer[i * width : (i + 1) * width]: i for i in range(n)}

    def _start_writing(self, environment: dict | None) -> None:
        """Become the writer: merge what a dead writer left in the journal, then start a fresh
        journal of the current generation."""
        for pattern in (".tmp*", ".journal.tmp*"):
            for stale in self.path.parent.glob(glob.escape(self.path.name) + pattern):
                _unlink_quietly(stale)
        self._environment_extra = environment
        if self._journal_records:
            self._compact(start_journal=False)
        self._journal = _JournalWriter.start(_journal_path(self.path), self._generation, self._width, self.n_samples)
        self._journal_rows = 0
        self._journal_attributes = 0
        self.writable = True

    def write_rekeyed(self, path: Path, fingerprint: str, spec: dict[str, Any]) -> None:
        """Write this table's rows and attributes as a new table file at `path` whose problem has
        fingerprint `fingerprint` and spec `spec`. For a problem whose spec changed but whose
        values did not (the caller checks that): the rows keep their costs, times and sources."""
        if path.exists():
            raise BadInput(f"table {path} exists already: merge into it with `bench table merge`")
        self._write_snapshot(1, path, fingerprint, spec)

    def _compact(self, start_journal: bool = True) -> None:
        """Write every row into a new HDF5 file and rename it over the old one."""
        self._write_snapshot(self._generation + 1)
        self._generation += 1
        self._journal_rows = 0
        self._journal_attributes = 0
        if start_journal:
            self._journal.close()
            self._journal = _JournalWriter.start(_journal_path(self.path), self._generation, self._width, self.n_samples)

    def _write_snapshot(self, generation: int, path: Path | None = None, fingerprint: str | None = None,
                        spec: dict[str, Any] | None = None) -> None:
        """Write every row and attribute into a new HDF5 file and rename it to `path` (default:
        over this table's file), under another fingerprint and spec when given."""
        path = path or self.path
        temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with h5py.File(temporary, "w", locking=False) as handle:
                attrs = handle.attrs
                attrs["fingerprint"] = fingerprint or self.fingerprint
                attrs["spec"] = canonical_json(spec or self.spec)
                attrs["description"] = self.description
                attrs["n_blocks"] = self.n_blocks
                attrs["n_samples"] = self.n_samples
                attrs["format_version"] = FORMAT_VERSION
                attrs["generation"] = generation
                attrs["created"] = self.created
                attrs["updated"] = self.updated
                attrs["environment"] = canonical_json(self.environment)
                attrs["environments"] = canonical_json(self._environments)
                attrs["source_codes"] = canonical_json(list(SOURCES))
                for name, value in self._extra.items():
                    attrs[name] = json.dumps(value, sort_keys=True)
                for name in self._rows.names:
                    column = self._rows.column(name)
                    row_shape = self._rows.row_shape[name]
                    chunks = None if 0 in row_shape else (_chunk_rows(len(column), column.dtype, row_shape),) + row_shape
                    handle.create_dataset(name, data=column, maxshape=(None,) + row_shape, chunks=chunks)
            _fsync_path(temporary)
            os.replace(temporary, path)
            _fsync_path(path.parent)
        except OSError as error:
            _unlink_quietly(temporary)
            raise TableError(f"cannot write table {path}: {error}") from None

    def _release(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class _Rows:
    """The table's columns in memory, grown by doubling so appends stay cheap."""

    def __init__(self, width: int, n_samples: int):
        self.row_shape = {
            "mask": (width,),
            "loss": (),
            "per_sample": (n_samples,),
            "per_sample_valid": (),
            "cost_s": (),
            "source": (),
            "time": (),
            "environment": (),
        }
        self.dtypes = {
            "mask": np.dtype("u1"),
            "loss": np.dtype("<f8"),
            "per_sample": np.dtype("<f4"),
            "per_sample_valid": np.dtype("u1"),
            "cost_s": np.dtype("<f8"),
            "source": np.dtype("u1"),
            "time": np.dtype("<f8"),
            "environment": np.dtype("<u2"),
        }
        self.names = tuple(self.row_shape)
        self.n = 0
        self.data = {name: np.empty((0,) + self.row_shape[name], self.dtypes[name]) for name in self.names}

    def extend(self, columns: dict[str, np.ndarray]) -> None:
        added = len(columns["loss"])
        needed = self.n + added
        if needed > len(self.data["loss"]):
            capacity = max(needed, 2 * len(self.data["loss"]), 64)
            for name, old in self.data.items():
                grown = np.empty((capacity,) + self.row_shape[name], self.dtypes[name])
                grown[: self.n] = old[: self.n]
                self.data[name] = grown
        for name in self.names:
            self.data[name][self.n : needed] = columns[name]
        self.n = needed

    def column(self, name: str) -> np.ndarray:
        return self.data[name][: self.n]


# ---- journal ----------------------------------------------------------------------------

_JOURNAL_MAGIC = b"DBJRNL1\n"
_JOURNAL_HEADER = struct.Struct("<8sQII")  # magic, generation, mask width, n_samples
_RECORD_HEADER = struct.Struct("<4sII")  # kind, payload length, CRC32 of payload
_ROWS, _ATTRIBUTE = b"ROWS", b"ATTR"


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


class _JournalWriter:
    """Append-only file of framed records; a record is durable once `write_*` returns."""

    def __init__(self, path: Path, handle):
        self.path = path
        self.handle = handle
        self.end = handle.tell()

    @classmethod
    def start(cls, path: Path, generation: int, width: int, n_samples: int) -> _JournalWriter:
        """A fresh, empty journal for `generation`, put in place atomically."""
        temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(_JOURNAL_HEADER.pack(_JOURNAL_MAGIC, generation, width, n_samples))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            _fsync_path(path.parent)
            handle = open(path, "r+b")
            handle.seek(0, os.SEEK_END)
        except OSError as error:
            _unlink_quietly(temporary)
            raise TableError(f"cannot write journal {path}: {error}") from None
        return cls(path, handle)

    def write_rows(self, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["loss"])
        parts = [struct.pack("<I", n)]
        parts += [np.ascontiguousarray(columns[name]).tobytes() for name in _JOURNAL_COLUMNS]
        self._write(_ROWS, b"".join(parts))

    def write_attribute(self, name: str, value: Any) -> None:
        payload = json.dumps({"name": name, "value": value, "time": time.time()}).encode()
        self._write(_ATTRIBUTE, payload)

    def _write(self, kind: bytes, payload: bytes) -> None:
        record = _RECORD_HEADER.pack(kind, len(payload), zlib.crc32(payload)) + payload
        try:
            self.handle.write(record)
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as error:
            # A torn record would hide every later one from replay: cut it off.
            try:
                self.handle.seek(self.end)
                self.handle.truncate()
            except OSError:
                pass
            raise TableError(f"cannot write journal {self.path}: {error}") from None
        self.end += len(record)

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


_JOURNAL_COLUMNS = ("mask", "loss", "per_sample", "per_sample_valid", "cost_s", "source", "time", "environment")


class _Journal:
    """What a journal file holds: its generation and its complete records."""

    def __init__(self, generation: int, records: list[tuple[str, Any]]):
        self.generation = generation
        self.records = records


def _read_journal(path: Path, width: int, n_samples: int) -> _Journal | None:
    """Parse the journal, stopping at the first incomplete or corrupt record (the one a killed
    writer was writing). None if there is no usable journal."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TableError(f"cannot read journal {path}: {error}") from None
    if len(data) < _JOURNAL_HEADER.size:
        return None
    magic, generation, journal_width, journal_samples = _JOURNAL_HEADER.unpack_from(data)
    if magic != _JOURNAL_MAGIC or (journal_width, journal_samples) != (width, n_samples):
        return None
    row_shapes = _Rows(width, n_samples)
    records: list[tuple[str, Any]] = []
    offset = _JOURNAL_HEADER.size
    while offset + _RECORD_HEADER.size <= len(data):
        kind, length, checksum = _RECORD_HEADER.unpack_from(data, offset)
        start = offset + _RECORD_HEADER.size
        payload = data[start : start + length]
        if len(payload) != length or zlib.crc32(payload) != checksum or kind not in (_ROWS, _ATTRIBUTE):
            break
        if kind == _ROWS:
            records.append(("rows", _decode_rows(payload, row_shapes)))
        else:
            records.append(("attribute", json.loads(payload)))
        offset = start + length
    return _Journal(generation, records)


def _decode_rows(payload: bytes, rows: _Rows) -> dict[str, np.ndarray]:
    (n,) = struct.unpack_from("<I", payload)
    offset = 4
    columns = {}
    for name in _JOURNAL_COLUMNS:
        shape = (n,) + rows.row_shape[name]
        dtype = rows.dtypes[name]
        count = int(np.prod(shape))
        columns[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * dtype.itemsize
    return columns


# ---- lock -------------------------------------------------------------------------------


class _WriterLock:
    """Exclusive, non-blocking flock on PATH.lock, which holds the writer's pid."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, table: Path) -> _WriterLock:
        path = table.with_name(table.name + ".lock")
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise TableError(f"cannot lock table {table}: {error.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise TableLocked(f"table {table} is being written by another process (pid {pid})") from None
                raise TableError(f"cannot lock table {table}: {error.strerror}") from None
            # The previous writer unlinks the lock file before unlocking it; if we locked such an
            # unlinked file, try again on the current one.
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        _unlink_quietly(self.path)
        os.close(self.fd)


# ---- small helpers ----------------------------------------------------------------------


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EISDIR):
            # os.strerror: h5py's own strerror spans several lines of HDF5 detail.
            raise TableError(f"cannot read table {path}: {os.strerror(error.errno)}") from None
        raise _not_a_table(path, "not an HDF5 file") from None


def _chunk_rows(n_rows: int, dtype: np.dtype, row_shape: tuple[int, ...]) -> int:
    """Rows per chunk: the whole column while small (small files stay small), at most ~1 MiB."""
    row_bytes = dtype.itemsize * int(np.prod(row_shape))
    return int(min(max(n_rows, 1), max(1, (1 << 20) // row_bytes), 16384))


def _not_a_table(path: Path, reason: str) -> TableError:
    return TableError(f"{path} is not a depthbench table ({reason})")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
