"""Token batches: what an objective hands the model, and which next-token predictions it scores.

A row may pack several sequences that share a prefix (a multiple-choice prompt followed by each
option): `segment_ids` 0 marks the shared prefix, j > 0 the j-th branch, −1 padding. A token
attends to earlier tokens of the prefix and of its own branch only, and branch positions
continue from the end of the prefix, so each branch sees exactly what it would see alone."""

from dataclasses import dataclass

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

    @property
    def plain_causal(self) -> bool:
        """True when every row is one unpadded sequence: plain causal attention applies."""
        return bool((self.segment_ids == 0).all())

    def attention_mask(self, window: int | None, dtype: torch.dtype, causal_without_mask: bool = True) -> torch.Tensor | None:
        """Additive [rows, 1, length, length] mask; None when plain causal attention is exact and
        the attention implementation is causal without a mask (`causal_without_mask`)."""
        length = self.input_ids.shape[1]
        if causal_without_mask and self.plain_causal and (window is None or window >= length):
            return None
        query = torch.arange(length)[:, None]
        key = torch.arange(length)[None, :]
        seg_q = self.segment_ids[:, :, None]
        seg_k = self.segment_ids[:, None, :]
        allowed = (key <= query) & ((seg_k == 0) | (seg_k == seg_q)) & (seg_k >= 0)
        if window is not None:
            distance = self.position_ids[:, :, None] - self.position_ids[:, None, :]
            allowed &= distance < window
        # Padding rows still attend to themselves so no softmax row is empty.
        allowed |= torch.eye(length, dtype=torch.bool)
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]

    def to(self, device: str) -> "TokenBatch":
        return TokenBatch(**{name: value.to(device) for name, value in vars(self).items()})
