"""LiveOracle: L(S) computed on the model with the blocks of S skipped.

Prefix reuse: the hidden state after block j depends only on which of blocks 0..j are removed.
For each calibration batch the states of the dense model are cached (up to a memory budget), so
blocks before a subset's first removed block are never recomputed; within one request batch,
subsets are visited in lexicographic order of their masks and share every deeper prefix they
have in common with the previous subset.

Hidden-state criteria (ALGORITHMS.md §3) come from the same dense states h_0 (embeddings) …
h_N (after the last block, before the final norm, so the last block compares like with like);
padding tokens are ignored and these forwards are not evaluations."""

import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from oracle.block_runner import BlockRunner
from oracle.devices import CPU_DENSE_CACHE_BYTES, to_host
from oracle.errors import BadInput
from oracle.evaluation import Evaluation, OracleCounters, rank_key
from oracle.mutual_information import canonical_information, principal_basis
from oracle.objectives import PreparedObjective
from oracle.subset import Subset

# Subsets per chunk of `evaluate_iter`: a killed build loses at most this many evaluations, and
# a chunk boundary costs one shared prefix recomputed.
STORED_CHUNK = 16


class LiveOracle:
    def __init__(
        self,
        runner: BlockRunner,
        objective,
        prepared: PreparedObjective,
        fingerprint: str,
        prefix_reuse: bool = True,
        dense_cache_bytes: int = CPU_DENSE_CACHE_BYTES,
    ):
        self.runner = runner
        self.objective = objective
        self.prepared = prepared
        self.fingerprint = fingerprint
        self.n_blocks = runner.n_blocks
        self.n_samples = prepared.n_samples
        self.prefix_reuse = prefix_reuse
        self.dense_cache_bytes = dense_cache_bytes
        self.counters = OracleCounters()
        self._batches = [batch.to(str(runner.device)) for batch in prepared.batches]
        self._dense: dict[int, list[torch.Tensor]] = {}
        self._reference: dict[int, torch.Tensor] = {}  # kl: dense distributions per batch
        self._dense_bytes = 0
        self._summary: tuple[np.ndarray, np.ndarray] | None = None
        self._segment_information: np.ndarray | None = None

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        self.counters.requests += len(subsets)
        unique = sorted(set(subsets), key=lambda subset: visit_order(subset, self.n_blocks))
        if not unique:
            return []
        started = time.perf_counter()
        logprobs = self._logprobs(unique)
        cost = (time.perf_counter() - started) / len(unique)
        results = {}
        for subset in unique:
            per_sample = self.objective.reduce(self.prepared, logprobs[subset])
            loss = float(np.mean(per_sample))
            results[subset] = Evaluation(subset, loss, per_sample.astype(np.float32), cost, "live")
        self.counters.evaluations += len(unique)
        self.counters.cost_s += cost * len(unique)
        return [results[subset] for subset in subsets]

    def evaluate_iter(self, subsets: Sequence[Subset], chunk: int = STORED_CHUNK) -> Iterator[list[Evaluation]]:
        """The distinct subsets of a batch, `chunk` at a time in visit order: a caller that stores
        each chunk as it comes (MemoOracle) keeps every finished one if the batch is interrupted.
        The values are those of one `evaluate` of the whole batch (each subset is computed on
        its own; the dense states stay cached across chunks)."""
        unique = sorted(set(subsets), key=lambda subset: visit_order(subset, self.n_blocks))
        for start in range(0, len(unique), chunk):
            yield self.evaluate(unique[start : start + chunk])

    def _logprobs(self, unique: list[Subset]) -> dict[Subset, torch.Tensor]:
        """Scored log-probabilities of each subset, every batch's in order, on the CPU: they
        leave the device once per subset."""
        logprobs = {subset: [] for subset in unique}
        with torch.no_grad():
            for index, batch in enumerate(self._batches):
                for subset, scores in self._run_batch(index, batch, unique):
                    logprobs[subset].append(scores)
        return {subset: to_host(torch.cat(pieces)) for subset, pieces in logprobs.items()}

    def block_scores(self, criterion: str) -> np.ndarray:
        """Per-block scores, shape (N,), lower = more removable.
        'cosine' (ShortGPT Block Influence): mean over real tokens of 1 − cos(h_i, h_{i+1});
        'angular' (Gromov et al.): mean over samples of arccos(cos(h_i, h_{i+1}))/π at the
        last real token of each sample; both from the unpruned model only.
        'accuracy' (multiple-choice objectives): relevance 1 − max(acc(f−i) − r, 0)/(acc(f) − r)
        with r the accuracy of a random predictor; costs N+1 evaluations."""
        if criterion == "cosine":
            return self._hidden_state_summary()[0].copy()
        if criterion == "angular":
            return self.run_distances(1)
        if criterion == "accuracy":
            return self._accuracy_relevance()
        raise BadInput(f"criterion {criterion!r} is not available from the live oracle (cosine, angular, accuracy)")

    def removal_order(self, criterion: str) -> np.ndarray:
        """Iterative removal under a hidden-state criterion ('cosine' or 'angular', per block):
        remove the block of lowest score, measure the scores again on the model without it, and
        repeat until one block is left. The N − 1 blocks in the order removed: the first k are
        the iterative answer at k, the first alone is one-shot's. N − 1 forwards of ever smaller
        models, none of them an evaluation."""
        if criterion not in ("cosine", "angular"):
            raise BadInput(f"criterion {criterion!r} has no iterative removal order (cosine, angular)")
        removed: list[int] = []
        for _ in range(self.n_blocks - 1):
            scores = self.criteria_without(tuple(sorted(removed)))[criterion]
            kept = [block for block in range(self.n_blocks) if block not in removed]
            if not np.isfinite(scores[kept]).any():
                raise BadInput(f"criterion {criterion!r} is not finite for any block of the model without "
                               f"{sorted(removed)}: no removal order")
            removed.append(min(kept, key=lambda block: (rank_key(float(scores[block])), block)))
        return np.array(removed)

    def criteria_without(self, removed: Subset) -> dict[str, np.ndarray]:
        """Cosine Block Influence and angular distance (at the last real token) of every block
        that runs in the model without `removed`, as the dense model's criteria are defined;
        NaN for the removed blocks."""
        influence, last = self._hidden_state_summary(removed)
        angular = np.array([_angular_distance(last, block, 1) for block in range(self.n_blocks)])
        angular[list(removed)] = np.nan
        return {"cosine": influence.copy(), "angular": angular}

    def _accuracy_relevance(self) -> np.ndarray:
        """Accuracy-based relevance of each block (arXiv 2605.14075), from the unpruned model and
        the N single removals."""
        accuracy_of = getattr(self.objective, "accuracy", None)
        if accuracy_of is None:
            raise BadInput("criterion 'accuracy' needs a multiple-choice (margin) objective")
        subsets = [()] + [(block,) for block in range(self.n_blocks)]
        started = time.perf_counter()
        logprobs = self._logprobs(subsets)
        self.counters.evaluations += len(subsets)
        self.counters.cost_s += time.perf_counter() - started
        accuracy = np.array([accuracy_of(self.prepared, logprobs[subset]) for subset in subsets])
        chance = float(np.mean(1.0 / self.prepared.n_options))
        if accuracy[0] <= chance:
            raise BadInput(
                f"criterion 'accuracy' is undefined: the unpruned model's accuracy {accuracy[0]:.3f} "
                f"is not above that of a random predictor ({chance:.3f})"
            )
        return 1.0 - np.maximum(accuracy[1:] - chance, 0.0) / (accuracy[0] - chance)

    def run_distances(self, length: int) -> np.ndarray:
        """d(ℓ, n) = mean over samples of arccos(cos(h_ℓ, h_{ℓ+n}))/π at the last real token,
        for every start ℓ = 0..N−n: removing [ℓ, ℓ+n) with minimal d is the angular criterion."""
        if not 1 <= length <= self.n_blocks:
            raise BadInput(f"run length must be in 1..{self.n_blocks}, got {length}")
        last = self._hidden_state_summary()[1]
        return np.array([_angular_distance(last, start, length) for start in range(self.n_blocks - length + 1)])

    def segment_information(self, estimator: str = "gaussian") -> np.ndarray:
        """M[a, b] = mutual information between the unpruned model's hidden states before block
        a and before block b (real tokens, Gaussian estimator of oracle/mutual_information.py):
        MI-PRUN's block (b = a + 1) and segment scores. The diagonal is left at 0 (unused)."""
        if estimator != "gaussian":
            raise BadInput(f"segment information estimator {estimator!r} is not available (gaussian)")
        if self._segment_information is None:
            bases = [principal_basis(states) for states in self._real_token_states()]
            n = self.n_blocks
            information = np.zeros((n + 1, n + 1))
            for start in range(n + 1):
                for stop in range(start + 1, n + 1):
                    information[start, stop] = information[stop, start] = canonical_information(
                        bases[start], bases[stop])
            self._segment_information = information
        return self._segment_information.copy()

    def _real_token_states(self) -> list[np.ndarray]:
        """States of the unpruned model at every real token, per depth 0..N: [(tokens, d)]."""
        per_depth: list[list[np.ndarray]] = [[] for _ in range(self.n_blocks + 1)]
        with torch.no_grad():
            for index, batch in enumerate(self._batches):
                dense = self._dense_states(index, batch, self.runner.context(batch))
                real = to_host(batch.segment_ids >= 0)
                for depth in range(self.n_blocks + 1):
                    per_depth[depth].append(to_host(dense(depth).float())[real].numpy())
        return [np.concatenate(parts) for parts in per_depth]

    def _hidden_state_summary(self, removed: Subset = ()) -> tuple[np.ndarray, np.ndarray]:
        """One pass over the calibration batches of the model without `removed` (the dense one
        by default, kept): the cosine Block Influence of each block (NaN for removed ones) and the
        float64 states at the last real token of every sample before each block and after the
        last, shape (N+1, samples, d). Both are computed on the device; only the N sums and the
        last-token states leave it."""
        if removed or self._summary is None:
            n = self.n_blocks
            influence = torch.zeros(n, dtype=torch.float64, device=self.runner.device)
            tokens = 0
            last_states: list[list[np.ndarray]] = [[] for _ in range(n + 1)]
            with torch.no_grad():
                for index, batch in enumerate(self._batches):
                    state = self._states_without(index, batch, self.runner.context(batch), removed)
                    real = batch.segment_ids >= 0
                    columns = torch.arange(real.shape[1], device=real.device)
                    last = torch.where(real, columns, -1).max(1).values
                    rows = torch.arange(real.shape[0], device=real.device)
                    tokens += int(to_host(real.sum()))
                    previous = None
                    # Padding is weighted out rather than indexed out: no data-dependent shapes.
                    for depth in range(n + 1):
                        current = state(depth).double()
                        last_states[depth].append(to_host(current[rows, last]).numpy())
                        if previous is not None:
                            influence[depth - 1] += ((1.0 - _cosine(previous, current)) * real).sum()
                        previous = current
            influence = to_host(influence).numpy() / tokens
            influence[list(removed)] = np.nan
            summary = influence, np.stack([np.concatenate(parts) for parts in last_states])
            if removed:
                return summary
            self._summary = summary
        return self._summary

    def _states_without(self, index: int, batch, context, removed: Subset):
        """The state before each block (and after the last) of the model without `removed`,
        on demand: the dense model's up to the first removed block, then computed; a removed
        block passes its input on."""
        dense = self._dense_states(index, batch, context)
        if not removed:
            return dense
        first = min(removed)
        computed = [dense(first)]

        def state(depth: int) -> torch.Tensor:
            if depth <= first:
                return dense(depth)
            while first + len(computed) <= depth:
                block = first + len(computed) - 1
                previous = computed[-1]
                computed.append(previous if block in removed else self.runner.run_block(block, previous, context))
            return computed[depth - first]

        return state

    def _run_batch(self, index: int, batch, subsets: list[Subset]):
        runner = self.runner
        context = runner.context(batch)
        n = self.n_blocks
        dense = self._dense_states(index, batch, context)
        states: list[torch.Tensor | None] = [None] * (n + 1)
        states[0] = dense(0)
        previous: tuple[bool, ...] | None = None
        for subset in subsets:
            mask = visit_order(subset, self.n_blocks)  # True = block runs
            first_removed = mask.index(False) if False in mask else n
            valid = _common_prefix(previous, mask) if (self.prefix_reuse and previous) else 0
            if not self.prefix_reuse:
                first_removed = 0
            for block in range(valid, n):
                if block < first_removed:
                    states[block + 1] = dense(block + 1)
                elif not mask[block]:
                    states[block + 1] = states[block]
                else:
                    states[block + 1] = runner.run_block(block, states[block], context)
            previous = mask
            if self.objective.needs_dense_distributions:
                # −KL, so that the objective's reduction (the mean of −score) is the mean KL.
                yield subset, -runner.divergence(states[n], batch, self._dense_distributions(index, batch, dense))
            else:
                yield subset, runner.score(states[n], batch)

    def _dense_distributions(self, index: int, batch, dense) -> torch.Tensor:
        """The unpruned model's next-token log-probabilities at the batch's scored positions,
        made once per batch and kept for every later evaluation."""
        if index not in self._reference:
            self._reference[index] = self.runner.distributions(dense(self.n_blocks), batch)
        return self._reference[index]

    def _dense_states(self, index: int, batch, context):
        """Hidden states of the unpruned model after each block, computed on demand and kept
        for later requests while they fit in the memory budget."""
        cached = self._dense.get(index)
        if cached is None:
            cached = [self.runner.embed(batch)]
            state_bytes = cached[0].numel() * cached[0].element_size()
            if self.prefix_reuse and self._dense_bytes + state_bytes * (self.n_blocks + 1) <= self.dense_cache_bytes:
                self._dense[index] = cached
                self._dense_bytes += state_bytes * (self.n_blocks + 1)

        def state(depth: int) -> torch.Tensor:
            while len(cached) <= depth:
                block = len(cached) - 1
                cached.append(self.runner.run_block(block, cached[block], context))
            return cached[depth]

        return state


def visit_order(subset: Subset, n_blocks: int) -> tuple[bool, ...]:
    """The mask of blocks that run (True) as a sort key: lexicographic order of masks puts
    subsets sharing a prefix of kept blocks next to each other."""
    removed = set(subset)
    return tuple(block not in removed for block in range(n_blocks))


def _common_prefix(a: tuple[bool, ...], b: tuple[bool, ...]) -> int:
    for position, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return position
    return len(a)


def _angular_distance(last: np.ndarray, start: int, length: int) -> float:
    """Mean over samples of arccos(cos(h_start, h_start+length))/π, from last-token states
    (depth, samples, d)."""
    return float(np.mean(np.arccos(np.clip(_cosine(last[start], last[start + length]), -1.0, 1.0)) / np.pi))


def _cosine(a, b):
    """Row-wise cosine similarity of numpy arrays or tensors (on their device); an undefined one
    (a zero vector) counts as 0.5, ShortGPT's convention."""
    if isinstance(a, torch.Tensor):
        cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        return torch.where(torch.isnan(cosine), 0.5, cosine)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.where(np.isnan(cosine), 0.5, cosine)
