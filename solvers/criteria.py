"""Per-block scores (ALGORITHMS.md §3), lower = more removable: what one-shot top-k ranks by and
what guided solvers take as a prior.

`removal_loss` (s_i = L({i})) needs only the black box, so it works on every problem. The
hidden-state and accuracy criteria need a live model; a solver never touches one, so they are
served by the problem's oracle when it offers `block_scores(criterion)` (and, for the contiguous
angular criterion, `run_distances(length)`; for iterative removal, `removal_order(criterion)`)."""

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from solvers.session import SearchSession

CRITERIA = ("removal_loss", "cosine", "angular", "accuracy")
ITERATIVE_CRITERIA = ("cosine", "angular")


def block_scores(session: SearchSession, criterion: str = "removal_loss") -> np.ndarray:
    """Scores of the N blocks under `criterion`, shape (N,)."""
    if criterion not in CRITERIA:
        raise BadInput(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    if criterion == "removal_loss":
        return removal_loss(session)
    problem = session.problem
    scores_of = getattr(problem.oracle, "block_scores", None)
    if scores_of is None:
        raise BadInput(
            f"criterion {criterion!r} needs hidden states from a live model oracle, not available for {problem.name}"
        )
    scores = np.asarray(scores_of(criterion), dtype=float)
    if scores.shape != (session.n_blocks,):
        raise BadInput(f"criterion {criterion!r} gave scores of shape {scores.shape}, expected ({session.n_blocks},)")
    return scores


def run_distances(session: SearchSession, length: int) -> np.ndarray | None:
    """Angular distance d(ℓ, length) of every run [ℓ, ℓ+length) of blocks, shape (N−length+1,),
    or None when the problem's oracle does not offer it."""
    distances_of = getattr(session.problem.oracle, "run_distances", None)
    if distances_of is None:
        return None
    distances = np.asarray(distances_of(length), dtype=float)
    expected = (session.n_blocks - length + 1,)
    if distances.shape != expected:
        raise BadInput(f"run distances of length {length} have shape {distances.shape}, expected {expected}")
    return distances


def check_iterative(criterion: str) -> None:
    """Refuse a criterion that has no iterative removal order."""
    if criterion not in ITERATIVE_CRITERIA:
        raise BadInput(f"iterative removal takes a hidden-state criterion ({', '.join(ITERATIVE_CRITERIA)}), "
                       f"not {criterion!r}; iterative removal_loss is the greedy solver")


def removal_order(session: SearchSession, criterion: str) -> list[int]:
    """The blocks in the order iterative removal under a hidden-state criterion takes them
    (scores measured again on the pruned model after each removal), from the problem's oracle."""
    check_iterative(criterion)
    order_of = getattr(session.problem.oracle, "removal_order", None)
    if order_of is None:
        raise BadInput(f"iterative {criterion!r} needs hidden states from a live model oracle, "
                       f"not available for {session.problem.name}")
    values = np.asarray(order_of(criterion), dtype=float)
    whole = values.ndim == 1 and bool(np.all(np.isfinite(values) & (values == np.round(values))))
    order = [int(block) for block in values] if whole else []
    if (not whole or len(order) < session.k or len(set(order)) != len(order)
            or not all(0 <= block < session.n_blocks for block in order)):
        raise BadInput(f"removal order {values.tolist()} of criterion {criterion!r} cannot serve k={session.k}")
    return order


def ranked_blocks(scores) -> list[int]:
    """Blocks from the most removable (lowest score) on; NaN and inf scores last, ties to the
    lower index. One-shot removes the first k; the report and the Nevergrad prior rank the same way."""
    return sorted(range(len(scores)), key=lambda block: (rank_key(float(scores[block])), block))


def removal_loss(session: SearchSession) -> np.ndarray:
    """s_i = L({i}), the N singles in one batch (N evaluations of the budget). A NaN or inf
    loss scores +inf: a block whose removal breaks the model is the least removable."""
    losses = session.evaluate([(block,) for block in range(session.n_blocks)])
    return np.array([rank_key(loss) for loss in losses])
