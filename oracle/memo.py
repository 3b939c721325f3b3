"""Oracles backed by an evaluation table: MemoOracle writes every new evaluation through to the
table; ReplayOracle answers from the table and decides what a miss means.

Both also serve the per-block criteria of the live model (`block_scores`, `run_distances`,
`removal_order`, …): a value stored as a table attribute (`block_scores/<criterion>`,
`run_distances/<length>`, `removal_order/<criterion>`, JSON lists) is returned as is; otherwise
it is computed by the live oracle, if there is one, and stored when the table is writable, so a
later strict replay needs no model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from oracle.errors import BadInput, FingerprintMismatch, TableError, TableMiss
from oracle.evaluation import Evaluation, Oracle, OracleCounters
from oracle.subset import Subset
from oracle.table import EvaluationTable

ON_MISS = ("strict", "live", "surrogate")


# Evaluates a batch of misses and yields their evaluations in chunks, each stored on arrival.
Chunks = Callable[[Sequence[Subset]], Iterable[list[Evaluation]]]


class MemoOracle:
    """Write-through memo: requests found in the table are hits (source 'table'); the misses of
    a batch go to `inner` as one batch, once each, and are appended to the table. An inner
    oracle with `evaluate_iter` (LiveOracle, RayOracle) hands them back chunk by chunk, and each
    chunk is appended as it arrives, so an interrupted batch keeps every finished chunk."""

    def __init__(self, inner: Oracle, table: EvaluationTable):
        _check_compatible(inner, table, role="inner")
        if not table.writable:
            raise TableError(f"table {table.path} is open read-only; MemoOracle writes, open it with mode='a'")
        self.inner = inner
        self.table = table
        self.n_blocks = table.n_blocks
        self.fingerprint = table.fingerprint
        self.counters = OracleCounters()

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        """L(S) of each subset, in request order."""
        return _serve(self.table, subsets, self.counters, _chunks_of(self.inner))

    def block_scores(self, criterion: str) -> np.ndarray:
        """Per-block scores of `criterion`, from the table or computed by the inner oracle."""
        return _stored_scores(self.table, self.inner, "block_scores", criterion, f"criterion {criterion!r}")

    def run_distances(self, length: int) -> np.ndarray:
        """Angular distance of every run of `length` blocks, from the table or the inner oracle."""
        return _stored_scores(self.table, self.inner, "run_distances", length, f"run distances of length {length}")

    def segment_information(self, estimator: str = "gaussian") -> np.ndarray:
        """Hidden-state MI between block boundaries, from the table or the inner oracle."""
        return _stored_scores(self.table, self.inner, "segment_information", estimator,
                              f"segment information ({estimator})")

    def removal_order(self, criterion: str) -> np.ndarray:
        """Iterative removal order under a hidden-state criterion, from the table or the inner oracle."""
        return _stored_scores(self.table, self.inner, "removal_order", criterion, f"removal order {criterion!r}")


class ReplayOracle:
    """Answers from a table. A miss raises TableMiss (on_miss='strict'), is evaluated by `live`
    and written to the table when it is open for writing (on_miss='live'), or is predicted by a
    surrogate fitted on the table's rows (on_miss='surrogate', source 'surrogate', counted in
    `counters.surrogate` and never stored)."""

    def __init__(self, table: EvaluationTable, on_miss: str = "strict", live: Oracle | None = None):
        if on_miss not in ON_MISS:
            raise BadInput(f"on_miss must be one of {list(ON_MISS)}, got {on_miss!r}")
        if on_miss == "live":
            if live is None:
                raise BadInput("on_miss='live' needs a live oracle to evaluate misses")
            _check_compatible(live, table, role="live")
        self.table = table
        self.on_miss = on_miss
        self.live = live
        self.n_blocks = table.n_blocks
        self.fingerprint = table.fingerprint
        self.counters = OracleCounters()
        self._surrogate = None

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        """L(S) of each subset, in request order."""
        if self.on_miss == "live":
            evaluate_misses = _chunks_of(self.live)
        else:
            evaluate_misses = _one_chunk(self._predict if self.on_miss == "surrogate" else self._refuse)
        return _serve(self.table, subsets, self.counters, evaluate_misses)

    def _predict(self, misses: Sequence[Subset]) -> list[Evaluation]:
        if self._surrogate is None:  # fitted (and scikit-learn imported) on the first miss only
            from oracle.surrogate import Surrogate

            self._surrogate = Surrogate.from_table(self.table)
        return self._surrogate.evaluate(misses)

    def block_scores(self, criterion: str) -> np.ndarray:
        """Per-block scores of `criterion`, from the table or (on_miss='live') the live oracle."""
        live = self.live if self.on_miss == "live" else None
        return _stored_scores(self.table, live, "block_scores", criterion, f"criterion {criterion!r}")

    def run_distances(self, length: int) -> np.ndarray:
        """Angular distance of every run of `length` blocks, from the table or the live oracle."""
        live = self.live if self.on_miss == "live" else None
        return _stored_scores(self.table, live, "run_distances", length, f"run distances of length {length}")

    def segment_information(self, estimator: str = "gaussian") -> np.ndarray:
        """Hidden-state MI between block boundaries, from the table or (on_miss='live') the live oracle."""
        live = self.live if self.on_miss == "live" else None
        return _stored_scores(self.table, live, "segment_information", estimator,
                              f"segment information ({estimator})")

    def removal_order(self, criterion: str) -> np.ndarray:
        """Iterative removal order under a hidden-state criterion, from the table or (on_miss='live')
        the live oracle."""
        live = self.live if self.on_miss == "live" else None
        return _stored_scores(self.table, live, "removal_order", criterion, f"removal order {criterion!r}")

    def _refuse(self, misses: Sequence[Subset]) -> list[Evaluation]:
        raise TableMiss(misses[0], str(self.table.path))


def _serve(
    table: EvaluationTable,
    subsets: Sequence[Subset],
    counters: OracleCounters,
    evaluate_misses: Chunks,
) -> list[Evaluation]:
    """Answer a batch from the table, evaluate its unique misses in one call, store each chunk
    of evaluations as it comes back.

    Counters: every request counts; a hit is a request answered by a row present before the
    batch; a repeat of a missed subset inside the batch is neither a hit nor a new evaluation."""
    requests: list[Subset] = []
    answers: dict[Subset, Evaluation] = {}
    missed: dict[Subset, None] = {}  # insertion-ordered set
    for subset in subsets:
        found = table.lookup(subset)
        if found is None:
            subset = table.canonical(subset)
            missed[subset] = None
        else:
            subset = found.subset
            answers[subset] = found
        requests.append(subset)
    hits = len(requests) - sum(1 for subset in requests if subset in missed)
    if missed:
        for chunk in evaluate_misses(list(missed)):
            _store(table, chunk, missed, answers, counters)
        unanswered = [list(subset) for subset in missed if subset not in answers]
        if unanswered:
            raise RuntimeError(f"oracle returned no evaluation of {len(unanswered)} subsets it was asked for, "
                               f"the first {unanswered[0]}")
    counters.requests += len(requests)
    counters.hits += hits
    return [answers[subset] for subset in requests]


def _store(
    table: EvaluationTable,
    chunk: list[Evaluation],
    missed: dict[Subset, None],
    answers: dict[Subset, Evaluation],
    counters: OracleCounters,
) -> None:
    """Take one chunk of fresh evaluations as answers, append the measured ones to the table
    and count them; a chunk with a subset not asked for, or answered twice, is refused whole."""
    fresh: dict[Subset, Evaluation] = {}
    for evaluation in chunk:
        subset = tuple(evaluation.subset)
        if subset not in missed or subset in answers or subset in fresh:
            raise RuntimeError(f"oracle returned an evaluation of {list(subset)}, "
                               "which it was not asked for or had already answered")
        fresh[subset] = evaluation
    measured = [evaluation for evaluation in chunk if evaluation.source != "surrogate"]
    if table.writable and measured:
        table.append(measured)
    answers.update(fresh)
    counters.evaluations += len(measured)
    counters.surrogate += len(chunk) - len(measured)
    counters.cost_s += sum(float(evaluation.cost_s) for evaluation in measured)


def _chunks_of(oracle: Oracle) -> Chunks:
    """The oracle's `evaluate_iter` where it has one, else its `evaluate` as one chunk."""
    return getattr(oracle, "evaluate_iter", None) or _one_chunk(oracle.evaluate)


def _one_chunk(evaluate: Callable[[Sequence[Subset]], list[Evaluation]]) -> Chunks:
    return lambda misses: [evaluate(misses)]


def _stored_scores(table: EvaluationTable, live: Oracle | None, method: str, argument, what: str) -> np.ndarray:
    """The attribute `<method>/<argument>` of the table, else `live.<method>(argument)` stored
    in the table when it is writable; BadInput when neither is available."""
    name = f"{method}/{argument}"
    try:
        return np.asarray(table.attribute(name), dtype=float)
    except KeyError:
        pass
    compute = getattr(live, method, None)
    if compute is None:
        raise BadInput(f"{what} is not stored in table {table.path} and no live model is available")
    values = np.asarray(compute(argument), dtype=float)
    if table.writable:
        table.set_attribute(name, values.tolist())
    return values


def _check_compatible(oracle: Oracle, table: EvaluationTable, role: str) -> None:
    if oracle.fingerprint != table.fingerprint:
        raise FingerprintMismatch(
            f"table {table.path} was built for fingerprint {table.fingerprint}, "
            f"but the {role} oracle has fingerprint {oracle.fingerprint}"
        )
    if oracle.n_blocks != table.n_blocks:
        raise TableError(
            f"table {table.path} has n_blocks={table.n_blocks}, the {role} oracle has {oracle.n_blocks}"
        )
