"""Token batches: what an objective hands the model, and which next-token predictions it scores.

A row may pack several sequences that share a prefix (a multiple-choice prompt followed by each
option): `segment_ids` 0 marks the shared prefix, j > 0 the j-th branch, −1 padding. A token
attends to earlier tokens of the prefix and of its own branch only, and branch positions
continue from the end of the prefix, so each branch sees exactly what it would see alone."""

import copy
from dataclasses import dataclass, field, fields

import torch


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [rows, length] long
    position_ids: torch.Tensor  # [rows, length] long
    segment_ids: torch.Tensor  # [rows, length] long; 0 prefix, j>0 branch j, -1 padding
    score_row: torch.Tensor  # [m] row of each scored prediction
    score_col: torch.Tensor  # [m] column whose output predicts the target
    score_target: torch.Tensor  # [m] target token id
    score_sample: torch.Tensor  # [m] calibration sample index (global)
    score_option: torch.Tensor  # [m] option index within the sample (0 for plain text)
    # True when every row is one unpadded sequence: plain causal attention applies. Decided
    # once where the batch is built, so no forward waits on the device to know it.
    plain_causal: bool = field(init=False)

    def __post_init__(self):
        self.plain_causal = bool((self.segment_ids == 0).all())

    def attention_mask(self, window: int | None, dtype: torch.dtype, causal_without_mask: bool = True) -> torch.Tensor | None:
        """Additive [rows, 1, length, length] mask; None when plain causal attention is exact and
        the attention implementation is causal without a mask (`causal_without_mask`)."""
        length = self.input_ids.shape[1]
        if causal_without_mask and self.plain_causal and (window is None or window >= length):
            return None
        device = self.segment_ids.device
        # unsqueeze rather than [:, None], a fill of 0 rather than of min: what fake tensors of
        # a device this torch build lacks accept, so the mask is tested for CUDA on any CPU.
        query = torch.arange(length, device=device).unsqueeze(1)
        key = torch.arange(length, device=device).unsqueeze(0)
        seg_q = self.segment_ids.unsqueeze(2)
        seg_k = self.segment_ids.unsqueeze(1)
        allowed = (key <= query) & ((seg_k == 0) | (seg_k == seg_q)) & (seg_k >= 0)
        if window is not None:
            distance = self.position_ids.unsqueeze(2) - self.position_ids.unsqueeze(1)
            allowed &= distance < window
        # Padding rows still attend to themselves so no softmax row is empty.
        allowed |= torch.eye(length, dtype=torch.bool, device=device)
        mask = torch.full(allowed.shape, torch.finfo(dtype).min, dtype=dtype, device=device)
        return mask.masked_fill_(allowed, 0).unsqueeze(1)

    def to(self, device: str) -> "TokenBatch":
        moved = copy.copy(self)
        for tensor in fields(self):
            if tensor.init:
                setattr(moved, tensor.name, getattr(self, tensor.name).to(device))
        return moved
