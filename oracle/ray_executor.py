"""RayOracle: the live oracle spread over Ray actors, one model replica per worker (one GPU
each, or one CPU slot), so that a large request batch keeps several replicas busy.

A batch is put in the live oracle's visit order and cut into contiguous chunks, so subsets
sharing a prefix of kept blocks land on one replica and keep its prefix reuse. There are a few
chunks per worker and each actor holds at most two at a time: a replica that finishes early
takes the next chunk, and the one queued behind the running one hides the round trip.

Failures are Ray's to handle: an actor whose process dies is restarted (its constructor builds
the replica again) and the chunks it held are run again (`max_restarts`, `max_task_retries`).
An evaluation is deterministic, so a chunk run twice gives the same values.

Ray is an optional dependency (`depthbench[ray]`), imported only here, when an oracle is built.
A remote cluster (`address`) needs depthbench and the factory's module installed on its nodes."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import Evaluation, OracleCounters
from oracle.live import LiveOracle, visit_order
from oracle.subset import Subset

# Chunks an actor holds at once: the one it runs and the next, already sent.
_HELD_PER_ACTOR = 2


class RayOracle:
    """The interface of LiveOracle, served by `workers` replicas that `factory` (a picklable
    zero-argument callable returning a LiveOracle) builds in Ray actors. `address` None starts
    a local Ray unless one is running in this process; otherwise it is the cluster to join.

    A batch becomes about `chunks_per_worker` chunks per worker; an actor is restarted, and
    its chunks retried, up to `max_restarts` times.

    Counters are kept here, in the driver: requests, unique evaluations and the seconds they
    cost on their replica, as LiveOracle counts them. The per-block criteria come from the first
    replica. `close()` (or leaving a `with` block) kills the actors; Ray itself stays up."""

    def __init__(
        self,
        factory: Callable[[], LiveOracle],
        workers: int,
        n_blocks: int,
        fingerprint: str,
        address: str | None = None,
        gpus_per_worker: float = 0.0,
        chunks_per_worker: int = 3,
        max_restarts: int = 3,
    ):
        ray = _import_ray()
        if workers < 1 or chunks_per_worker < 1:
            raise BadInput(f"workers and chunks_per_worker must be at least 1, got {workers} and {chunks_per_worker}")
        if not ray.is_initialized():
            if address is None:
                # Enough CPU slots for every worker even on a small machine, else actors would wait forever.
                ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False)
            else:
                ray.init(address=address)
        self._ray = ray
        self.n_blocks = n_blocks
        self.fingerprint = fingerprint
        self.chunks_per_worker = chunks_per_worker
        self.counters = OracleCounters()
        replica = ray.remote(_Replica).options(
            num_cpus=1, num_gpus=gpus_per_worker, max_restarts=max_restarts, max_task_retries=max_restarts)
        self._actors = [replica.remote(factory) for _ in range(workers)]
        # Waiting for every replica here surfaces a failing factory, or a replica of another
        # problem, before anything is evaluated.
        try:
            for described in ray.get([actor.describe.remote() for actor in self._actors]):
                if described != (n_blocks, fingerprint):
                    raise BadInput(
                        f"a replica has n_blocks={described[0]}, fingerprint {described[1]}; "
                        f"RayOracle was given n_blocks={n_blocks}, fingerprint {fingerprint}"
                    )
        except BaseException:
            self.close()
            raise

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        """L(S) of each subset, in request order; a repeated subset is evaluated once."""
        results = {evaluation.subset: evaluation for chunk in self.evaluate_iter(subsets) for evaluation in chunk}
        return [results[subset] for subset in subsets]

    def evaluate_iter(self, subsets: Sequence[Subset]) -> Iterator[list[Evaluation]]:
        """The evaluations of the distinct subsets, one list per chunk as chunks finish (in no
        fixed order). The chunks are sent now; the results are collected while iterating."""
        if not self._actors:
            raise BadInput("this RayOracle is closed")
        self.counters.requests += len(subsets)
        # The replicas' own visit order, so that a chunk is a run of the order they visit in.
        ordered = sorted(set(subsets), key=lambda subset: visit_order(subset, self.n_blocks))
        pending = deque(_split(ordered, len(self._actors) * self.chunks_per_worker))
        running: dict[Any, Any] = {}  # result ref → the actor computing it

        def send(actor) -> None:
            if pending:
                running[actor.evaluate.remote(pending.popleft())] = actor

        for actor in self._actors:
            for _ in range(_HELD_PER_ACTOR):
                send(actor)
        return self._collect(running, send)

    def _collect(self, running: dict[Any, Any], send: Callable[[Any], None]) -> Iterator[list[Evaluation]]:
        """Each finished chunk in turn, its actor given the next pending chunk first."""
        while running:
            (done,), _ = self._ray.wait(list(running), num_returns=1)
            send(running.pop(done))
            evaluations = self._ray.get(done)
            self.counters.evaluations += len(evaluations)
            self.counters.cost_s += sum(evaluation.cost_s for evaluation in evaluations)
            yield evaluations

    def block_scores(self, criterion: str) -> np.ndarray:
        """Per-block scores of `criterion`, from the first replica."""
        return self._delegate("block_scores", criterion)

    def run_distances(self, length: int) -> np.ndarray:
        """Angular distance of every run of `length` blocks, from the first replica."""
        return self._delegate("run_distances", length)

    def segment_information(self, estimator: str = "gaussian") -> np.ndarray:
        """Hidden-state MI between block boundaries, from the first replica."""
        return self._delegate("segment_information", estimator)

    def removal_order(self, criterion: str) -> np.ndarray:
        """Iterative removal order under a hidden-state criterion, from the first replica."""
        return self._delegate("removal_order", criterion)

    def _delegate(self, method: str, argument) -> np.ndarray:
        if not self._actors:
            raise BadInput("this RayOracle is closed")
        value, evaluations, cost_s = self._ray.get(self._actors[0].call.remote(method, argument))
        self.counters.evaluations += evaluations  # the 'accuracy' criterion evaluates N+1 subsets
        self.counters.cost_s += cost_s
        return value

    def close(self) -> None:
        """Kill the actors (no restart); the oracle answers nothing afterwards."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []

    def __enter__(self) -> RayOracle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Replica:
    """The body of one actor: a LiveOracle built by the factory in the actor's process (again
    after a restart)."""

    def __init__(self, factory: Callable[[], LiveOracle]):
        self.oracle = factory()

    def describe(self) -> tuple[int, str]:
        return self.oracle.n_blocks, self.oracle.fingerprint

    def evaluate(self, subsets: list[Subset]) -> list[Evaluation]:
        return self.oracle.evaluate(subsets)

    def call(self, method: str, argument) -> tuple[Any, int, float]:
        """`oracle.<method>(argument)` and the evaluations and seconds it added to the counters."""
        counters = self.oracle.counters
        evaluations, cost_s = counters.evaluations, counters.cost_s
        value = getattr(self.oracle, method)(argument)
        return value, counters.evaluations - evaluations, counters.cost_s - cost_s


def _split(items: list[Subset], count: int) -> list[list[Subset]]:
    """`items` cut into at most `count` contiguous runs whose lengths differ by at most one."""
    count = min(count, len(items))
    bounds = [len(items) * index // count for index in range(count + 1)] if count else []
    return [items[start:stop] for start, stop in zip(bounds, bounds[1:])]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput("RayOracle needs Ray, which is not installed: pip install 'depthbench[ray]'") from None
    return ray
