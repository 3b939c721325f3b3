"""Runs a Hugging Face decoder one block at a time, so that any block can be skipped (identity on
the residual stream) and hidden states between blocks can be cached and reused.

Works for causal LMs whose blocks are `model.model.layers` (Llama, Qwen2/3, Mistral, OLMo, Gemma
families). Each block keeps its own attention type (full or sliding window) and rotary
embedding whichever others are skipped, as in the unpruned model."""

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from oracle.errors import BadInput
from oracle.token_batch import TokenBatch

SUPPORTED_ATTENTION = ("full_attention", "sliding_attention")


@dataclass
class BatchContext:
    """Per-batch inputs every block needs: mask and rotary embeddings per attention type."""

    masks: dict[str, torch.Tensor | None]
    rotary: dict[str, Any]
    position_ids: torch.Tensor
    tokens: int  # rows × length, padding included: what the blocks actually compute


@dataclass
class FlopCounter:
    """Multiply-adds ×2 of the blocks and LM-head rows actually computed."""

    block_flops: float = 0.0
    head_flops: float = 0.0
    blocks_run: int = 0

    @property
    def total(self) -> float:
        return self.block_flops + self.head_flops


class BlockRunner:
    # 256 rows of logits (50 MB for a 49k vocabulary) stay cache-friendly: on SmolLM2-135M's
    # 2,032 scored tokens the head takes ~1.4 s in chunks of 256 against 1.6–2.6 s in one chunk
    # of 2,048, with bit-identical log-probabilities.
    def __init__(self, model: Any, head_chunk: int = 256):
        backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        if not isinstance(getattr(backbone, "layers", None), torch.nn.ModuleList):
            raise BadInput(f"{type(model).__name__}: blocks are not a ModuleList at model.model.layers")
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.model = model
        self.config = config
        self.backbone = backbone
        self.layers = backbone.layers
        self.n_blocks = len(self.layers)
        self.layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * self.n_blocks)
        unsupported = set(self.layer_types) - set(SUPPORTED_ATTENTION)
        if unsupported:
            raise BadInput(f"unsupported attention types {sorted(unsupported)} in {type(model).__name__}")
        self.sliding_window = getattr(config, "sliding_window", None)
        # SDPA attends causally when given no mask; eager attention (Gemma-2's only one, say)
        # attends to every position unless masked, so it always gets the mask.
        self.causal_without_mask = getattr(model.config, "_attn_implementation", None) == "sdpa"
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.head_chunk = head_chunk
        rotary_params = inspect.signature(backbone.rotary_emb.forward).parameters
        self._rotary_by_type = "layer_type" in rotary_params
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.flops = FlopCounter()
        self._block_params = self._matmul_params(self.layers[0])
        self._attention_width = self._attention_dim(config)
        self._head_params = model.get_output_embeddings().weight.numel()

    # --- per batch -------------------------------------------------------------------------
    def context(self, batch: TokenBatch) -> BatchContext:
        """The batch must already be on the model's device (LiveOracle moves it once)."""
        embeddings_like = torch.empty(0, dtype=self.dtype, device=self.device)
        masks, rotary = {}, {}
        for layer_type in set(self.layer_types):
            window = self.sliding_window if layer_type == "sliding_attention" else None
            masks[layer_type] = batch.attention_mask(window, self.dtype, self.causal_without_mask)
            if self._rotary_by_type:
                rotary[layer_type] = self.backbone.rotary_emb(embeddings_like, batch.position_ids, layer_type)
            else:
                rotary[layer_type] = self.backbone.rotary_emb(embeddings_like, batch.position_ids)
        rows, length = batch.input_ids.shape
        return BatchContext(masks=masks, rotary=rotary, position_ids=batch.position_ids, tokens=rows * length)

    def embed(self, batch: TokenBatch) -> torch.Tensor:
        return self.backbone.embed_tokens(batch.input_ids)

    def run_block(self, index: int, hidden: torch.Tensor, context: BatchContext) -> torch.Tensor:
        layer_type = self.layer_types[index]
        output = self.layers[index](
            hidden,
            attention_mask=context.masks[layer_type],
            position_embeddings=context.rotary[layer_type],
            position_ids=context.position_ids,
            use_cache=False,
        )
        self.flops.blocks_run += 1
        length = hidden.shape[1]
        self.flops.block_flops += 2.0 * self._block_params * context.tokens
        self.flops.block_flops += 4.0 * context.tokens * length * self._attention_width
        return output[0] if isinstance(output, tuple) else output

    def score(self, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """Log-probability of each scored target."""
        pieces = [logprobs.gather(1, batch.score_target[start : start + len(logprobs), None])[:, 0]
                  for start, logprobs in self._next_token_logprobs(hidden, batch)]
        return torch.cat(pieces) if pieces else torch.empty(0, device=hidden.device)

    def distributions(self, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """The next-token log-probabilities over the whole vocabulary at every scored position,
        [scored, vocab] float32 (the dense reference of a KL objective, made once per batch)."""
        pieces = [logprobs for _, logprobs in self._next_token_logprobs(hidden, batch)]
        return torch.cat(pieces) if pieces else torch.empty(0, device=hidden.device)

    def divergence(self, hidden: torch.Tensor, batch: TokenBatch, reference: torch.Tensor) -> torch.Tensor:
        """KL(reference ‖ this model's next-token distribution) in nats at each scored position;
        `reference` is `distributions` of the same batch."""
        pieces = [
            torch.nn.functional.kl_div(logprobs, reference[start : start + len(logprobs)], reduction="none",
                                       log_target=True).sum(-1)
            for start, logprobs in self._next_token_logprobs(hidden, batch)
        ]
        return torch.cat(pieces) if pieces else torch.empty(0, device=hidden.device)

    def _next_token_logprobs(self, hidden: torch.Tensor, batch: TokenBatch):
        """(first row, log-softmax of the logits) per chunk of scored positions. The final norm
        and LM head run only at the scored positions, in chunks, so the [tokens × vocab] logits
        never exist at once."""
        selected = hidden[batch.score_row, batch.score_col]
        head = self.model.get_output_embeddings()
        for start in range(0, selected.shape[0], self.head_chunk):
            chunk = self.backbone.norm(selected[start : start + self.head_chunk])
            logits = head(chunk).float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            yield start, logits.log_softmax(-1)
        self.flops.head_flops += 2.0 * self._head_params * selected.shape[0]

    # --- details ---------------------------------------------------------------------------
    @staticmethod
    def _matmul_params(block: torch.nn.Module) -> int:
        return sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))

    @staticmethod
    def _attention_dim(config: Any) -> int:
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return head_dim * config.num_attention_heads
