"""Training the head from cached main-model states (training.cache_states): what the Trainer optimises.

No main model is loaded: the head reads the cached hidden states, the frozen embedding for its token inputs
and the lm_head rows of the draft vocabulary it will serve with (or all of them). A step costs the head's K
passes and a [tokens x |draft vocabulary|] matmul, instead of a main-model forward plus full-vocabulary logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    the frozen embedding and the draft vocabularies' lm_head rows as non-persistent buffers.

    ``vocabs``: None (the full vocabulary), or {name: ids} of the vocabularies the loss runs over. With several
    (one per language map), ``choose`` picks a conversation's from its prompt's ids (the ids before its first
    trained token, what vLLM sees of the first request), as serving picks the map a request is drafted over.
    """

    def __init__(self, head: MTPHead, embed_weight: torch.Tensor, lm_weight: torch.Tensor,
                 vocabs: dict[str, torch.Tensor] | None, *, num_steps: int, beta: float, form: str,
                 label_source: str, distill_weight: float, distill_loss: str, distill_top_n: int = 20,
                 choose: Callable[[list[int]], str] | None = None, hidden_noise: float = 0.0):
        super().__init__()
        self.head = head
        self.register_buffer("embed_weight", embed_weight.detach(), persistent=False)
        if vocabs is not None and len(vocabs) > 1 and choose is None:
            raise ValueError(f"{len(vocabs)} vocabularies ({sorted(vocabs)}) need `choose` (prompt ids -> name)")
        self.vocab_names = list(vocabs) if vocabs is not None else ["full"]
        self.choose = choose
        for g, name in enumerate(self.vocab_names):
            ids = None if vocabs is None else vocabs[name].long()
            self.register_buffer(f"lm_rows_{g}", lm_weight.detach() if ids is None else lm_weight.detach()[ids],
                                 persistent=False)
            index = None
            if ids is not None:
                index = torch.full((lm_weight.shape[0],), -1, dtype=torch.long)
                index[ids] = torch.arange(len(ids))
            self.register_buffer(f"vocab_ids_{g}", ids, persistent=False)
            self.register_buffer(f"vocab_index_{g}", index, persistent=False)
        self.num_steps, self.beta, self.form, self.label_source = num_steps, beta, form, label_source
        self.distill_weight, self.distill_loss, self.distill_top_n = distill_weight, distill_loss, distill_top_n
        self.hidden_noise = hidden_noise
        self.skipped_targets = 0  # CE targets outside the draft vocabulary, summed over training steps
        self.used_targets = 0
        self._cast_rows: dict[int, torch.Tensor] = {}

    def _vocab(self, g: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return getattr(self, f"lm_rows_{g}"), getattr(self, f"vocab_ids_{g}"), getattr(self, f"vocab_index_{g}")

    def loss_rows(self, g: int = 0) -> torch.Tensor:
        """Vocabulary g's lm_head rows for the loss, in the autocast dtype when autocast is on, cast once: autocast
        recasts a buffer at every matmul (3 x |draft vocabulary| x H per step), and the product is the same."""
        rows = self._vocab(g)[0]
        dev = rows.device.type
        if not torch.is_autocast_enabled(dev):
            return rows
        dtype = torch.get_autocast_dtype(dev)
        c = self._cast_rows.get(g)
        if c is None or c.dtype != dtype or c.device != rows.device:
            c = self._cast_rows[g] = rows.to(dtype)
        return c

    def row_groups(self, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor | None:
        """[B] index of each conversation's vocabulary (None with one vocabulary)."""
        if len(self.vocab_names) == 1:
            return None
        first = torch.where(loss_mask.any(-1), loss_mask.int().argmax(-1), loss_mask.shape[1])
        names = [self.choose(input_ids[b, : int(first[b])].tolist()) for b in range(len(input_ids))]
        return torch.tensor([self.vocab_names.index(n) for n in names], device=input_ids.device)

    def forward(self, input_ids, attention_mask, loss_mask, hidden, greedy, top_ids, top_logp, return_loss: bool = True):
        """return_loss=True tells the Trainer this model computes its own loss (no labels input)."""
        embeds = F.embedding(input_ids, self.embed_weight)
        groups = self.row_groups(input_ids, loss_mask)
        hidden_in = self.noisy(hidden) if self.training else hidden
        loss, stats = states_mtp_loss(
            self.head, hidden_in, embeds, [self.loss_rows(g) for g in range(len(self.vocab_names))], input_ids,
            loss_mask, num_steps=self.num_steps, beta=self.beta, form=self.form, label_source=self.label_source,
            greedy=greedy.long(), vocab_index=[self._vocab(g)[2] for g in range(len(self.vocab_names))],
            row_groups=groups, distill_weight=self.distill_weight, distill_loss=self.distill_loss,
            top_ids=top_ids[..., : self.distill_top_n], top_logp=top_logp[..., : self.distill_top_n],
        )
        if self.training:
            self.skipped_targets += stats["skipped"]
            self.used_targets += stats["targets"]
        out = {"loss": loss}
        if not self.training:
            out["acceptance"] = self.acceptance(input_ids, attention_mask, loss_mask, hidden, embeds, greedy.long(),
                                                groups)
        return out

    def noisy(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` + U(-a, a) x each vector's RMS (a = hidden_noise; the input unchanged when 0). Relative, so
        one setting means the same for any model's hidden-state scale and either hidden-state convention."""
        if not self.hidden_noise:
            return hidden
        h = hidden.float()
        rms = h.pow(2).mean(-1, keepdim=True).sqrt()
        return (h + (torch.rand_like(h) * 2 - 1) * (self.hidden_noise * rms)).to(hidden.dtype)

    @torch.no_grad()
    def acceptance(self, input_ids, attention_mask, loss_mask, hidden, embeds, greedy, groups=None) -> torch.Tensor:
        """[B, K + 2] counts as training.finetune.per_row_acceptance, drafting as served (serving form, each
        conversation over its own draft vocabulary), exact float math (no autocast)."""
        drafts = torch.full((*input_ids.shape, self.num_steps), -1, dtype=torch.long, device=input_ids.device)
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            for g in range(len(self.vocab_names)):
                rows = slice(None) if groups is None else (groups == g).nonzero()[:, 0]
                if groups is not None and rows.numel() == 0:
                    continue
                lm_rows, ids, _ = self._vocab(g)
                drafts[rows] = drafts_from_states(self.head, hidden[rows].float(), embeds[rows].float(),
                                                  lm_rows.float(), self.num_steps, ids)
        return acceptance_rows(drafts, greedy, input_ids, attention_mask, loss_mask, self.num_steps)
