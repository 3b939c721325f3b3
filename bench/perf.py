"""`python -m bench perf`: oracle speed figures measured in one run, printed as ratios so that a
shared, noisy machine still gives comparable numbers.

On any device: seconds per evaluation, the speed-up of prefix reuse on a greedy step, and the
model FLOP utilisation (MFU) against a plain matmul in the problem's dtype measured in the same
run, at a size that reaches the device's peak. `--shape NAME` builds a random-weight model of a
named architecture on the device (cost does not depend on the weights), so the cost at the
study's scale is measured without downloading a model."""

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from oracle.errors import BadInput
from oracle.subset import parse_subset

# Architectures measured without their weights: the shapes of the reference study's models and
# of the default one (transformers config class name, and its fields).
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama3-8b": ("LlamaConfig", dict(
        vocab_size=128_256, hidden_size=4096, intermediate_size=14_336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, rope_theta=500_000.0, max_position_embeddings=8192)),
    "qwen3-8b": ("Qwen3Config", dict(
        vocab_size=151_936, hidden_size=4096, intermediate_size=12_288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, rope_theta=1_000_000.0,
        max_position_embeddings=40_960)),
    "smollm2-135m": ("LlamaConfig", dict(
        vocab_size=49_152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=8192)),
}
# A matmul this size reaches peak throughput: tensor cores need thousands per side; a CPU's
# BLAS is at its peak well below that and would take seconds per product.
MATMUL_SIZE = {"accelerator": 8192, "cpu": 2048}
MEASURE_S = 1.0  # the reference matmul is repeated for at least this long


def check_shape(shape: str | None) -> None:
    if shape is not None and shape not in SHAPES:
        raise BadInput(f"unknown --shape {shape!r}; known: {', '.join(sorted(SHAPES))}")


def oracle_benchmark(problem_name: str, base: str, device: str, shaping: dict[str, Any],
                     batch_tokens: int | None = None, shape: str | None = None,
                     step_subsets: int | None = None) -> None:
    """Print the cost figures of one problem (`shaping`: the options of `problem_spec`)."""
    from oracle.live import LiveOracle
    from problems.model_oracles import build_live_oracle, live_oracle_on
    from problems.model_problems import problem_spec

    spec = problem_spec(problem_name, **shaping)
    if shape is None:
        reuse = build_live_oracle(spec, device, batch_tokens=batch_tokens)
        what = spec["model"].get("file") or spec["model"].get("path")
    else:
        reuse = live_oracle_on(random_model(shape, spec["dtype"], device), spec, batch_tokens)
        what = f"random weights of the {shape} shape"
    naive = LiveOracle(reuse.runner, reuse.objective, reuse.prepared, reuse.fingerprint, prefix_reuse=False,
                       dense_cache_bytes=reuse.dense_cache_bytes)
    tokens = sum(batch.input_ids.numel() for batch in reuse.prepared.batches)
    print(f"problem {problem_name} on {what}: {reuse.n_blocks} blocks, {reuse.n_samples} calibration samples "
          f"({tokens:,} tokens), {spec['dtype']} on {device}; batches of {reuse.objective.batch_tokens:,} tokens "
          f"({len(reuse.prepared.batches)} per evaluation), dense-state cache {reuse.dense_cache_bytes / 2**30:.1f} GiB")

    fixed = parse_subset(base, reuse.n_blocks)
    step = [tuple(sorted(fixed + (block,))) for block in range(reuse.n_blocks) if block not in fixed]
    if step_subsets is not None and step_subsets < len(step):
        # Evenly spaced candidates: shallow and deep additions share short and long prefixes.
        step = [step[i] for i in np.linspace(0, len(step) - 1, step_subsets).round().astype(int)]
    print(f"greedy-step workload: {len(step)} subsets = {sorted(fixed)} plus one other block")

    runner = naive.runner
    naive.evaluate([()])  # warm-up: kernels chosen, caches allocated
    synchronize(device)
    before = runner.flops.total
    started = time.perf_counter()
    naive.evaluate([()])
    synchronize(device)
    seconds = time.perf_counter() - started
    flops = runner.flops.total - before
    fast_s, fast = timed(reuse.evaluate, step, device)
    slow_s, slow = timed(naive.evaluate, step, device)
    difference = max(abs(a.loss - b.loss) for a, b in zip(fast, slow))
    print(f"  one full evaluation: {seconds:.3f} s, {flops / 1e12:.2f} TFLOP "
          f"(blocks run + scored LM-head rows)")
    print(f"  naive (full forward per subset): {slow_s:7.2f} s  {slow_s / len(step):.3f} s/evaluation")
    print(f"  prefix reuse (cold dense cache): {fast_s:7.2f} s  {fast_s / len(step):.3f} s/evaluation")
    print(f"  prefix-reuse speed-up {slow_s / fast_s:.2f}x; max |ΔL| between the paths {difference:.2e}")
    size, peak = matmul_flops_per_second(device, spec["dtype"])
    achieved = flops / seconds
    print(f"  achieved {achieved / 1e12:.3f} TFLOP/s = MFU {achieved / peak:.0%} of a plain {size}² "
          f"{spec['dtype']} matmul ({peak / 1e12:.3f} TFLOP/s measured now)")


def random_model(shape: str, dtype: str, device: str):
    """A causal LM of the named shape with random weights, built directly on `device`."""
    import torch
    import transformers

    class_name, fields = SHAPES[shape]
    config = getattr(transformers, class_name)(**fields)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.eval()


def timed(function, argument, device: str):
    started = time.perf_counter()
    result = function(argument)
    synchronize(device)
    return time.perf_counter() - started, result


def synchronize(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device: str, dtype: str) -> tuple[int, float]:
    """(size, FLOP/s) of a square matmul in `dtype`, repeated for at least MEASURE_S seconds."""
    import torch

    from oracle.devices import is_accelerator

    size = MATMUL_SIZE["accelerator" if is_accelerator(device) else "cpu"]
    a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
    a @ b
    synchronize(device)
    repeats, started = 0, time.perf_counter()
    while time.perf_counter() - started < MEASURE_S:
        a @ b
        repeats += 1
        if repeats % 10 == 0 or not is_accelerator(device):
            synchronize(device)
    synchronize(device)
    return size, 2 * size**3 * repeats / (time.perf_counter() - started)


def table_lookup_benchmark(n_blocks: int, n_samples: int, rows: int = 10_000, lookups: int = 200_000) -> None:
    """Replay speed: lookups per second through the table's in-memory index."""
    from oracle.evaluation import Evaluation
    from oracle.memo import ReplayOracle
    from oracle.table import EvaluationTable

    rng = np.random.default_rng(0)
    size = min(6, n_blocks // 2)
    subsets = list({tuple(sorted(rng.choice(n_blocks, size, replace=False).tolist())) for _ in range(rows)})
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
