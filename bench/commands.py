"""What each `python -m bench` command does."""

import itertools
import json
import math
import os
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

import problems
import solvers
from oracle.errors import BadInput, DataError, SolverUnavailable, TableError
from oracle.integers import integer
from oracle.model_loading import ModelSource, check_device
from oracle.subset import parse_subset
from solvers.base import check_seed


MAX_ENUMERATED = 1_000_000  # --all-of-size refuses more subsets than this
EVALUATE_BATCH = 100  # evaluate stores and reports progress every this many subsets unless told


def problem_options(args: Namespace) -> dict:
    """What shapes the problem itself (and so its fingerprint)."""
    options = {
        "study_sizes": args.study_sizes or None,
        "windows": args.windows,
        "window_tokens": args.window_tokens,
        "items": args.items,
        "margin_reduce": args.margin_reduce,
        "model": args.model,
        "bos": args.bos,
        "dtype": args.dtype,
    }
    return {k: v for k, v in options.items() if v is not None}


def execution_options(args: Namespace) -> dict:
    """Where and how the live oracle runs (never part of a fingerprint)."""
    options = {"device": args.device, "batch_tokens": args.batch_tokens, "executor": args.executor,
               "workers": args.workers, "address": args.address}
    return {k: v for k, v in options.items() if v is not None}


def problem_from_args(args: Namespace):
    oracle = {"oracle": args.oracle, "on_miss": args.on_miss, "table": args.table}
    oracle = {k: v for k, v in oracle.items() if v is not None}
    return problems.get(args.problem, **oracle, **execution_options(args), **problem_options(args))


def read_subsets(args: Namespace, n_blocks: int) -> list[tuple[int, ...]]:
    texts = list(args.subset)
    sizes = args.all_of_size or []
    for size in sizes:
        if not 0 <= size < n_blocks:
            raise BadInput(f"--all-of-size {size} is out of range 0..{n_blocks - 1}")
    total = sum(math.comb(n_blocks, size) for size in set(sizes))
    if total > MAX_ENUMERATED:
        raise BadInput(f"--all-of-size {' '.join(map(str, sizes))} means {total:,} subsets; "
                       f"at most {MAX_ENUMERATED:,} at once")
    enumerated = [subset for size in sizes for subset in itertools.combinations(range(n_blocks), size)]
    if args.subsets_file:
        try:
            texts += [line for line in args.subsets_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
        except OSError as error:
            raise DataError(f"cannot read subsets file {args.subsets_file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise DataError(f"subsets file {args.subsets_file} is not UTF-8 text") from None
    if not texts and not enumerated:
        raise BadInput("no subset given: use --subset 3,7,12, --subsets-file FILE or --all-of-size K")
    return [parse_subset(text, n_blocks) for text in texts] + enumerated


def evaluate(args: Namespace) -> int:
    # Subsets are checked before the problem (and its table) is built: bad input touches nothing.
    subsets = read_subsets(args, problems.block_count(args.problem, **problem_options(args)))
    if args.batch_size is not None and args.batch_size < 1:
        raise BadInput(f"--batch-size must be at least 1, got {args.batch_size}")
    with problem_from_args(args) as problem:
        if args.order == "predicted":
            subsets = most_promising_first(problem, subsets)
        evaluations = evaluate_in_batches(problem, [()] + subsets, args.batch_size or EVALUATE_BATCH)
        counters = problem.oracle.counters
    base = evaluations[0].loss
    rows = [
        {
            "problem": problem.name,
            "subset": list(e.subset),
            "loss": e.loss,
            "base_loss": base,
            "delta": e.loss - base,
            "source": e.source,
            "cost_s": e.cost_s,
        }
        for e in evaluations[1:]
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(f"{problem.description}")
        print(f"{'subset':<24} {'L(S)':>10} {'L(∅)':>10} {'Δ(S)':>10}  {'source':<9} {'cost_s':>7}")
        for row in rows:
            subset = ",".join(map(str, row["subset"])) or "∅"
            print(f"{subset:<24} {row['loss']:>10.5f} {row['base_loss']:>10.5f} {row['delta']:>10.5f}  "
                  f"{row['source']:<9} {row['cost_s']:>7.2f}")
        print(f"requests {counters.requests}, table hits {counters.hits}, new evaluations {counters.evaluations}, "
              f"surrogate answers {counters.surrogate}, {counters.cost_s:.1f} s evaluating")
    return 0


def most_promising_first(problem, subsets: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The subsets by the loss the surrogate of the problem's table predicts, lowest first."""
    from oracle.surrogate import Surrogate

    table = getattr(problem.oracle, "table", None)
    if table is None:
        raise BadInput(f"--order predicted needs a table, and {problem.name} has none")
    try:
        predicted = Surrogate.from_table(table).predict(subsets)
    except ValueError as error:
        raise BadInput(f"--order predicted: {error} ({table.path})") from None
    # Rounded, ties in request order: a surrogate refitted on another BLAS differs in the last
    # bits, which must not reorder the build.
    return [subsets[index] for index in np.argsort(np.round(predicted, 9), kind="stable")]


def evaluate_in_batches(problem, subsets: list[tuple[int, ...]], batch_size: int) -> list:
    """Evaluate batch by batch, so every finished batch is stored (an interrupted run resumes
    from the table), reporting progress on stderr when there is more than one batch."""
    evaluations, started = [], time.perf_counter()
    for start in range(0, len(subsets), batch_size):
        evaluations += problem.evaluate(subsets[start : start + batch_size])
        if batch_size < len(subsets):
            done, elapsed = len(evaluations), time.perf_counter() - started
            rate = done / elapsed
            print(f"{done}/{len(subsets)} subsets, {problem.oracle.counters.evaluations} evaluated, "
                  f"{rate:.2f}/s, ETA {(len(subsets) - done) / rate:.0f} s", file=sys.stderr, flush=True)
    return evaluations


def solve(args: Namespace) -> int:
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as error:
        raise BadInput(f"--config is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise BadInput("--config must be a JSON object")
    solver = solvers.get(args.solver, **config)
    with problem_from_args(args) as problem:
        result = solver.solve(problem, args.k, budget=args.budget, seed=args.seed)
        counters = problem.oracle.counters
    row = {"problem": result.problem, "k": result.k, "solver": result.solver, "seed": result.seed,
           "subset": list(result.subset), "loss": result.loss, "delta": result.delta,
           "certified": result.certified, "evaluations": result.n_evaluations, "requests": result.n_requests,
           "wall_s": result.wall_s, "oracle": counters.as_dict(), "config": result.config}
    if args.json:
        print(json.dumps(row, default=str))
    else:
        print(f"{result.solver} on {result.problem}, k={result.k}, seed {result.seed}: remove {list(result.subset)}")
        print(f"L(S) {result.loss:.5f}  Δ(S) {result.delta:.5f}{'  (certified optimal)' if result.certified else ''}")
        print(f"{result.n_evaluations} unique subsets ({result.n_requests} requests) in {result.wall_s:.1f} s; "
              f"oracle: {counters.hits} table hits, {counters.evaluations} new evaluations, {counters.cost_s:.1f} s")
    return 0


def grid_problems(args: Namespace) -> dict[str, tuple[int, ...]]:
    """Each problem of the run with its k: --problem × --k; without --problem the default grid's
    problems (each at its own k unless --k is given), or with --model the study's two objectives
    on that model."""
    from bench.runner import DEFAULT_GRID, DEFAULT_KS, STUDY_PROBLEMS

    if not args.problem and not args.model:
        return {name: tuple(args.k or ks) for name, ks in DEFAULT_GRID.items()}
    return {name: tuple(args.k or DEFAULT_KS) for name in dict.fromkeys(args.problem or STUDY_PROBLEMS)}


def run(args: Namespace) -> int:
    from bench.runner import Grid, completed, failure_line, leaderboard, run_grid

    groups = {"all": sorted(solvers.panel() + ["exact"]), "panel": solvers.panel()}
    names = groups.get(args.solvers) or [n.strip() for n in args.solvers.split(",") if n.strip()]
    if not names:
        raise BadInput(f"--solvers {args.solvers!r} names no solver")
    for seed in args.seeds:
        check_seed(seed)
    check_output_directory(args.out)
    grid = Grid(problems=grid_problems(args), solvers=names, seeds=args.seeds, budget=parse_budget(args.budget, names))
    if args.jobs is not None and args.jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {args.jobs}")
    # Replays are read-only, so problems can run side by side; a live run loads a model per job.
    jobs = args.jobs or (min(os.cpu_count() or 1, len(grid.problems)) if args.oracle == "replay" else 1)
    options = {"oracle": args.oracle, "on_miss": args.on_miss, **execution_options(args), **problem_options(args)}
    rows, ran, failed = run_grid(
        grid, args.out, options,
        ["python", "-m", "bench", *args.argv], measured_only=args.on_miss != "surrogate", jobs=jobs,
    )
    from bench.report import build_report

    print(leaderboard(rows))
    report = f"report {build_report(args.out)}" if completed(rows) else "no report: no cell completed"
    print(f"{ran} cells run; results in {args.out}; {report}")
    if failed:
        raise BadInput(f"{len(failed)} cells failed on a table miss: "
                       + "; ".join(failure_line(row) for row in failed))
    return 0


def downstream(args: Namespace) -> int:
    from bench.downstream import evaluate_models, evaluation_sets, record_draw, run_model, serving_model
    from bench.runner import completed, read_rows
    from oracle.subset import canonical_subset

    sets = args.sets or list(evaluation_sets())
    unknown = sorted(set(sets) - set(evaluation_sets()))
    if unknown:
        raise BadInput(f"unknown evaluation sets {', '.join(unknown)}; known: {', '.join(evaluation_sets())}")
    rows = [row for row in completed(read_rows(args.out)) if not args.problem or row["problem"] in args.problem]
    if not rows:
        raise BadInput(f"no finished cells in {', '.join(map(str, args.out))}"
                       + (f" for {', '.join(args.problem)}" if args.problem else ""))
    options = {"device": args.device, "dtype": args.dtype, "batch_tokens": args.batch_tokens, "items": args.items,
               "study_sizes": args.study_sizes or None}
    options = {key: value for key, value in options.items() if value is not None}
    models = sorted({row["problem"].partition("/")[0] for row in rows})
    if args.model:
        retargeted = run_model(args.model)
        models = [model for model in models if model == retargeted]  # only that run's answers
        if not models:
            raise BadInput(f"no finished cells of {args.model} in {', '.join(map(str, args.out))}")
    for out in args.out:
        record_draw(out, options)
    for model in models:
        named, retarget = serving_model(model, args.model)
        n_blocks = problems.block_count(f"{named}/ppl", **retarget)
        # The dense model first, then the runs' answers by k, then (asked for) every single block.
        answers = sorted({tuple(row["subset"]) for row in rows if row["problem"].startswith(model + "/")},
                         key=lambda subset: (len(subset), subset))
        singles = [(block,) for block in range(n_blocks)] if args.singles else []
        subsets = [canonical_subset(s, n_blocks) for s in [(), *answers, *singles]]
        started = time.perf_counter()
        seconds = evaluate_models(named, subsets, sets, {**options, **retarget})
        print(f"{model}: {len(set(subsets))} pruned models × {len(sets)} sets in "
              f"{time.perf_counter() - started:.0f} s; seconds per new evaluation: "
              + ", ".join(f"{name} {spent / count:.1f} ({count})" for name, (count, spent) in seconds.items() if count))
    return 0


def check_output_directory(out: Path) -> None:
    """Refuse an --out that cannot become a directory, before any cell runs."""
    try:
        existing = next(path for path in (out, *out.parents) if path.exists())
    except OSError as error:
        raise BadInput(f"--out {out}: {error.strerror}") from None
    if not existing.is_dir():
        raise BadInput(f"--out {out}: {existing} is not a directory")


def report(args: Namespace) -> int:
    from bench.report import build_report

    page = build_report(args.out)
    print(f"report {page}; summary {page.with_name('summary.md')}")
    return 0


def parse_budget(words: list[str] | None, names: list[str]) -> int | dict[str, int | str] | None:
    """`--budget 50` → 50; `--budget random=100 evopress=matched` → {"random": 100, "evopress":
    "matched"}; `--budget matched` → "matched" for the grid's random and evopress."""
    from bench.runner import MATCHED_BUDGET

    if not words:
        return None
    if words == ["matched"]:
        return {name: "matched" for name in MATCHED_BUDGET if name in names}
    try:
        if len(words) == 1 and "=" not in words[0]:
            return integer(words[0])
        pairs = [word.split("=", 1) for word in words]
        if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
            raise ValueError
        return {name.strip(): value if value == "matched" else integer(value) for name, value in pairs}
    except ValueError:
        raise BadInput(f"--budget takes N, matched, or SOLVER=N|matched ..., got {' '.join(words)}") from None


def leaderboard(args: Namespace) -> int:
    from bench.runner import annotate, read_rows
    from bench.runner import leaderboard as render

    missing = [str(path) for path in args.out if not (path / "results.jsonl").exists()]
    if missing:
        raise BadInput(f"no results.jsonl in {', '.join(missing)}")
    print(render(annotate(read_rows(args.out))))
    return 0


def table_info(args: Namespace) -> int:
    from oracle.surrogate import holdout_error, holdout_summary
    from oracle.table import EvaluationTable
    from problems.table_directories import companion_table

    with EvaluationTable.open(args.path, mode="r") as table:
        info = table.info()
        arrays = table.to_arrays()
    companion = companion_table(args.path)
    if companion is not None:
        with EvaluationTable.open(companion, mode="r") as other:
            info["read_with"] = {"path": str(companion), "rows": len(other)}
    error = holdout_error(arrays["removed"], arrays["loss"])
    figures = {key: None if isinstance(value, float) and math.isnan(value) else value
               for key, value in (error.__dict__ if error else {}).items()}
    info["surrogate_error"] = {**figures, "summary": holdout_summary(error)}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"table        {info['path']}")
    print(f"fingerprint  {info['fingerprint']}")
    print(f"problem      {info['description']}")
    print(f"rows         {info['rows']} ({info['n_blocks']} blocks, {info['n_samples']} samples per row)")
    if "read_with" in info:
        print(f"read with    {info['read_with']['path']} ({info['read_with']['rows']} rows): "
              "the problem's shipped and user tables are read together")
    coverage = info["coverage"]
    for part in ("singles", "pairs"):
        print(f"{part:<12} {coverage[part]['present']} of {coverage[part]['possible']} present")
    for size, count in sorted(coverage["by_size"].items(), key=lambda item: int(item[0])):
        possible = math.comb(info["n_blocks"], int(size))
        print(f"  size {int(size):>2}: {count:>7} of {possible:,} subsets")
    print(f"created      {info['created']}, updated {info['updated']}")
    for produced in info["environments"]:
        print(f"environment  {produced['rows']} rows made with {json.dumps(produced['environment'], sort_keys=True)}")
    for name, value in sorted(info["attributes"].items()):
        print(f"attribute    {name} = {json.dumps(value)[:120]}")
    print(f"spec         {json.dumps(info['spec'], sort_keys=True)}")
    print(f"surrogate    {holdout_summary(error)}")
    return 0


def table_datasheet(args: Namespace) -> int:
    from bench.datasheet import render
    from problems.table_directories import SHIPPED_TABLES

    directory = args.dir or SHIPPED_TABLES
    if not directory.is_dir() or not any(directory.glob("*.h5")):
        raise BadInput(f"no tables (*.h5) in {directory}")
    (directory / "README.md").write_text(render(directory))
    print(f"datasheet {directory / 'README.md'}")
    return 0


def table_merge(args: Namespace) -> int:
    from contextlib import ExitStack

    from oracle.table import EvaluationTable

    if args.target.resolve() in {source.resolve() for source in args.sources}:
        raise BadInput(f"table {args.target} cannot be merged into itself")
    with ExitStack() as stack:
        sources = [stack.enter_context(EvaluationTable.open(path, mode="r")) for path in args.sources]
        with EvaluationTable.open(args.target, mode="a") as target:
            results = target.merge(sources)
            total = len(target)
    for path, (rows, added, differing) in zip(args.sources, results):
        kept = f"; kept this table's {', '.join(differing)}" if differing else ""
        print(f"{path}: {rows} rows and {len(added)} attributes added{kept}")
    print(f"{args.target}: {total} rows")
    return 0


def table_rekey(args: Namespace) -> int:
    from oracle.table import EvaluationTable, table_path
    from problems.calibration_tokens import spec_with_shipped_tokens

    for path in args.paths:
        with EvaluationTable.open(path, mode="r") as table:
            spec = spec_with_shipped_tokens(table)
            target = table_path(path.parent, spec["name"], spec["fingerprint"])
            table.write_rekeyed(target, spec["fingerprint"], spec)
            rows = len(table)
        print(f"{path} → {target} ({rows} rows; the old file is no longer read)")
    return 0


def table_verify(args: Namespace) -> int:
    from oracle.table import EvaluationTable
    from problems.calibration_tokens import refuse_other_tokens
    from problems.model_oracles import build_live_oracle

    if args.rows < 1:
        raise BadInput(f"--rows must be at least 1, got {args.rows}")
    check_seed(args.seed)
    with EvaluationTable.open(args.path, mode="r") as table:
        spec = model_spec_of(table)
        stored = {e.subset: e for e in table.rows()}
    if not stored:
        raise BadInput(f"table {args.path} has no rows to verify")
    check_device(args.device)  # before the calibration data and model are prepared
    subsets = sorted(stored)
    chosen = [subsets[i] for i in np.random.default_rng(args.seed).choice(len(subsets), min(args.rows, len(subsets)), replace=False)]
    # Other calibration tokens (another tokenizer library) make every difference meaningless:
    # refused before the model is loaded.
    checked = []
    live = build_live_oracle(spec, args.device, check_tokens=lambda digest: checked.append(refuse_other_tokens(table, digest)))
    if not any(checked):
        print(f"note: {args.path} records no token digest, so its calibration tokens cannot be checked", file=sys.stderr)
    fresh = live.evaluate(chosen)
    report = []
    for evaluation in fresh:
        old = stored[evaluation.subset].loss
        absolute = abs(evaluation.loss - old)
        relative = absolute / max(abs(old), 1e-12)
        report.append({"subset": list(evaluation.subset), "stored": old, "live": evaluation.loss,
                       "abs_diff": absolute, "rel_diff": relative})
    largest = max(report, key=lambda row: row["rel_diff"] if np.isfinite(row["rel_diff"]) else math.inf)
    if args.json:
        print(json.dumps({"rows": report, "max_abs_diff": max(r["abs_diff"] for r in report),
                          "max_rel_diff": largest["rel_diff"]}))
    else:
        for row in report:
            print(f"{','.join(map(str, row['subset'])) or '∅':<24} stored {row['stored']:.6f} live {row['live']:.6f} "
                  f"rel diff {row['rel_diff']:.2e}")
        print(f"{len(report)} rows re-evaluated; largest relative difference {largest['rel_diff']:.2e} "
              f"(subset {largest['subset']})")
    return 0


def model_spec_of(table) -> dict:
    """The table's problem spec, refused before any model is loaded unless it is a model
    problem's spec whose fingerprint is the table's (a damaged or foreign spec is not)."""
    from problems.model_problems import spec_fingerprint

    spec = table.spec
    try:
        ModelSource(**spec["model"])
        ours = spec_fingerprint(spec) == table.fingerprint
    except (KeyError, TypeError, AttributeError):
        ours = False
    if not ours:
        raise TableError(f"table {table.path} holds no model problem spec of its fingerprint {table.fingerprint}: "
                         "nothing to re-evaluate")
    return spec


def data_check(args: Namespace) -> int:
    from problems.data_build import check_shipped

    results = check_shipped()
    for row in results:
        status = "matches" if row["match"] else "DIFFERS"
        print(f"{row['name']:<40} {row['rows']:>6} rows  {status}")
    austen_ok = austen_file(rebuild=False)
    tokens_ok = report_token_files(write_missing=False)
    return 0 if all(row["match"] for row in results) and tokens_ok and austen_ok else 1


def austen_file(rebuild: bool) -> bool:
    """Build the held-out Austen text from its Debian package and compare it with (or, with
    `rebuild`, write it over) the shipped file; print one line. A machine without Debian's tools
    skips it."""
    import tempfile

    from oracle.fingerprint import file_digest
    from problems.austen_text import FILE_NAME, build_austen_file
    from problems.data_build import DATA_DIR

    with tempfile.TemporaryDirectory() as directory:
        try:
            built = build_austen_file(Path(directory))
        except DataError as error:
            print(f"{FILE_NAME:<40} skipped: {error}")
            return True
        same = (DATA_DIR / FILE_NAME).is_file() and file_digest(str(built)) == file_digest(str(DATA_DIR / FILE_NAME))
        if rebuild and not same:
            (DATA_DIR / FILE_NAME).write_bytes(built.read_bytes())
    print(f"{FILE_NAME:<40} {'matches' if same else 'written' if rebuild else 'DIFFERS'}")
    return same or rebuild


def data_rebuild(args: Namespace) -> int:
    from problems.data_build import DATA_DIR, build_all, render_sources

    results = build_all(DATA_DIR)
    (DATA_DIR / "SOURCES.md").write_text(render_sources(results))
    for row in results:
        print(f"{row['name']:<40} {row['rows']:>6} rows  sha256 {row['sha256'][:16]}")
    austen_file(rebuild=True)
    return 0 if report_token_files(write_missing=True) else 1


def report_token_files(write_missing: bool) -> bool:
    """Compare the shipped calibration token ids with what the tokenizer gives now (writing
    missing token files when asked) and their token digests with the shipped tables'; print one
    line per file. True when nothing differs."""
    from oracle.table import EvaluationTable
    from problems.calibration_tokens import token_files
    from problems.model_problems import problem_spec
    from problems.table_directories import SHIPPED_TABLES

    good = True
    for row in token_files(write_missing=write_missing):
        libraries = ", ".join(f"{name} {value}" for name, value in row["libraries"].items())
        status = row["status"]
        if status == "DIFFERS":
            status = "DIFFERS from what the tokenizer gives here (the shipped ids stay the problem's)"
        line = f"{row['name']:<40} {row['tokens'] or 0:>6} tokens  {status} ({libraries})"
        good &= row["status"] in ("matches", "written") or row["status"].startswith("skipped")
        if row["digest"]:
            fingerprint = problem_spec(row["problem"])["fingerprint"]
            path = SHIPPED_TABLES / f"{row['problem'].replace('/', '__')}__{fingerprint}.h5"
            if path.exists():
                with EvaluationTable.open(path, mode="r") as table:
                    try:
                        stored = table.attribute("token_digest")
                    except KeyError:
                        stored = None
                same = stored == row["digest"]
                good &= same
                line += f"; token digest {row['digest'][:16]} {'=' if same else 'DIFFERS from'} {path.name}'s"
                line += "" if same else f" {str(stored)[:16]}"
        print(line)
    return good


def list_problems(args: Namespace) -> int:
    print("problems:")
    for name in problems.names():
        print(f"  {name}")
    print("solvers (default configuration):")
    for name in solvers.names():
        try:
            config = ", ".join(f"{key}={value!r}" for key, value in solvers.get(name).get_config().items())
        except SolverUnavailable as error:
            config = f"unavailable: {error}"
        print(f"  {name:<10} {config}")
    from importlib.util import find_spec

    # The Nevergrad family is a name rule, not entries; listing it must not import nevergrad.
    family = "any Nevergrad optimiser as an exactly-k solver, e.g. ng-NGOpt, ng-DiscreteOnePlusOne, ng-CMA"
    if find_spec("nevergrad") is None:
        family += " (unavailable: pip install 'depthbench[solvers]')"
    print(f"  {'ng-<Name>':<10} {family}")
    from oracle.table import EvaluationTable
    from problems.table_directories import SHIPPED_TABLES, user_table_directory

    for kind, directory in (("shipped (read-only)", SHIPPED_TABLES), ("user", user_table_directory())):
        paths = sorted(directory.glob("*.h5"))
        print(f"{kind} tables in {directory}:" + ("" if paths else " none"))
        for path in paths:
            with EvaluationTable.open(path, mode="r") as table:
                info = table.info()
            print(f"  {path.name}  {info['rows']} rows  {info['description']}")
    return 0


def ray_perf(args: Namespace, shaping: dict) -> int:
    from bench.ray_benchmark import ray_benchmark

    if min(args.ray_workers) < 1:
        raise BadInput(f"--ray-workers must be at least 1, got {min(args.ray_workers)}")
    check_device(args.device)
    gpus = 1.0 if args.device.startswith("cuda") else 0.0
    ray_benchmark(args.ray_workers, args.problem, device=args.device, gpus_per_worker=gpus, address=args.address,
                  **shaping)
    return 0


def perf(args: Namespace) -> int:
    if args.solvers:
        from bench.solver_benchmarks import gap_benchmark, overhead_benchmark, panel_sharing_benchmark

        panel_sharing_benchmark()
        gap_benchmark()
        overhead_benchmark()
        return 0
    from bench.perf import check_shape, oracle_benchmark, table_lookup_benchmark
    from problems.model_oracles import check_dtype

    shaping = problem_options(args)
    if args.executor or args.workers or (args.address and not args.ray_workers):
        raise BadInput("perf measures one replica in this process (--ray-workers: the Ray executor): "
                       "--executor and --workers do not apply, --address only with --ray-workers")
    if args.ray_workers:
        return ray_perf(args, shaping)
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise BadInput(f"--batch-tokens must be at least 1, got {args.batch_tokens}")
    if args.step_subsets is not None and args.step_subsets < 1:
        raise BadInput(f"--step-subsets must be at least 1, got {args.step_subsets}")
    check_shape(args.shape)
    n_blocks = problems.block_count(args.problem, **shaping)
    if args.shape is not None:
        from bench.perf import SHAPES

        n_blocks = SHAPES[args.shape][1]["num_hidden_layers"]
    if len(parse_subset(args.base, n_blocks)) == n_blocks:
        raise BadInput(f"--base {args.base} removes every block: the greedy step has none left to add")
    check_device(args.device)
    check_dtype(args.device, shaping.get("dtype"))
    oracle_benchmark(args.problem, args.base, args.device, shaping, args.batch_tokens, args.shape, args.step_subsets)
    table_lookup_benchmark(n_blocks, 16)
    return 0
