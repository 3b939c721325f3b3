"""Building the oracle of a model problem: live (write-through to its table) or replayed.

The model is loaded only when a request misses the table, so replaying or re-reading stored
evaluations never pays for torch, the model or the tokenisation of the calibration data."""

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from oracle.errors import BadInput, FingerprintMismatch, TableError
from oracle.evaluation import OracleCounters
from oracle.integers import is_integer
from oracle.layered_table import LayeredTable
from oracle.memo import MemoOracle, ReplayOracle
from oracle.model_loading import ModelSource, check_device
from oracle.sample_prefix import SamplePrefixOracle
from oracle.table import EvaluationTable, table_path
from problems import table_directories
from problems.problem import Problem
from problems.model_problems import description, is_sample_prefix, problem_spec

DTYPES = ("float32", "bfloat16", "float16")
EXECUTORS = ("local", "ray")


def build_problem(
    name: str,
    oracle: str = "live",
    table: str | Path | None = None,
    on_miss: str = "strict",
    device: str = "cpu",
    study_sizes: bool = False,
    dtype: str | None = None,
    batch_tokens: int | None = None,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    **sizes: Any,
) -> Problem:
    """The problem `name` over its tables: `table` alone when given, else the user's table
    (see `problems.table_directories`) read together with the shipped one if there is one.
    `batch_tokens` (tokens per forward; default chosen for the device, see `oracle.devices`)
    changes speed and memory only, not L, so it is no part of the fingerprint; so do `executor`
    ("local": in this process; "ray": `workers` model replicas on Ray, one GPU each on cuda,
    at `address` or on a local Ray)."""
    if table is not None and not isinstance(table, (str, Path)):
        raise BadInput(f"table must be a path, not {table!r}")
    if batch_tokens is not None and (not is_integer(batch_tokens) or batch_tokens < 1):
        raise BadInput(f"batch_tokens must be an integer of at least 1, got {batch_tokens!r}")
    dtype = check_dtype(device, dtype)
    check_executor(executor, workers, address)
    if oracle == "live" or on_miss == "live":
        check_device(device)  # before any table is created for evaluations that could not run
    spec = problem_spec(name, study_sizes=study_sizes, dtype=dtype, **sizes)
    n_blocks = spec["model"]["n_blocks"]
    live = DeferredLiveOracle(spec, device, n_blocks, batch_tokens, (executor, workers, address))
    if oracle == "live":
        store = problem_table(spec, table, device, mode="create")
        live.table = store
        chosen = MemoOracle(live, store)
    elif oracle == "replay":
        chosen = replay_oracle(spec, table, on_miss, live, device)
    else:
        raise BadInput(f"unknown oracle {oracle!r}: expected 'live' or 'replay'")
    return Problem(name=spec["name"], n_blocks=n_blocks, oracle=chosen, description=description(spec), spec=spec,
                   releases=[live.close])


def check_dtype(device: str, dtype: str | None) -> str:
    """The dtype to run in (float32 unless given), refused where it is unknown or unsupported."""
    dtype = dtype or "float32"
    if dtype not in DTYPES:
        raise BadInput(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if device == "cpu" and dtype != "float32":
        raise BadInput(f"dtype {dtype} is not supported on cpu (fp32 is the fast path there)")
    return dtype


def check_executor(executor: str, workers: Any, address: str | None) -> None:
    if executor not in EXECUTORS:
        raise BadInput(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if not is_integer(workers) or workers < 1:
        raise BadInput(f"workers must be an integer of at least 1, got {workers!r}")
    if executor == "local" and (workers != 1 or address is not None):
        raise BadInput("workers and address need executor 'ray'")


def problem_table(spec: dict[str, Any], table: str | Path | None, device: str, mode: str):
    """The explicit `table`, else the problem's user table, layered over its shipped table when
    there is one. mode 'create' (a missing table is created), 'a' (an existing one is appended
    to) or 'r'; a layered table creates its user table on its first write in either writing mode."""
    create = partial(
        EvaluationTable.create,
        fingerprint=spec["fingerprint"],
        n_blocks=spec["model"]["n_blocks"],
        n_samples=sample_count(spec),
        spec=spec,
        description=description(spec),
        environment={"device": device},
    )
    if table is None:
        path = table_path(table_directories.user_table_directory(), spec["name"], spec["fingerprint"])
        shipped = table_path(table_directories.shipped_directory(spec["name"]), spec["name"], spec["fingerprint"])
        if shipped.exists() and shipped.resolve() != path.resolve():
            shipped_table = EvaluationTable.open(shipped, mode="r", expected_fingerprint=spec["fingerprint"])
            return LayeredTable(shipped_table, path, partial(create, path) if mode != "r" else None)
    else:
        path = Path(table)
    return create(path) if mode == "create" else EvaluationTable.open(path, mode=mode)


def replay_oracle(spec: dict[str, Any], table: str | Path | None, on_miss: str, live: "DeferredLiveOracle",
                  device: str):
    """Replay from the problem's tables, or from a table of the same problem built with more
    calibration samples (its first per-sample losses are this problem's): `table`, or when the
    problem has no table of its own and misses are strict, such a table in the table
    directories."""
    if table is None and on_miss == "strict" and not problem_table_exists(spec):
        table = larger_sample_table(spec)
    store = problem_table(spec, table, device, mode="a" if on_miss == "live" else "r")
    if store.fingerprint == spec["fingerprint"]:
        live.table = store if on_miss == "live" else None
        return ReplayOracle(store, on_miss=on_miss, live=live)
    store.close()
    if not is_sample_prefix(spec, store.spec):
        raise FingerprintMismatch(
            f"table {store.path} was built for fingerprint {store.fingerprint}, "
            f"but the problem has fingerprint {spec['fingerprint']}"
        )
    if on_miss != "strict":
        raise BadInput(f"table {store.path} has more calibration samples than the problem: "
                       "replay it with on_miss='strict'")
    return SamplePrefixOracle(ReplayOracle(EvaluationTable.open(store.path, mode="r")), sample_count(spec),
                              spec["fingerprint"])


def problem_table_exists(spec: dict[str, Any]) -> bool:
    return any(table_path(directory, spec["name"], spec["fingerprint"]).exists()
               for directory in (table_directories.user_table_directory(),
                                 table_directories.shipped_directory(spec["name"])))


def larger_sample_table(spec: dict[str, Any]) -> Path | None:
    """A table of the same problem name whose calibration samples begin with this problem's."""
    pattern = table_path(".", spec["name"], "*").name
    for directory in (table_directories.user_table_directory(), table_directories.shipped_directory(spec["name"])):
        for path in sorted(Path(directory).glob(pattern)):
            try:
                with EvaluationTable.open(path, mode="r") as candidate:
                    if is_sample_prefix(spec, candidate.spec):
                        return path
            except TableError:
                continue  # an unreadable table serves nothing; it is reported where it is used
    return None


def sample_count(spec: dict[str, Any]) -> int:
    """Calibration samples per row: windows (ppl, kl), items (margin) or options (choice: every
    option of every item)."""
    if spec["objective"]["name"] == "choice":
        from problems.calibration_tokens import choice_items

        return sum(len(item["choices"]) for item in choice_items(spec))
    return spec["objective"].get("windows") or spec["objective"]["items"]


class DeferredLiveOracle:
    """A LiveOracle built on its first request: model load, tokenisation and data reading happen
    only if something must really be evaluated."""

    def __init__(self, spec: dict[str, Any], device: str, n_blocks: int, batch_tokens: int | None = None,
                 executor: tuple[str, int, str | None] = ("local", 1, None)):
        self.spec = spec
        self.device = device
        self.batch_tokens = batch_tokens
        self.executor = executor
        self.n_blocks = n_blocks
        self.fingerprint = spec["fingerprint"]
        self.counters = OracleCounters()
        self.table: EvaluationTable | LayeredTable | None = None
        self._live = None

    @property
    def live(self):
        if self._live is None:
            check = self._record_token_digest if self.table is not None else None
            if self.executor[0] == "ray":
                self._live = build_ray_oracle(self.spec, self.device, check, self.batch_tokens, *self.executor[1:])
            else:
                self._live = build_live_oracle(self.spec, self.device, check_tokens=check,
                                               batch_tokens=self.batch_tokens)
            self.counters = self._live.counters
        return self._live

    def evaluate(self, subsets):
        return self.live.evaluate(subsets)

    def evaluate_iter(self, subsets):
        """The live oracle's chunks as they finish (Ray's workers', or the in-process oracle's
        STORED_CHUNK at a time): the memo stores each as it arrives."""
        yield from self.live.evaluate_iter(subsets)

    def block_scores(self, criterion: str):
        return self.live.block_scores(criterion)

    def run_distances(self, length: int):
        return self.live.run_distances(length)

    def segment_information(self, estimator: str = "gaussian"):
        return self.live.segment_information(estimator)

    def removal_order(self, criterion: str):
        return self.live.removal_order(criterion)

    def close(self) -> None:
        """Release what the live oracle holds beyond this process (Ray actors)."""
        close = getattr(self._live, "close", None)
        if close is not None:
            close()

    def _record_token_digest(self, digest: str) -> None:
        """Checked before the model is loaded, hence before anything is evaluated: a table whose
        token digest differs is refused (the tokenizer library or the data recipe changed); a
        table without one records this one, with the tokenizer libraries when the ids were
        made by tokenising rather than read from a shipped token file."""
        from problems.calibration_tokens import refuse_other_tokens, tokenizer_libraries

        if not refuse_other_tokens(self.table, digest):
            self.table.set_attribute("token_digest", digest)
            if not self.spec["data"].get("tokens"):
                self.table.set_attribute("token_libraries", tokenizer_libraries())


def build_live_oracle(spec: dict[str, Any], device: str, check_tokens: Callable[[str], None] | None = None,
                      batch_tokens: int | None = None):
    """The LiveOracle of `spec`: calibration tokens first (shipped, or tokenised without loading
    the weights), passed by digest to `check_tokens` (which raises to refuse them), then the
    model (see `live_oracle_on` for the batch size)."""
    from oracle.model_loading import load_model
    from problems.calibration_tokens import prepare_calibration

    prepared = prepare_calibration(spec, batch_tokens=batch_tokens)
    if check_tokens is not None:
        check_tokens(prepared[1].token_digest)
    loaded = load_model(ModelSource(**spec["model"]), dtype=spec["dtype"], device=device)
    return live_oracle_on(loaded.model, spec, batch_tokens, loaded.tokenizer, prepared)


def build_ray_oracle(spec: dict[str, Any], device: str, check_tokens: Callable[[str], None] | None,
                     batch_tokens: int | None, workers: int, address: str | None):
    """`build_live_oracle` in each of `workers` Ray actors (one GPU each on cuda); the
    calibration tokens are checked here first, so a refused table starts no actor."""
    import torch

    from oracle.ray_executor import RayOracle
    from problems.calibration_tokens import prepare_calibration

    if check_tokens is not None:
        check_tokens(prepare_calibration(spec)[1].token_digest)
    factory = partial(build_live_oracle, spec, device, None, batch_tokens)
    gpus = 1.0 if torch.device(device).type == "cuda" else 0.0
    return RayOracle(factory, workers, spec["model"]["n_blocks"], spec["fingerprint"], address, gpus)


def live_oracle_on(model: Any, spec: dict[str, Any], batch_tokens: int | None = None, tokenizer: Any = None,
                   prepared: tuple | None = None):
    """The LiveOracle of `spec`'s objective on a loaded `model`, in batches of `batch_tokens`
    tokens: by default as many as the device's free memory holds now that the model is loaded
    (`oracle.devices`). `prepared` is (objective, batches) already made, used when its batch
    size is the one chosen."""
    from oracle import devices
    from oracle.block_runner import BlockRunner
    from oracle.live import LiveOracle
    from problems.calibration_tokens import prepare_calibration

    runner = BlockRunner(model)
    objective_name = spec["objective"]["name"]
    batch_tokens = batch_tokens or devices.default_batch_tokens(objective_name, runner.device, runner.config,
                                                                runner.dtype)
    if prepared is None or prepared[0].batch_tokens != batch_tokens:
        prepared = prepare_calibration(spec, tokenizer, batch_tokens)
    objective, batches = prepared
    cache = devices.dense_cache_bytes(runner.device, batch_tokens, runner.config, runner.dtype)
    return LiveOracle(runner, objective, batches, spec["fingerprint"], dense_cache_bytes=cache)
