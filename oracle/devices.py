"""Where the live oracle's tensors live and how much work fits on the device at once.

Every tensor of an evaluation stays on the model's device; results leave it once, through
`to_host`, as small vectors (scored log-probabilities, per-depth summaries). Batch sizes are
a number of tokens per forward: on a CPU the sizes the shipped tables were built with (they
keep the cache-friendly working set of a 2-core machine); on an accelerator as many tokens as
its free memory holds, since a GPU is only busy at thousands of tokens per matmul. Losses do
not depend on the batch size beyond float rounding (tested to 1e-6)."""

from typing import Any

import torch

# Tokens per forward on a CPU: what the shipped tables were built with.
CPU_BATCH_TOKENS = {"ppl": 2048, "kl": 2048, "margin": 512, "choice": 512}
# Bounds on an accelerator: beyond these a forward is already compute-bound on an H200, and
# larger batches only cost memory the dense-state cache can use better.
ACCELERATOR_BATCH_TOKENS = {"ppl": 65_536, "kl": 65_536, "margin": 16_384, "choice": 16_384}
MIN_BATCH_TOKENS = 256
# Share of the free memory after loading that batches may take; the dense cache gets the rest
# of ACCELERATOR_MEMORY_SHARE, leaving headroom for the allocator and the LM-head chunks.
BATCH_MEMORY_SHARE = 0.35
ACCELERATOR_MEMORY_SHARE = 0.8
CPU_DENSE_CACHE_BYTES = 2 << 30


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A result leaving the device: detached, on the CPU."""
    return tensor.detach().to("cpu")


def is_accelerator(device: torch.device | str) -> bool:
    return torch.device(device).type not in ("cpu", "meta")


def free_bytes(device: torch.device | str) -> int:
    """Free memory of an accelerator now (after the model is loaded)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    backend = getattr(torch, device.type, None)
    if backend is not None and hasattr(backend, "recommended_max_memory"):  # mps
        return int(backend.recommended_max_memory() - backend.current_allocated_memory())
    raise ValueError(f"free memory of device type {device.type!r} is unknown")


def activation_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Peak bytes one token of a batch holds during one block's forward: the residual stream,
    the attention projections, the MLP's widened activations, with the input and output state
    (attention itself runs fused and is not quadratic in memory)."""
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", 4 * hidden)
    element = torch.empty(0, dtype=dtype).element_size()
    return element * (8 * hidden + 3 * intermediate)


def default_batch_tokens(objective: str, device: torch.device | str, config: Any = None,
                         dtype: torch.dtype = torch.float32, available: int | None = None) -> int:
    """Tokens per forward for `objective` (a key of CPU_BATCH_TOKENS) on `device`: the CPU sizes on a
    CPU; on an accelerator a share of `available` (default: its free memory) over the bytes a
    token takes, within MIN_BATCH_TOKENS..ACCELERATOR_BATCH_TOKENS and in multiples of 256."""
    if not is_accelerator(device):
        return CPU_BATCH_TOKENS[objective]
    available = free_bytes(device) if available is None else available
    fitting = int(available * BATCH_MEMORY_SHARE) // activation_bytes_per_token(config, dtype)
    tokens = min(ACCELERATOR_BATCH_TOKENS[objective], fitting) // 256 * 256
    return max(MIN_BATCH_TOKENS, tokens)


def dense_cache_bytes(device: torch.device | str, batch_tokens: int, config: Any = None,
                      dtype: torch.dtype = torch.float32, available: int | None = None) -> int:
    """Memory for the dense model's cached states: 2 GiB on a CPU; on an accelerator what is
    left of ACCELERATOR_MEMORY_SHARE of the free memory once a batch's activations are counted."""
    if not is_accelerator(device):
        return CPU_DENSE_CACHE_BYTES
    available = free_bytes(device) if available is None else available
    batch = batch_tokens * activation_bytes_per_token(config, dtype)
    return max(0, int(available * ACCELERATOR_MEMORY_SHARE) - batch)
