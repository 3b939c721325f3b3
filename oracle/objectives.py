"""Calibration objectives: they turn raw calibration data into token batches and reduce the
scored log-probabilities to per-sample losses (lower is better).

- `PerplexityObjective` ("ppl"): mean token NLL in nats over `windows` windows of `window_tokens`
  tokens. Window spec: passages are tokenised (no special tokens) in an order drawn from
  `seed`, each followed by the EOS token, and concatenated; the stream is cut into consecutive
  non-overlapping windows of `window_tokens` tokens — `window_tokens − 1` of them when the model
  needs a BOS, which is then put first in every window. Every next-token prediction inside a
  window is scored. Per-sample loss = the window's mean NLL; loss = the mean over windows.
- `DivergenceObjective` ("kl"): the ppl windows, per-sample loss = mean over the window's
  next-token positions of KL(p_dense ‖ p_pruned) over the whole vocabulary.
- `MarginObjective` ("margin"): task likelihood margin. For an item with options j, ℓ_j is the
  mean log-prob of option j's continuation tokens given its context (context and continuation
  tokenised separately). margin = ℓ_gold − mean_{j≠gold} ℓ_j (reduce="mean") or
  Σ_{j≠gold} (ℓ_gold − ℓ_j) (reduce="pudding_sum"); per-sample loss = −margin. Options share
  the tokens their contexts have in common: the prompt is computed once per item, not per option.
- `ChoiceObjective` ("choice"): zero-shot multiple-choice evaluation as lm-eval-harness scores
  it. Per option, the sum of its continuation's token log-probs given its context, the pair
  tokenised as lm-eval does; per-sample values = every option's NLL (minus that sum), item by
  item, so `acc` and `acc_norm` follow from stored values (`choice_accuracy`).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oracle.devices import CPU_BATCH_TOKENS
from oracle.errors import DataError
from oracle.token_batch import TokenBatch


@dataclass
class PreparedObjective:
    """Token batches plus what is needed to reduce their scores to per-sample losses."""

    batches: list[TokenBatch]
    n_samples: int
    token_digest: str
    gold: np.ndarray | None = None  # margin: gold option per sample
    n_options: np.ndarray | None = None  # margin: options per sample


class PerplexityObjective:
    name = "ppl"
    # Scores are log-probabilities of the targets; a divergence objective scores −KL to the
    # dense model's distributions instead.
    needs_dense_distributions = False

    def __init__(self, windows: int, window_tokens: int, seed: int, needs_bos: bool,
                 batch_tokens: int = CPU_BATCH_TOKENS["ppl"]):
        self.windows = windows
        self.window_tokens = window_tokens
        self.seed = seed
        self.needs_bos = needs_bos
        self.batch_tokens = batch_tokens

    def prepare(self, tokenizer: Any, passages: list[str]) -> PreparedObjective:
        return self.prepare_stream(self.tokenize(tokenizer, passages), tokenizer.bos_token_id)

    def tokenize(self, tokenizer: Any, passages: list[str]) -> list[int]:
        """The text-token stream the windows are cut from: exactly windows × (window_tokens −
        BOS) ids, without BOS (a shipped token file stores this)."""
        needed = self.windows * (self.window_tokens - int(self.needs_bos))
        stream: list[int] = []
        for index in np.random.default_rng(self.seed).permutation(len(passages)):
            stream += tokenizer(passages[index], add_special_tokens=False)["input_ids"]
            stream.append(tokenizer.eos_token_id)
            if len(stream) >= needed:
                break
        if len(stream) < needed:
            raise DataError(
                f"calibration text has {len(stream)} tokens, {needed} needed for "
                f"{self.windows}×{self.window_tokens}"
            )
        return stream[:needed]

    def prepare_stream(self, stream: list[int], bos_token_id: int | None) -> PreparedObjective:
        """Windows and batches from a text-token stream (`tokenize`'s, or the first ids of a
        shipped one); BOS is put first in every window when the model needs one."""
        text_tokens = self.window_tokens - int(self.needs_bos)
        needed = self.windows * text_tokens
        if len(stream) < needed:
            raise DataError(f"token stream has {len(stream)} ids, {needed} needed for {self.windows}×{self.window_tokens}")
        windows = torch.tensor(list(stream[:needed]), dtype=torch.long).view(self.windows, text_tokens)
        if self.needs_bos:
            bos = torch.full((self.windows, 1), bos_token_id, dtype=torch.long)
            windows = torch.cat([bos, windows], dim=1)
        rows_per_batch = max(1, self.batch_tokens // self.window_tokens)
        batches = [
            self._batch(windows[start : start + rows_per_batch], start)
            for start in range(0, self.windows, rows_per_batch)
        ]
        return PreparedObjective(batches, self.windows, _digest(windows.flatten().tolist()))

    def _batch(self, windows: torch.Tensor, first_sample: int) -> TokenBatch:
        rows, length = windows.shape
        row = torch.arange(rows).repeat_interleave(length - 1)
        col = torch.arange(length - 1).repeat(rows)
        return TokenBatch(
            input_ids=windows,
            position_ids=torch.arange(length).expand(rows, length).contiguous(),
            segment_ids=torch.zeros(rows, length, dtype=torch.long),
            score_row=row,
            score_col=col,
            score_target=windows[row, col + 1],
            score_sample=row + first_sample,
            score_option=torch.zeros_like(row),
        )

    def reduce(self, prepared: PreparedObjective, scores: torch.Tensor) -> np.ndarray:
        """Per-sample losses from the scored log-probabilities of every batch, concatenated in
        batch order, on the CPU (where the prepared batches' indices are)."""
        samples = torch.cat([b.score_sample for b in prepared.batches])
        values = scores.double()
        total = torch.zeros(prepared.n_samples, dtype=torch.float64).index_add_(0, samples, -values)
        count = torch.zeros(prepared.n_samples, dtype=torch.float64).index_add_(0, samples, torch.ones_like(values))
        return (total / count).numpy()


class DivergenceObjective(PerplexityObjective):
    """"kl": the perplexity windows, scored by KL(p_dense ‖ p_pruned) over the whole vocabulary
    at every next-token position instead of by the NLL of the text: the pruned model is asked to
    behave like the dense one, not to fit the text (EvoPress's ranking). Per-sample loss = the
    window's mean KL in nats; L(∅) = 0. The dense distributions are made once per batch by the
    live oracle (4 bytes × vocabulary per scored position), never per evaluation."""

    name = "kl"
    needs_dense_distributions = True


class MarginObjective:
    name = "margin"
    needs_dense_distributions = False

    def __init__(self, needs_bos: bool, reduce: str = "mean", batch_tokens: int = CPU_BATCH_TOKENS["margin"]):
        if reduce not in ("mean", "pudding_sum"):
            raise DataError(f"margin reduce must be 'mean' or 'pudding_sum', not {reduce!r}")
        self.needs_bos = needs_bos
        self.reduce_mode = reduce
        self.batch_tokens = batch_tokens

    def prepare(self, tokenizer: Any, items: list[dict]) -> PreparedObjective:
        return self.prepare_tokens(items, self.tokenize(tokenizer, items), tokenizer.bos_token_id)

    def tokenize(self, tokenizer: Any, items: list[dict]) -> list[dict[str, list[list[int]]]]:
        """Per item, the ids of each option's context and continuation, tokenised separately
        and without BOS: {"contexts": [[...], ...], "continuations": [[...], ...]} (a shipped
        token file stores these)."""
        return [
            {
                "contexts": [tokenizer(c["context"], add_special_tokens=False)["input_ids"] for c in item["choices"]],
                "continuations": [tokenizer(c["continuation"], add_special_tokens=False)["input_ids"]
                                  for c in item["choices"]],
            }
            for item in items
        ]

    def prepare_tokens(self, items: list[dict], tokens: list[dict], bos_token_id: int | None) -> PreparedObjective:
        """Packed batches from the items (gold option, option count) and their token ids
        (`tokenize`'s, or a shipped token file's); BOS starts every context when needed."""
        if len(tokens) != len(items):
            raise DataError(f"{len(tokens)} token lists for {len(items)} items")
        packed = [self._pack(item, ids, bos_token_id) for item, ids in zip(items, tokens)]
        # Similar lengths together: less padding. Stable sort keeps the order deterministic.
        order = sorted(range(len(packed)), key=lambda i: len(packed[i][0]))
        batches, group = [], []
        for index in order:
            longest = max([len(packed[i][0]) for i in group] + [len(packed[index][0])])
            if group and longest * (len(group) + 1) > self.batch_tokens:
                batches.append(self._batch([packed[i] for i in group], group))
                group = []
            group.append(index)
        if group:
            batches.append(self._batch([packed[i] for i in group], group))
        digest = _digest([token for row in packed for token in row[0]])
        gold = np.array([item["gold"] for item in items])
        n_options = np.array([len(item["choices"]) for item in items])
        return PreparedObjective(batches, len(items), digest, gold, n_options)

    def _pack(self, item: dict, tokens: dict, bos_token_id: int | None
              ) -> tuple[list[int], list[int], list[int], list[tuple[int, int, int]]]:
        """One row: shared prefix then each option's remaining context and continuation.
        Returns ids, positions, segments and scored (column predicting, target, option)."""
        bos = [bos_token_id] if self.needs_bos else []
        contexts = [bos + list(context) for context in tokens["contexts"]]
        continuations = [list(continuation) for continuation in tokens["continuations"]]
        if len(contexts) != len(item["choices"]) or len(continuations) != len(contexts):
            raise DataError(f"item {item.get('id')}: token lists for {len(contexts)} options, "
                            f"the item has {len(item['choices'])}")
        if not all(contexts) or not all(continuations):
            raise DataError(f"item {item.get('id')}: an option has an empty context or continuation")
        shared = _common_prefix_length(contexts)
        ids, positions, segments = list(contexts[0][:shared]), list(range(shared)), [0] * shared
        scored = []
        for option, (context, continuation) in enumerate(zip(contexts, continuations)):
            branch = context[shared:] + continuation
            start = len(ids)
            first_scored = len(context) - shared
            for offset in range(first_scored, len(branch)):
                predicting = start + offset - 1 if offset > 0 else shared - 1
                scored.append((predicting, branch[offset], option))
            ids += branch
            positions += range(shared, shared + len(branch))
            segments += [option + 1] * len(branch)
        return ids, positions, segments, scored

    def _batch(self, rows: list, samples: list[int]) -> TokenBatch:
        length = max(len(row[0]) for row in rows)
        shape = (len(rows), length)
        input_ids = torch.zeros(shape, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        segment_ids = torch.full(shape, -1, dtype=torch.long)
        score = []
        for r, (ids, positions, segments, scored) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            position_ids[r, : len(ids)] = torch.tensor(positions)
            segment_ids[r, : len(ids)] = torch.tensor(segments)
            score += [(r, col, target, samples[r], option) for col, target, option in scored]
        columns = torch.tensor(score, dtype=torch.long).T
        return TokenBatch(input_ids, position_ids, segment_ids, *columns)

    def option_means(self, prepared: PreparedObjective, scores: torch.Tensor) -> np.ndarray:
        """ℓ_j of every option, shape (samples, most options); −inf beyond an item's options.
        `scores`: the scored log-probabilities of every batch, concatenated, on the CPU."""
        total, count, valid = option_totals(prepared, scores)
        return np.where(valid, total / np.where(count > 0, count, 1.0), -np.inf)

    def accuracy(self, prepared: PreparedObjective, scores: torch.Tensor) -> float:
        """Fraction of items whose gold option has the highest ℓ_j (a tie counts as wrong)."""
        mean = self.option_means(prepared, scores)
        rows = np.arange(prepared.n_samples)
        gold = mean[rows, prepared.gold]
        others = mean.copy()
        others[rows, prepared.gold] = -np.inf
        return float(np.mean(gold > others.max(1)))

    def reduce(self, prepared: PreparedObjective, scores: torch.Tensor) -> np.ndarray:
        mean = self.option_means(prepared, scores)
        n_options = prepared.n_options
        gold = mean[np.arange(prepared.n_samples), prepared.gold]
        valid = np.arange(mean.shape[1])[None, :] < n_options[:, None]
        wrong_sum = np.where(valid, mean, 0.0).sum(1) - gold
        wrong = n_options - 1
        if self.reduce_mode == "mean":
            margin = gold - wrong_sum / wrong
        else:
            margin = wrong * gold - wrong_sum
        return -margin


class ChoiceObjective(MarginObjective):
    """"choice": zero-shot multiple choice, scored as lm-eval-harness (v0.4) scores it."""

    name = "choice"

    def __init__(self, needs_bos: bool, batch_tokens: int = CPU_BATCH_TOKENS["choice"]):
        super().__init__(needs_bos, "mean", batch_tokens)

    def tokenize(self, tokenizer: Any, items: list[dict]) -> list[dict[str, list[list[int]]]]:
        """As lm-eval encodes a (context, continuation) pair: trailing spaces of the context move
        to the continuation, the pair is tokenised whole, and the continuation is what follows
        the context's own tokens (so a token that spans the boundary is scored)."""
        tokens = []
        for item in items:
            contexts, continuations = [], []
            for choice in item["choices"]:
                context, continuation = choice["context"], choice["continuation"]
                spaces = len(context) - len(context.rstrip())
                if spaces:
                    context, continuation = context[:-spaces], context[-spaces:] + continuation
                whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
                head = len(tokenizer(context, add_special_tokens=False)["input_ids"])
                contexts.append(whole[:head])
                continuations.append(whole[head:])
            tokens.append({"contexts": contexts, "continuations": continuations})
        return tokens

    def reduce(self, prepared: PreparedObjective, scores: torch.Tensor) -> np.ndarray:
        """Every option's NLL (minus the summed log-probs of its continuation), item by item."""
        total, _, valid = option_totals(prepared, scores)
        return -total[valid]


def option_totals(prepared: PreparedObjective, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (item, option): the sum and the number of its scored log-probs, and whether the item
    has that option; shape (items, most options). `scores` as `reduce` gets them."""
    samples = torch.cat([b.score_sample for b in prepared.batches]).numpy()
    options = torch.cat([b.score_option for b in prepared.batches]).numpy()
    values = scores.double().numpy()
    width = int(prepared.n_options.max())
    total = np.zeros((prepared.n_samples, width))
    count = np.zeros((prepared.n_samples, width))
    np.add.at(total, (samples, options), values)
    np.add.at(count, (samples, options), 1.0)
    valid = np.arange(width)[None, :] < prepared.n_options[:, None]
    return total, count, valid


def choice_accuracy(nll: np.ndarray, gold: Sequence[int], lengths: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per item (acc, acc_norm) as 0/1 arrays from the option NLLs of a "choice" row (item by
    item), the gold options and each option's continuation length in characters: acc picks
    the option of highest log-likelihood, acc_norm of highest log-likelihood per character,
    the first one on a tie (as numpy's argmax, as lm-eval)."""
    acc, acc_norm, start = [], [], 0
    for answer, widths in zip(gold, lengths):
        loglik = -np.asarray(nll[start : start + len(widths)], dtype=np.float64)
        start += len(widths)
        acc.append(int(np.argmax(loglik)) == answer)
        acc_norm.append(int(np.argmax(loglik / np.asarray(widths, dtype=np.float64))) == answer)
    if start != len(nll):
        raise DataError(f"a choice row has {len(nll)} option values, the items have {start} options")
    return np.array(acc, dtype=float), np.array(acc_norm, dtype=float)


def _common_prefix_length(sequences: list[list[int]]) -> int:
    shortest = min(len(s) for s in sequences)
    for position in range(shortest):
        if len({s[position] for s in sequences}) > 1:
            return position
    return shortest


def _digest(tokens: list[int]) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()
