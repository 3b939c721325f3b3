"""Appends a fixed list of evaluations to a table in small batches, printing 'done <i>' once
batch i is appended; the crash-safety test kills it at random moments.

Usage: PYTHONPATH=<repository> python table_writer_worker.py PATH [N_BATCHES]"""

import itertools
import sys

import numpy as np

from oracle.evaluation import Evaluation
from oracle.table import EvaluationTable

N_BLOCKS = 24
N_SAMPLES = 8
BATCH = 3
FINGERPRINT = "crash-test"


def all_subsets() -> list[tuple[int, ...]]:
    return [s for k in (1, 2, 3, 4) for s in itertools.combinations(range(N_BLOCKS), k)]


def batches() -> list[list[tuple[int, ...]]]:
    subsets = all_subsets()
    return [subsets[i : i + BATCH] for i in range(0, len(subsets), BATCH)]


def evaluation(subset: tuple[int, ...]) -> Evaluation:
    per_sample = np.array([sum(subset) + 0.25 * j for j in range(N_SAMPLES)], dtype=np.float32)
    return Evaluation(subset, float(per_sample.mean()), per_sample, 0.01 * len(subset), "live")


def main(path: str, n_batches: int | None = None) -> None:
    # Merge often so kills also land during compaction.
    EvaluationTable.compact_min_rows = 24
    table = EvaluationTable.create(
        path, fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, n_samples=N_SAMPLES, spec={"test": "crash"}
    )
    print("open", flush=True)
    for i, batch in enumerate(batches()[:n_batches]):
        table.append([evaluation(subset) for subset in batch])
        print(f"done {i}", flush=True)
    table.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
