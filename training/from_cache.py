"""Training the head from cached main-model states (training.cache_states): what the Trainer optimises.

No main model is loaded: the head reads the cached hidden states, the frozen embedding for its token inputs
and the lm_head rows of the draft vocabulary it will serve with (or all of them). A step costs the head's K
passes and a [tokens x |draft vocabulary|] matmul, instead of a main-model forward plus full-vocabulary logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.mtp_head import MTPHead, acceptance_rows, drafts_from_states, states_mtp_loss

PAD_VALUES = {"input_ids": 0, "loss_mask": 0, "hidden": 0.0, "greedy": -1, "top_ids": 0, "top_logp": 0.0}


@dataclass
class StatesCollator:
    """Right-pads a batch of cached conversations; adds attention_mask (1 on real tokens)."""

    pad_id: int = 0

    def __call__(self, features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        n = max(len(f["input_ids"]) for f in features)
        out = {}
        for key, pad in PAD_VALUES.items():
            first = features[0][key]
            buf = torch.full((len(features), n, *first.shape[1:]), self.pad_id if key == "input_ids" else pad,
                             dtype=first.dtype)
            for b, f in enumerate(features):
                buf[b, : len(f[key])] = f[key]
            out[key] = buf
        att = torch.zeros((len(features), n), dtype=torch.long)
        for b, f in enumerate(features):
            att[b, : len(f["input_ids"])] = 1
        out["attention_mask"] = att
        out["input_ids"] = out["input_ids"].long()
        out["loss_mask"] = out["loss_mask"].bool() & att.bool()
        return out


class CachedHeadModule(nn.Module):
    """The head (its only registered submodule: parameters, state_dict and checkpoints hold the head alone) with
    the frozen embedding and draft-vocabulary lm_head rows as non-persistent buffers."""

    def __init__(self, head: MTPHead, embed_weight: torch.Tensor, lm_weight: torch.Tensor,
                 vocab_ids: torch.Tensor | None, *, num_steps: int, beta: float, form: str, label_source: str,
                 distill_weight: float, distill_loss: str, distill_top_n: int = 20):
        super().__init__()
        self.head = head
        self.register_buffer("embed_weight", embed_weight.detach(), persistent=False)
        rows = lm_weight.detach() if vocab_ids is None else lm_weight.detach()[vocab_ids]
        self.register_buffer("lm_rows", rows, persistent=False)
        if vocab_ids is not None:
            index = torch.full((lm_weight.shape[0],), -1, dtype=torch.long)
            index[vocab_ids] = torch.arange(len(vocab_ids))
            self.register_buffer("vocab_ids", vocab_ids.long(), persistent=False)
            self.register_buffer("vocab_index", index, persistent=False)
        else:
            self.vocab_ids = self.vocab_index = None
        self.num_steps, self.beta, self.form, self.label_source = num_steps, beta, form, label_source
        self.distill_weight, self.distill_loss, self.distill_top_n = distill_weight, distill_loss, distill_top_n
        self.skipped_targets = 0  # CE targets outside the draft vocabulary, summed over training steps
        self.used_targets = 0
        self._cast_rows: torch.Tensor | None = None

    def loss_rows(self) -> torch.Tensor:
        """The lm_head rows for the loss, in the autocast dtype when autocast is on, cast once: autocast recasts a
        buffer at every matmul (3 x |draft vocabulary| x H per step), and the product is the same either way."""
        dev = self.lm_rows.device.type
        if not torch.is_autocast_enabled(dev):
            return self.lm_rows
        dtype = torch.get_autocast_dtype(dev)
        c = self._cast_rows
        if c is None or c.dtype != dtype or c.device != self.lm_rows.device:
            c = self._cast_rows = self.lm_rows.to(dtype)
        return c

    def forward(self, input_ids, attention_mask, loss_mask, hidden, greedy, top_ids, top_logp, return_loss: bool = True):
        """return_loss=True tells the Trainer this model computes its own loss (no labels input)."""
        embeds = F.embedding(input_ids, self.embed_weight)
        loss, stats = states_mtp_loss(
            self.head, hidden, embeds, self.loss_rows(), input_ids, loss_mask,
            num_steps=self.num_steps, beta=self.beta, form=self.form, label_source=self.label_source,
            greedy=greedy.long(), vocab_index=self.vocab_index, distill_weight=self.distill_weight,
            distill_loss=self.distill_loss, top_ids=top_ids[..., : self.distill_top_n],
            top_logp=top_logp[..., : self.distill_top_n],
        )
        if self.training:
            self.skipped_targets += stats["skipped"]
            self.used_targets += stats["targets"]
        out = {"loss": loss}
        if not self.training:
            out["acceptance"] = self.acceptance(input_ids, attention_mask, loss_mask, hidden, embeds, greedy.long())
        return out

    @torch.no_grad()
    def acceptance(self, input_ids, attention_mask, loss_mask, hidden, embeds, greedy) -> torch.Tensor:
        """[B, K + 2] counts as training.finetune.per_row_acceptance, drafting as served (serving form, draft
        vocabulary), exact float math (no autocast)."""
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            drafts = drafts_from_states(self.head, hidden.float(), embeds.float(), self.lm_rows.float(), self.num_steps,
                                        self.vocab_ids)
        return acceptance_rows(drafts, greedy, input_ids, attention_mask, loss_mask, self.num_steps)
