"""Synthetic problems: pseudo-Boolean functions of the removed blocks with a known optimum.

Two families, named `synthetic/<family>-N<n_blocks>-seed<seed>`:

- `quadratic`:     L(S) = c + Σ_{i∈S} h_i + Σ_{i<j∈S} J_ij, exactly, so a second-order model of
                   L is exact.
- `higher-order`:  the same quadratic part plus a bonus for every maximal run of consecutive
                   removed blocks of length r ≥ 3, −γ·(r − 2)^1.5: skipping a whole contiguous
                   segment costs less than its pairwise terms say (the saturation that makes
                   contiguous deep runs work in real models). The bonus has terms of order three
                   and higher, so no quadratic model is exact.

h, J and c are drawn from a numpy Generator seeded by (family, N, seed) with the shape of real
block-removal losses: the first and last blocks are very costly, mid-to-late blocks cheap, J is
positive between neighbours and sparse elsewhere. Each function plants an optimum for
k = `planted_k` (= max(1, N // 4)) that is provably unique by construction (see
`_plant_optimum`); for any k, `SyntheticFunction.exact_optimum` enumerates all subsets and is
the authority. No torch anywhere: these problems run on any machine.
"""

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oracle.errors import BadInput, UnknownProblem
from oracle.evaluation import Evaluation, OracleCounters
from oracle.fingerprint import fingerprint
from oracle.subset import Subset, canonical_subset
from problems.problem import EXECUTION_OPTIONS, Problem

FAMILIES = ("quadratic", "higher-order")
N_BLOCKS_RANGE = (2, 256)
# Width of the per-sample loss vector of every synthetic evaluation.
N_SAMPLES = 8
# exact_optimum refuses to enumerate more subsets than this.
ENUMERATION_LIMIT = 5_000_000
# Bump when the generator changes what a name means; it is part of the fingerprint.
GENERATOR_VERSION = 1

NAME_PATTERN = re.compile(r"synthetic/(quadratic|higher-order)-N([1-9][0-9]*)-seed(0|[1-9][0-9]*)")
NAME_FORM = "synthetic/<quadratic|higher-order>-N<2..256>-seed<seed>"

# Options every problem factory may be handed; a synthetic function is computed exactly, so it
# has no table to read or write, no device and nothing to replay: these are accepted and unused.
ORACLE_KINDS = ("live", "replay")


def make_synthetic_problem(name: str, **options: Any) -> Problem:
    """Build the synthetic problem called `name`.

    Options: `cost_s` (simulated seconds per evaluation, default 0.0). `oracle` ("live" or
    "replay"; both give the same exact answers) and the other execution options
    (`problems.problem.EXECUTION_OPTIONS`) are accepted and ignored; any other option is
    refused with BadInput."""
    unknown = sorted(set(options) - EXECUTION_OPTIONS - {"cost_s"})
    if unknown:
        accepted = ", ".join(sorted(EXECUTION_OPTIONS | {"cost_s"}))
        raise BadInput(f"option(s) {', '.join(unknown)} mean nothing for {name}; accepted: {accepted}")
    oracle_kind = options.get("oracle")
    if oracle_kind is not None and oracle_kind not in ORACLE_KINDS:
        raise BadInput(f"oracle={oracle_kind!r} is not one of {', '.join(ORACLE_KINDS)}")
    spec = SyntheticSpec.parse(name)
    function = SyntheticFunction(spec)
    oracle = SyntheticOracle(function, cost_s=options.get("cost_s", 0.0))
    return Problem(
        name=spec.name,
        n_blocks=spec.n_blocks,
        oracle=oracle,
        description=function.describe(),
        spec=spec.as_dict(),
    )


@dataclass(frozen=True)
class SyntheticSpec:
    """Plain data naming one synthetic function; everything else follows from it."""

    family: str
    n_blocks: int
    seed: int

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise BadInput(f"synthetic family {self.family!r} is not one of {', '.join(FAMILIES)}")
        low, high = N_BLOCKS_RANGE
        if isinstance(self.n_blocks, bool) or not isinstance(self.n_blocks, int) or not low <= self.n_blocks <= high:
            raise BadInput(f"synthetic problems have {low}..{high} blocks, not {self.n_blocks!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise BadInput(f"synthetic seed must be a non-negative integer, not {self.seed!r}")

    @classmethod
    def parse(cls, name: str) -> "SyntheticSpec":
        """Read `synthetic/quadratic-N30-seed0` and the like."""
        match = NAME_PATTERN.fullmatch(name)
        if match is None:
            raise UnknownProblem(f"unknown synthetic problem {name!r}; expected {NAME_FORM}")
        family, n_blocks, seed = match.groups()
        return cls(family, int(n_blocks), int(seed))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SyntheticSpec":
        """Inverse of `as_dict` (what a table stores)."""
        if data.get("kind") != "synthetic":
            raise BadInput(f"not a synthetic problem spec: {data!r}")
        return cls(data["family"], int(data["n_blocks"]), int(data["seed"]))

    @property
    def name(self) -> str:
        return f"synthetic/{self.family}-N{self.n_blocks}-seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        """The fields that define L(S), as stored in a table and hashed into the fingerprint."""
        return {
            "kind": "synthetic",
            "family": self.family,
            "n_blocks": self.n_blocks,
            "seed": self.seed,
            "generator": GENERATOR_VERSION,
        }

    def fingerprint(self) -> str:
        return fingerprint(self.as_dict())


@dataclass(frozen=True)
class RunTerm:
    """The higher-order part: Σ over maximal runs of consecutive removed blocks of length
    r ≥ min_length of coefficient · (r − min_length + 1)^exponent (negative coefficient: a bonus)."""

    coefficient: float
    exponent: float = 1.5
    min_length: int = 3

    def of_lengths(self, lengths: np.ndarray) -> np.ndarray:
        excess = np.maximum(np.asarray(lengths, dtype=np.float64) - (self.min_length - 1), 0.0)
        return self.coefficient * excess**self.exponent

    def describe(self) -> str:
        return (
            f"{self.coefficient:+.6g}·(r − {self.min_length - 1})^{self.exponent:g} for every maximal run "
            f"of r ≥ {self.min_length} consecutive removed blocks"
        )


class SyntheticFunction:
    """L(S) of one synthetic problem, with its parts exposed for tests and second-order solvers.

    Attributes:
        constant: c = L(∅).
        h: shape (N,), first-order terms.
        J: shape (N, N), symmetric with a zero diagonal; L counts each pair once:
           Σ_{i<j∈S} J_ij = ½ xᵀJx for the 0/1 mask x of S.
        higher_order: the RunTerm of the higher-order family, None for the quadratic family.
        planted_k, planted_subset: the optimum for k = planted_k, unique by construction.
        planted_gap: a proven lower bound on L(S) − L(planted) for every other S of that size.
        sample_offsets, sample_effects: shapes (8,) and (8, N); per-sample loss s of S is
           L(S) + sample_offsets[s] + Σ_{i∈S} sample_effects[s, i]; both sum to zero over s.
    """

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        self.n_blocks = spec.n_blocks
        rng = np.random.default_rng([GENERATOR_VERSION, FAMILIES.index(spec.family), spec.n_blocks, spec.seed])
        self.constant = float(rng.uniform(2.5, 3.5))
        h, J = _draw_pruning_like_terms(rng, spec.n_blocks)
        contiguous = spec.family == "higher-order"
        planted = _choose_planted_blocks(rng, spec.n_blocks, contiguous)
        self.planted_gap = _plant_optimum(rng, h, J, planted)
        self.h = h
        self.J = J
        self.planted_subset: Subset = tuple(int(i) for i in planted)
        self.planted_k = len(self.planted_subset)
        self.higher_order: RunTerm | None = None
        if contiguous:
            # Scaled so that the planted run's bonus is about a quarter of a cheap block's cost
            # per block: long runs stay attractive without swamping the first-order costs.
            typical = float(np.median(np.abs(h[_cheap_region(spec.n_blocks)])))
            scale = math.sqrt(max(self.planted_k - 2, 1))
            self.higher_order = RunTerm(coefficient=-0.25 * typical / scale)
        self.sample_offsets, self.sample_effects = _draw_sample_terms(rng, h)
        for array in (self.h, self.J, self.sample_offsets, self.sample_effects):
            array.setflags(write=False)

    # --- L(S) -------------------------------------------------------------------------------

    def loss(self, subset: Iterable[int]) -> float:
        return float(self.losses([subset])[0])

    def losses(self, subsets: Sequence[Iterable[int]]) -> np.ndarray:
        """L(S) for each subset, as float64."""
        return self.losses_of_masks(self.masks(subsets))

    def losses_of_masks(self, masks: np.ndarray) -> np.ndarray:
        """L for each row of a boolean (M, N) mask array."""
        return self.quadratic_losses_of_masks(masks) + self.run_terms_of_masks(masks)

    def quadratic_losses_of_masks(self, masks: np.ndarray) -> np.ndarray:
        """c + Σ h_i + Σ_{i<j} J_ij for each mask row (the whole of L for the quadratic family)."""
        x = np.asarray(masks, dtype=np.float64)
        return self.constant + x @ self.h + 0.5 * np.einsum("mi,mi->m", x @ self.J, x)

    def run_terms_of_masks(self, masks: np.ndarray) -> np.ndarray:
        """The higher-order part for each mask row (zeros for the quadratic family)."""
        masks = np.asarray(masks, dtype=bool)
        out = np.zeros(masks.shape[0])
        if self.higher_order is None or masks.size == 0:
            return out
        rows, lengths = _maximal_runs(masks)
        np.add.at(out, rows, self.higher_order.of_lengths(lengths))
        return out

    def per_sample_of_masks(self, masks: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """(M, 8) per-sample losses whose row means are `losses` (up to float rounding)."""
        x = np.asarray(masks, dtype=np.float64)
        return losses[:, None] + self.sample_offsets[None, :] + x @ self.sample_effects.T

    def masks(self, subsets: Sequence[Iterable[int]]) -> np.ndarray:
        """Boolean (M, N) masks of validated subsets."""
        masks = np.zeros((len(subsets), self.n_blocks), dtype=bool)
        for row, subset in enumerate(subsets):
            masks[row, list(canonical_subset(subset, self.n_blocks))] = True
        return masks

    # --- optimum ----------------------------------------------------------------------------

    def exact_optimum(self, k: int) -> tuple[Subset, float]:
        """The subset of k blocks with the lowest L, by enumerating all C(N, k) of them; ties go
        to the lexicographically first subset. Refused above ENUMERATION_LIMIT subsets."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= self.n_blocks:
            raise BadInput(f"k must be an integer in 0..{self.n_blocks}, not {k!r}")
        k = int(k)
        count = math.comb(self.n_blocks, k)
        if count > ENUMERATION_LIMIT:
            raise BadInput(
                f"exact optimum of {self.spec.name} for k={k} needs C({self.n_blocks},{k}) = {count:,} "
                f"evaluations, more than the limit of {ENUMERATION_LIMIT:,}"
            )
        if k == 0:
            return (), self.constant
        best_subset: Subset = ()
        best_loss = math.inf
        combinations = itertools.combinations(range(self.n_blocks), k)
        chunk = max(1, 1_000_000 // max(self.n_blocks, k))
        while True:
            flat = np.fromiter(
                itertools.chain.from_iterable(itertools.islice(combinations, chunk)), dtype=np.intp
            )
            if flat.size == 0:
                break
            indices = flat.reshape(-1, k)
            masks = np.zeros((indices.shape[0], self.n_blocks), dtype=bool)
            np.put_along_axis(masks, indices, True, axis=1)
            losses = self.losses_of_masks(masks)
            row = int(np.argmin(losses))
            if losses[row] < best_loss:
                best_loss = float(losses[row])
                best_subset = tuple(int(i) for i in indices[row])
        return best_subset, best_loss

    def describe(self) -> str:
        spec = self.spec
        if self.higher_order is None:
            shape = "quadratic pseudo-Boolean function L(S) = c + Σh_i + Σ_{i<j}J_ij (a second-order model is exact)"
        else:
            shape = (
                "higher-order pseudo-Boolean function: c + Σh_i + Σ_{i<j}J_ij plus "
                + self.higher_order.describe()
            )
        return (
            f"synthetic {shape} over {spec.n_blocks} blocks, seed {spec.seed}; "
            f"planted optimum for k={self.planted_k}: {list(self.planted_subset)}"
        )


class SyntheticOracle:
    """The Oracle of a synthetic problem. Every request is an evaluation (there is no table
    here; wrap it in a memo to get hits); each costs `cost_s` simulated seconds, reported, not slept."""

    def __init__(self, function: SyntheticFunction, cost_s: float = 0.0):
        if isinstance(cost_s, bool) or not isinstance(cost_s, (int, float)) or not 0.0 <= cost_s < math.inf:
            raise BadInput(f"cost_s must be a finite number of seconds ≥ 0, not {cost_s!r}")
        self.function = function
        self.n_blocks = function.n_blocks
        self.fingerprint = function.spec.fingerprint()
        self.cost_s = float(cost_s)
        self.counters = OracleCounters()

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        canonical = [canonical_subset(subset, self.n_blocks) for subset in subsets]
        if not canonical:
            return []
        masks = self.function.masks(canonical)
        losses = self.function.losses_of_masks(masks)
        per_sample = self.function.per_sample_of_masks(masks, losses)
        self.counters.requests += len(canonical)
        self.counters.evaluations += len(canonical)
        self.counters.cost_s += self.cost_s * len(canonical)
        return [
            Evaluation(subset=subset, loss=float(loss), per_sample=samples, cost_s=self.cost_s, source="live")
            for subset, loss, samples in zip(canonical, losses, per_sample)
        ]


# --- generation -------------------------------------------------------------------------------


def _draw_pruning_like_terms(rng: np.random.Generator, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """h and J shaped like single- and pair-removal losses of a real decoder (in nats).

    h_i = profile(t_i)·LogNormal(0, 0.5) at depth t_i = i/(N−1), with
    profile(t) = 0.04 + 0.5·e^(−t/0.12) + 0.3·e^(−(1−t)/0.08) (early and last blocks costly);
    h_0 ~ U(3, 6) and h_{N−1} ~ U(1, 2.5); each other block has a 5% chance of h_i ≤ 0
    (removing it helps a little: −U(0, 0.1)·profile). With m_ij = min(h_i⁺, h_j⁺):
    neighbours J_{i,i+1} = (m + 0.01)·U(0.3, 1); distance two, with probability ½,
    (m + 0.01)·U(0, 0.5); farther pairs, each with probability min(1, 3/N), m·N(0.15, 0.25).
    """
    depth = np.arange(n_blocks) / (n_blocks - 1)
    profile = 0.04 + 0.5 * np.exp(-depth / 0.12) + 0.3 * np.exp(-(1.0 - depth) / 0.08)
    h = profile * rng.lognormal(0.0, 0.5, size=n_blocks)
    helps = rng.random(n_blocks) < 0.05
    h = np.where(helps, -rng.uniform(0.0, 0.1, size=n_blocks) * profile, h)
    h[0] = rng.uniform(3.0, 6.0)
    h[-1] = rng.uniform(1.0, 2.5)

    positive = np.maximum(h, 0.0)
    pair_min = np.minimum.outer(positive, positive)
    distance = np.abs(np.subtract.outer(np.arange(n_blocks), np.arange(n_blocks)))
    neighbour = (pair_min + 0.01) * rng.uniform(0.3, 1.0, size=(n_blocks, n_blocks))
    second = (pair_min + 0.01) * rng.uniform(0.0, 0.5, size=(n_blocks, n_blocks))
    second *= rng.random((n_blocks, n_blocks)) < 0.5
    far = pair_min * rng.normal(0.15, 0.25, size=(n_blocks, n_blocks))
    far *= rng.random((n_blocks, n_blocks)) < min(1.0, 3.0 / n_blocks)
    upper = np.where(distance == 1, neighbour, np.where(distance == 2, second, far))
    upper = np.triu(upper, k=1)
    return h, upper + upper.T


def _cheap_region(n_blocks: int) -> np.ndarray:
    """Blocks at depth 0.35..0.95, never the first or last (all inner blocks for small N)."""
    inner = np.arange(1, n_blocks - 1)
    if inner.size == 0:
        return np.arange(n_blocks)
    depth = inner / (n_blocks - 1)
    region = inner[(depth >= 0.35) & (depth < 0.95)]
    return region if region.size >= max(1, n_blocks // 4) else inner


def _choose_planted_blocks(rng: np.random.Generator, n_blocks: int, contiguous: bool) -> np.ndarray:
    """max(1, N // 4) blocks in the cheap region: scattered, or one contiguous run."""
    k = max(1, n_blocks // 4)
    region = _cheap_region(n_blocks)
    if not contiguous:
        return np.sort(rng.choice(region, size=k, replace=False))
    starts = region[region + k - 1 <= region[-1]]
    if starts.size == 0:
        starts = np.arange(n_blocks - k + 1)
    start = int(rng.choice(starts))
    return np.arange(start, start + k)


def _plant_optimum(rng: np.random.Generator, h: np.ndarray, J: np.ndarray, planted: np.ndarray) -> float:
    """Make `planted` (size k) the unique best subset of size k, editing h and J in place, and
    return a proven lower bound on L(S) − L(planted) over every other S with |S| = k.

    The planted blocks get first-order costs near the region's lower quartile, so they are cheap
    but not the cheapest (decoys with smaller h mislead one-shot and greedy choices), and mutual
    interactions J_ij = −β·U(1, 1.2) (complementary blocks). Why this is enough: let S swap m
    planted blocks C for m others B. Every pair lost from the planted set gains at least β, every
    pair gained has a member b ∈ B and costs at least b's most negative interactions, so with
    e_b = h_b + (sum of b's k−1 most negative J_bj), pairs(m) = m(k − (m+1)/2):
        L(S) − L(P) ≥ Σ_{b∈B} e_b − Σ_{c∈C} h_c + β·pairs(m)
                    ≥ (m smallest e) − (m largest planted h) + β·pairs(m).
    β is the smallest value making this ≥ m·margin for every m = 1..k. For k = 1 there are no
    pairs, so the planted block's h is set below every other block's instead. Finally every h_i
    grows by half the planted level (see below). The run bonus of
    the higher-order family cannot break this: a planted single run of k blocks has the largest
    bonus any k blocks can have.
    """
    n_blocks = h.size
    k = planted.size
    others = np.setdiff1d(np.arange(n_blocks), planted)
    if others.size == 0:
        return math.inf
    region = _cheap_region(n_blocks)
    typical = float(np.quantile(np.maximum(h[region], 0.0), 0.25)) + 0.005
    h[planted] = typical * rng.uniform(0.9, 1.3, size=k)
    margin = 0.1 * typical
    if k == 1:
        h[planted] = min(h[planted[0]], float(h[others].min()) - margin)
        h += 0.5 * typical
        return float(h[others].min() - h[planted[0]])

    negative = np.sort(np.minimum(J[others], 0.0), axis=1)[:, : k - 1].sum(axis=1)
    worst_in = np.cumsum(np.sort(h[others] + negative))
    best_out = np.cumsum(np.sort(h[planted])[::-1])
    swaps = np.arange(1, min(k, others.size) + 1)
    pairs = swaps * (k - (swaps + 1) / 2.0)
    shortfall = best_out[swaps - 1] - worst_in[swaps - 1] + swaps * margin
    beta = max(float(np.max(shortfall / pairs)), 0.0)

    inside = np.ix_(planted, planted)
    values = np.triu(-beta * rng.uniform(1.0, 1.2, size=(k, k)), k=1)
    J[inside] = values + values.T
    # A cost every removal pays: it moves all subsets of one size alike, so no ranking changes,
    # and it keeps Δ at the planted optimum positive despite the complementary interactions.
    h += 0.5 * typical
    # The bound holds by construction; recompute it with the final β for the record.
    gap = worst_in[swaps - 1] - best_out[swaps - 1] + beta * pairs
    return float(np.min(gap / swaps))


def _draw_sample_terms(rng: np.random.Generator, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample deviations: a base offset per sample (N(0, 0.3)) and a per-sample response to
    each removed block (0.3·|h_i|·N(0, 1)), both centred over samples so they average to zero."""
    offsets = rng.normal(0.0, 0.3, size=N_SAMPLES)
    effects = 0.3 * np.abs(h)[None, :] * rng.normal(0.0, 1.0, size=(N_SAMPLES, h.size))
    return offsets - offsets.mean(), effects - effects.mean(axis=0, keepdims=True)


def _maximal_runs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, length) of every maximal run of True in each row of a boolean mask array."""
    padded = np.zeros((masks.shape[0], masks.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = masks
    step = np.diff(padded, axis=1)
    start_rows, start_cols = np.nonzero(step == 1)
    _, end_cols = np.nonzero(step == -1)
    # np.nonzero walks row-major, and every run's start precedes its end in the same row.
    return start_rows, end_cols - start_cols
