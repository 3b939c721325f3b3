"""Runs `python -m bench run ARGS…` with one extra problem, `tiny/ppl`: a tiny random Llama
evaluated live and memoised in the table TABLE. Every subset the live oracle evaluates is
appended to the file LOG once it has been evaluated (and slowly, SLEEP seconds per batch, so a
test can kill the run midway).

Usage: PYTHONPATH=<repository> TABLE=… LOG=… SLEEP=… python live_run_worker.py run --problem tiny/ppl …"""

import os
import sys
import time

from bench.cli import main
from oracle.memo import MemoOracle
from oracle.table import EvaluationTable
from problems import registry
from problems.problem import Problem
from tests.test_live_oracle import ppl_oracle
from tests.tiny_models import tiny_model

N_BLOCKS = 8


class LoggedOracle:
    """The live oracle, slowed down and logging what it evaluates."""

    def __init__(self, inner, log: str, sleep_s: float):
        self.inner, self.log, self.sleep_s = inner, log, sleep_s
        self.fingerprint, self.n_blocks, self.counters = inner.fingerprint, inner.n_blocks, inner.counters

    def evaluate(self, subsets):
        time.sleep(self.sleep_s)
        evaluations = self.inner.evaluate(subsets)
        with open(self.log, "a") as handle:
            handle.writelines(",".join(map(str, e.subset)) + "\n" for e in evaluations)
        return evaluations


def tiny_problem(name, **options):
    live = LoggedOracle(ppl_oracle(tiny_model("llama", n_blocks=N_BLOCKS)), os.environ["LOG"],
                        float(os.environ.get("SLEEP", "0")))
    table = EvaluationTable.create(os.environ["TABLE"], fingerprint=live.fingerprint, n_blocks=N_BLOCKS,
                                   n_samples=5, spec={"name": name})
    return Problem(name=name, n_blocks=N_BLOCKS, oracle=MemoOracle(live, table), description="tiny llama")


if __name__ == "__main__":
    registry.register("tiny/ppl", tiny_problem, n_blocks=N_BLOCKS)
    sys.exit(main(sys.argv[1:]))
