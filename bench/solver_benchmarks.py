"""Solver benchmarks on synthetic problems with exact optima: optimality gaps and evaluations
used, solver overhead per evaluation as N grows, and how much a shared memo saves the panel.
Printed, not asserted: these are figures."""

import statistics
import time
from importlib.util import find_spec

import problems
import solvers
from oracle.recording import RecordingOracle

# Budgets for the solvers that have none of their own (they run until told to stop).
OPEN_ENDED_BUDGET = {"random": 200, "evopress": 400}
# Nevergrad optimisers measured next to the panel (the ng- family has no entries to iterate),
# each on random search's budget.
NEVERGRAD = ("ng-NGOpt", "ng-DiscreteOnePlusOne", "ng-OnePlusOne", "ng-TwoPointsDE", "ng-PSO", "ng-CMA")


def budget_for(name: str) -> int | None:
    return OPEN_ENDED_BUDGET["random"] if name in NEVERGRAD else OPEN_ENDED_BUDGET.get(name)


def gap_benchmark(n_blocks: int = 20, k: int = 5, instances: int = 10, seed: int = 0) -> list[dict]:
    """Every solver, and the Nevergrad optimisers of NEVERGRAD where nevergrad is installed, on
    `instances` quadratic and `instances` higher-order problems, against exhaustive enumeration;
    returns one row per solver with mean/max gap and evaluations."""
    names = [name for name in solvers.names() if name != "exact"]
    if find_spec("nevergrad") is not None:
        names += NEVERGRAD
    width = max(map(len, names))
    rows = {name: {"gaps": [], "relative": [], "evaluations": [], "optimal": 0} for name in names}
    cases = [f"synthetic/{family}-N{n_blocks}-seed{s}" for family in ("quadratic", "higher-order")
             for s in range(instances)]
    for case in cases:
        problem = problems.get(case)
        optimum = solvers.get("exact").solve(problem, k).loss
        base = problem.base_loss()
        for name in names:
            result = solvers.get(name).solve(problem, k, budget=budget_for(name), seed=seed)
            gap = result.loss - optimum
            rows[name]["gaps"].append(gap)
            rows[name]["relative"].append(gap / max(optimum - base, 1e-12))
            rows[name]["evaluations"].append(result.n_evaluations)
            rows[name]["optimal"] += gap <= 1e-12
    summary = []
    print(f"optimality gap on {len(cases)} synthetic instances (N={n_blocks}, k={k}; half with "
          f"contiguous-run terms), gap = L(S) − L(S*) in nats, relative = gap / Δ(S*)")
    print(f"{'solver':<{width}} {'optimal':>8} {'mean gap':>10} {'max gap':>10} {'mean rel':>9} {'evals':>7}")
    for name in names:
        row = rows[name]
        summary.append({"solver": name, "optimal": row["optimal"], "instances": len(cases),
                        "mean_gap": statistics.mean(row["gaps"]), "max_gap": max(row["gaps"]),
                        "mean_relative_gap": statistics.mean(row["relative"]),
                        "mean_evaluations": statistics.mean(row["evaluations"])})
        print(f"{name:<{width}} {row['optimal']:>4}/{len(cases):<3} {summary[-1]['mean_gap']:>10.4f} "
              f"{summary[-1]['max_gap']:>10.4f} {summary[-1]['mean_relative_gap']:>9.1%} "
              f"{summary[-1]['mean_evaluations']:>7.0f}")
    return summary


def overhead_benchmark(sizes: tuple[int, ...] = (32, 64, 80, 128)) -> list[dict]:
    """Seconds of solver work per evaluation (the synthetic oracle costs ~0), k = N/4, each
    solver with its default configuration and natural cost (open-ended ones capped)."""
    names = [name for name in solvers.names() if name != "exact"]
    print(f"solver overhead: seconds per evaluation (evaluations used), k = N/4; "
          f"budgets {OPEN_ENDED_BUDGET} for open-ended solvers")
    print(f"{'solver':<10} " + " ".join(f"{'N=' + str(n):>16}" for n in sizes))
    results = []
    for name in names:
        cells = []
        for n in sizes:
            problem = problems.get(f"synthetic/quadratic-N{n}-seed0")
            started = time.perf_counter()
            result = solvers.get(name).solve(problem, n // 4, budget=budget_for(name), seed=0)
            seconds = time.perf_counter() - started
            per = seconds / max(result.n_evaluations, 1)
            results.append({"solver": name, "n_blocks": n, "seconds": seconds,
                            "evaluations": result.n_evaluations, "per_evaluation_s": per})
            cells.append(f"{per:8.4f} ({result.n_evaluations:>4})")
        print(f"{name:<10} " + " ".join(f"{cell:>16}" for cell in cells))
    return results


def panel_sharing_benchmark(name: str = "synthetic/higher-order-N30-seed0", k: int = 6, seed: int = 0) -> float:
    """Unique evaluations of the whole panel through one shared memo ÷ the sum of the solvers'
    solo evaluation counts (below 1: solvers request many of the same subsets)."""
    problem = problems.get(name)
    problem.oracle = RecordingOracle(problem.oracle)
    solo = 0
    for solver in solvers.names():
        if solver == "exact":
            continue
        solo += solvers.get(solver).solve(problem, k, budget=budget_for(solver), seed=seed).n_evaluations
    shared = len(problem.oracle.distinct - {()})
    ratio = shared / solo
    print(f"panel sharing on {name}, k={k}, seed {seed}: {shared} unique evaluations with a shared memo / "
          f"{solo} summed solo evaluations = {ratio:.3f}")
    return ratio
