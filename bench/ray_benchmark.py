"""Throughput of the Ray executor against the number of workers, and the round trip a request
pays to reach a worker, measured in one run and printed as ratios to the in-process live oracle
so that a shared, noisy machine still gives comparable numbers.

A worker on a CPU slot runs torch on one thread (Ray sets OMP_NUM_THREADS from the slot), so
the in-process oracle is measured on one thread too: the ratios to it are Ray's alone; its rate
with torch's default threads is printed beside it. Every figure is of a warm oracle (its second
pass over the workload): the first pass loads replicas and fills their dense-state caches."""

import os
import statistics
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from oracle.subset import Subset

_ROUND_TRIPS = 5


def ray_benchmark(
    workers_list: Sequence[int] = (1, 2),
    problem: str = "smollm2-135m/ppl",
    subsets: Sequence[Subset] | None = None,
    device: str = "cpu",
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    **spec_options: Any,
) -> dict[str, Any]:
    """Print and return evaluations/s of the in-process LiveOracle and of RayOracle with each
    number of workers on `subsets` (default: every single removal, a greedy step), and the
    seconds of a one-subset request (the last block removed, nearly free with prefix reuse)
    through Ray and in process. `spec_options` (sizes, `model`, `dtype`) go to the problem spec."""
    import torch

    from oracle.ray_executor import RayOracle
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec

    spec = problem_spec(problem, **spec_options)
    factory = partial(build_live_oracle, spec, device)
    local = factory()
    n_blocks = local.n_blocks
    workload = list(subsets) if subsets is not None else [(block,) for block in range(n_blocks)]
    trivial = [(n_blocks - 1,)]
    print(f"problem {spec['name']}: {n_blocks} blocks, {local.n_samples} calibration samples, device {device}, "
          f"{len(workload)} subsets per pass, {os.cpu_count()} CPUs")

    threads = torch.get_num_threads()
    default_rate = _rate(local, workload)
    torch.set_num_threads(1)
    try:
        local_rate = _rate(local, workload)
        local_trip = _round_trip(local, trivial)
    finally:
        torch.set_num_threads(threads)
    print(f"  in process, 1 torch thread: {local_rate:7.2f} evaluations/s "
          f"({threads} threads: {default_rate:.2f} = {default_rate / local_rate:.2f}x)")

    rates: dict[int, float] = {}
    ray_trip = None
    # Largest first: the first RayOracle starts local Ray with at least as many CPU slots as it has workers.
    for workers in sorted(set(workers_list), reverse=True):
        with RayOracle(factory, workers, n_blocks, spec["fingerprint"], address=address,
                       gpus_per_worker=gpus_per_worker) as oracle:
            rates[workers] = _rate(oracle, workload)
            ray_trip = _round_trip(oracle, trivial)
    smallest = min(rates)
    for workers, rate in sorted(rates.items()):
        print(f"  ray, {workers} worker{'s' * (workers > 1)}: {rate:7.2f} evaluations/s = "
              f"{rate / local_rate:.2f}x in process, {rate / rates[smallest]:.2f}x {smallest} worker"
              f"{'s' * (smallest > 1)}, {rate / rates[smallest] / (workers / smallest):.0%} scaling efficiency")
    print(f"one-subset request: in process (1 thread) {local_trip * 1e3:.1f} ms, through ray {ray_trip * 1e3:.1f} ms "
          f"= {ray_trip / local_trip:.1f}x; overhead {(ray_trip - local_trip) * 1e3:.1f} ms per request")
    return {"in_process": local_rate, "in_process_default_threads": default_rate, "ray": rates,
            "request_s": {"in_process": local_trip, "ray": ray_trip}}


def _rate(oracle, workload: list[Subset]) -> float:
    """Evaluations per second of the second of two passes over `workload`."""
    oracle.evaluate(workload)
    started = time.perf_counter()
    oracle.evaluate(workload)
    return len(workload) / (time.perf_counter() - started)


def _round_trip(oracle, request: list[Subset]) -> float:
    """Median seconds of `request`, after one unmeasured call."""
    oracle.evaluate(request)
    times = []
    for _ in range(_ROUND_TRIPS):
        started = time.perf_counter()
        oracle.evaluate(request)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
