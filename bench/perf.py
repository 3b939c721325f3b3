"""`python -m bench perf`: oracle speed figures measured in one run, printed as ratios so that a
shared, noisy machine still gives comparable numbers."""

import tempfile
import time
from pathlib import Path

import numpy as np

from oracle.subset import parse_subset


def oracle_benchmark(problem_name: str, base: str, device: str) -> None:
    import torch

    from oracle.live import LiveOracle
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec

    spec = problem_spec(problem_name)
    reuse = build_live_oracle(spec, device)
    naive = LiveOracle(reuse.runner, reuse.objective, reuse.prepared, reuse.fingerprint, prefix_reuse=False)
    fixed = parse_subset(base, reuse.n_blocks)
    step = [tuple(sorted(fixed + (block,))) for block in range(reuse.n_blocks) if block not in fixed]
    print(f"problem {problem_name}: {reuse.n_blocks} blocks, {reuse.n_samples} calibration samples, device {device}")
    print(f"greedy-step workload: {len(step)} subsets = {sorted(fixed)} plus each other block")

    started = time.perf_counter()
    fast = reuse.evaluate(step)
    reuse_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = naive.evaluate(step)
    naive_s = time.perf_counter() - started
    difference = max(abs(a.loss - b.loss) for a, b in zip(fast, slow))
    print(f"  naive (full forward per subset): {naive_s:7.2f} s  {naive_s / len(step):.3f} s/evaluation")
    print(f"  prefix reuse (cold dense cache): {reuse_s:7.2f} s  {reuse_s / len(step):.3f} s/evaluation")
    print(f"  speed-up {naive_s / reuse_s:.2f}x; max |ΔL| between the paths {difference:.2e}")

    runner = naive.runner
    before = runner.flops.total
    started = time.perf_counter()
    naive.evaluate([()])
    seconds = time.perf_counter() - started
    achieved = (runner.flops.total - before) / seconds
    matmul = _matmul_flops_per_second(torch, device)
    print(f"one full evaluation: {seconds:.2f} s, {(runner.flops.total - before) / 1e9:.1f} GFLOP "
          f"(blocks run + scored LM-head rows)")
    print(f"  achieved {achieved / 1e9:.1f} GFLOP/s = {achieved / matmul:.0%} of a plain "
          f"{_MATMUL_SIZE}² fp32 matmul ({matmul / 1e9:.1f} GFLOP/s measured now)")
    table_lookup_benchmark(reuse.n_blocks, reuse.n_samples)


_MATMUL_SIZE = 1024


def _matmul_flops_per_second(torch, device: str, repeats: int = 20) -> float:
    a = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, device=device)
    b = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, device=device)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * _MATMUL_SIZE**3 * repeats / (time.perf_counter() - started)


def table_lookup_benchmark(n_blocks: int, n_samples: int, rows: int = 10_000, lookups: int = 200_000) -> None:
    """Replay speed: lookups per second through the table's in-memory index."""
    from oracle.evaluation import Evaluation
    from oracle.memo import ReplayOracle
    from oracle.table import EvaluationTable

    rng = np.random.default_rng(0)
    subsets = list({tuple(sorted(rng.choice(n_blocks, 6, replace=False).tolist())) for _ in range(rows)})
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "lookup.h5"
        with EvaluationTable.create(path, fingerprint="benchmark", n_blocks=n_blocks, n_samples=n_samples,
                                    spec={"name": "benchmark"}) as table:
            table.append([Evaluation(s, 1.0, np.zeros(n_samples, np.float32), 0.0, "live") for s in subsets])
        with EvaluationTable.open(path, mode="r") as table:
            oracle = ReplayOracle(table)
            queries = [subsets[i] for i in rng.integers(0, len(subsets), lookups)]
            started = time.perf_counter()
            for start in range(0, lookups, 1000):
                oracle.evaluate(queries[start : start + 1000])
            seconds = time.perf_counter() - started
    print(f"replay: {lookups / seconds:,.0f} lookups/s on a {len(subsets):,}-row table (target ≥ 100,000)")
