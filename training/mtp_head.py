"""The MiMo/FastMTP head in PyTorch, written once and used by training, evaluation and export.

The math mirrors vLLM's ``MiMoMultiTokenPredictorLayer`` (vllm/model_executor/models/mimo_mtp.py)::

    e   = embed(token);  e = where(position == 0, 0, e)          # vLLM zeroes the embedding at position 0
    x   = input_proj(cat([hidden_layernorm(h_prev), token_layernorm(e)], -1))   # hidden FIRST
    x   = Qwen2 decoder layer(x)    # pre-norm attention + MLP with residuals, causal, RoPE on position ids
    out = final_layernorm(x)        # -> shared lm_head for logits, and next step's h_prev

The decoder layer is transformers' own ``Qwen2DecoderLayer`` (this class subclasses it), so the module's
state-dict keys map 1:1 onto the checkpoint keys ``model.mtp_layers.0.<name>``.

Positions (verified in vllm/v1/spec_decode/llm_base_proposer.py, ``propose`` / ``set_inputs_first_pass`` and
``_update_positions_dependent_metadata`` -> ``eagle_step_slot_mapping_metadata_kernel``): draft step 1 runs over
the context at the TARGET positions with the input ids shifted left by one (position i carries token t_{i+1},
the last slot carries the sampled token); every later step is one query per request at ``position + 1``
(clamped to 0 past max_model_len). So a chain anchored at context position i runs step k at position
``i + k - 1`` and attends the head's KV cache: step-1 entries for positions <= i, then the chain's own steps
2..k at positions i+1..i+k-1. Training uses the same positions (step k of the whole sequence shifted by k-1,
which RoPE makes equivalent to position i for the attention scores; it only matters for the position-0
embedding mask, which therefore hits step 1 at i=0 only).
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2DecoderLayer,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
    repeat_kv,
)

from training.linear_ce import linear_cross_entropy
from vllm_fastmtp.conventions import HIDDEN_STATE_CHOICES, MTP_PREFIX, POST_NORM, PRE_NORM

CHECKPOINT_PREFIX = MTP_PREFIX


class MissingMTPHeadError(RuntimeError):
    """The checkpoint has no ``model.mtp_layers.0.*`` tensors."""


def head_config(config):
    """A copy of the main model's config for the head (one layer, explicit attention implementation)."""
    cfg = copy.deepcopy(config)
    cfg.num_hidden_layers = 1
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = ["full_attention"]
    cfg.use_sliding_window = False
    cfg._attn_implementation = "sdpa"
    return cfg


class MTPHead(Qwen2DecoderLayer):
    """One MiMo MTP layer. State-dict keys == checkpoint keys minus ``model.mtp_layers.0.``."""

    def __init__(self, config):
        cfg = head_config(config)
        super().__init__(cfg, layer_idx=0)
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.token_layernorm = Qwen2RMSNorm(h, eps=eps)
        self.hidden_layernorm = Qwen2RMSNorm(h, eps=eps)
        self.input_proj = nn.Linear(2 * h, h, bias=False)
        self.final_layernorm = Qwen2RMSNorm(h, eps=eps)
        self.rotary_emb = Qwen2RotaryEmbedding(cfg)  # non-persistent buffers only: not in the state dict
        self.head_cfg = cfg

    # ---------------------------------------------------------------- the step, in pieces
    def step_input(self, h_prev: torch.Tensor, token_embeds: torch.Tensor, position_ids: torch.Tensor):
        """input_proj(cat([hidden_layernorm(h_prev), token_layernorm(e)])) with e zeroed at position 0."""
        e = torch.where((position_ids == 0).unsqueeze(-1), torch.zeros_like(token_embeds), token_embeds)
        x = torch.cat([self.hidden_layernorm(h_prev), self.token_layernorm(e)], dim=-1)
        return self.input_proj(x)

    def forward(  # noqa: D401 - one MTP step over a (batch of) sequence(s), causal within it
        self,
        h_prev: torch.Tensor,
        token_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
    ) -> torch.Tensor:
        """One step: [B, L, H] hidden + [B, L, H] token embeddings at position_ids [B, L] -> [B, L, H] (post final norm).

        ``attention_mask`` is a 4D additive mask or None (None: causal when L > 1, full over the cache when L == 1).
        """
        x = self.step_input(h_prev, token_embeds, position_ids)
        pos_emb = self.rotary_emb(x, position_ids)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is None and x.shape[1] > 1 and past > 0:
            attention_mask = causal_mask(x.shape[1], past, x.dtype, x.device)
        # no mask and no past (the training passes): SDPA runs with is_causal, no [L, L] additive mask is built
        x = super().forward(
            x,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
            position_embeddings=pos_emb,
        )
        return self.final_layernorm(x)

    # ---------------------------------------------------------------- checkpoint mapping
    def load_checkpoint_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        own = {k[len(CHECKPOINT_PREFIX):]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_PREFIX)}
        if not own:
            raise MissingMTPHeadError(f"no '{CHECKPOINT_PREFIX}*' tensors found")
        expected = set(self.state_dict())
        missing, unexpected = expected - set(own), set(own) - expected
        if missing or unexpected:
            raise MissingMTPHeadError(
                f"MTP head tensors do not match the model config: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        with torch.no_grad():
            sd = self.state_dict()
            for k, v in own.items():
                if tuple(v.shape) != tuple(sd[k].shape):
                    raise MissingMTPHeadError(f"{CHECKPOINT_PREFIX}{k}: shape {tuple(v.shape)} != {tuple(sd[k].shape)}")
                sd[k].copy_(v.to(sd[k].dtype))

    def checkpoint_tensors(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        return {
            CHECKPOINT_PREFIX + k: (v.detach().to(dtype) if dtype is not None else v.detach()).cpu().contiguous()
            for k, v in self.state_dict().items()
        }


def causal_mask(q_len: int, past: int, dtype: torch.dtype, device) -> torch.Tensor:
    """[1, 1, q_len, past + q_len] additive mask: query j sees keys <= past + j."""
    k_len = past + q_len
    q_idx = torch.arange(q_len, device=device).unsqueeze(1) + past
    k_idx = torch.arange(k_len, device=device).unsqueeze(0)
    m = torch.zeros(q_len, k_len, dtype=dtype, device=device)
    m.masked_fill_(k_idx > q_idx, torch.finfo(dtype).min)
    return m[None, None]


# ==================================================================== main model side
def main_hidden_states(main_model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, hidden_state: str):
    """Run the main model's body; return (hidden for the head per convention, post-norm hidden for logits)."""
    if hidden_state not in HIDDEN_STATE_CHOICES:
        raise ValueError(f"hidden_state must be one of {HIDDEN_STATE_CHOICES}, got {hidden_state!r}")
    captured = {}

    def hook(_mod, args, _out):
        captured["pre"] = args[0]

    handle = main_model.model.norm.register_forward_hook(hook)
    try:
        out = main_model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        handle.remove()
    post = out.last_hidden_state
    return (post if hidden_state == POST_NORM else captured["pre"]), post


def main_logits(main_model, post_hidden: torch.Tensor) -> torch.Tensor:
    return main_model.lm_head(post_hidden)


# ==================================================================== training (teacher forcing)
def step_weights(num_steps: int, beta: float) -> list[float]:
    """alpha_k proportional to beta^(k-1), normalised to sum 1 (K=3, beta=0.6 -> 0.51/0.306/0.184)."""
    if num_steps < 1:
        raise ValueError(f"num_steps (K) must be >= 1, got {num_steps}")
    w = [beta**k for k in range(num_steps)]
    s = sum(w)
    return [x / s for x in w]


def teacher_forced_steps(main_model, head: MTPHead, input_ids: torch.Tensor, hidden: torch.Tensor, num_steps: int,
                         form: str = "paper", targets: torch.Tensor | None = None) -> Iterable[tuple[int, torch.Tensor]]:
    """:func:`chain_outputs` for token ids (embedded with the main model's frozen embedding)."""
    with torch.no_grad():
        embeds = main_model.get_input_embeddings()(input_ids)
    yield from chain_outputs(head, hidden, embeds, num_steps, form, targets)


def mtp_loss(
    main_model,
    head: MTPHead,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    num_steps: int,
    beta: float,
    hidden_state: str,
    distill_weight: float = 0.0,
    distill_loss: str = "kl",
    distill_top_n: int = 20,
    form: str = "paper",
):
    """Sum_k alpha_k * L_k, L_k = (1-w) CE_k + w D_k over target tokens with loss_mask (assistant tokens).

    D_k is the self-distillation loss to the main model's next-token distribution at the target position,
    restricted to its top-N tokens (renormalised): 'kl' = KL(p_main || p_head), 'soft_ce' = -sum p_main log p_head
    (same gradient). Returns (loss, per-step CE list as floats-tensors).
    """
    alphas = step_weights(num_steps, beta)
    with torch.no_grad():
        hidden, post = main_hidden_states(main_model, input_ids, attention_mask, hidden_state)
    if attention_mask is not None:
        loss_mask = loss_mask & attention_mask.bool()
    lm_head = main_model.lm_head
    total = hidden.new_zeros((), dtype=torch.float32)
    per_step = []
    targets = loss_mask.bool() if form == SERVING_FORM else None  # serving form: only chains reaching a target
    for k, out in teacher_forced_steps(main_model, head, input_ids, hidden, num_steps, form, targets):
        length = input_ids.shape[1] - k - 1  # anchors with a target
        if length <= 0:
            break
        sel = loss_mask[:, k + 1 : k + 1 + length]
        targets = input_ids[:, k + 1 : k + 1 + length][sel]
        if targets.numel() == 0:
            per_step.append(total.detach() * 0)
            total = total + out.sum() * 0.0  # keep every parameter in the graph (DDP)
            continue
        teacher = post[:, k : k + length][sel] if distill_weight > 0 else None
        sel_out = out[:, :length][sel]
        ce_sum, d_sum = sel_out.new_zeros((), dtype=torch.float32), sel_out.new_zeros((), dtype=torch.float32)
        for c in range(0, targets.numel(), LOSS_CHUNK):  # bounded logits memory for large vocabularies
            args = (sel_out[c : c + LOSS_CHUNK], targets[c : c + LOSS_CHUNK],
                    teacher[c : c + LOSS_CHUNK] if teacher is not None else None)
            if torch.is_grad_enabled() and targets.numel() > LOSS_CHUNK:
                ce_c, d_c = torch.utils.checkpoint.checkpoint(
                    _chunk_losses, lm_head, *args, distill_top_n, distill_loss, use_reentrant=False
                )
            else:
                ce_c, d_c = _chunk_losses(lm_head, *args, distill_top_n, distill_loss)
            ce_sum, d_sum = ce_sum + ce_c, d_sum + d_c
        ce = ce_sum / targets.numel()
        step_loss = ce
        if distill_weight > 0:
            step_loss = (1.0 - distill_weight) * ce + distill_weight * (d_sum / targets.numel())
        total = total + alphas[k - 1] * step_loss
        per_step.append(ce.detach())
    return total, per_step


LABEL_SOURCES = ("data", "greedy")  # CE target: the data's next token, or the main model's greedy next token


def _log_probs(x: torch.Tensor, lm_weight: torch.Tensor) -> torch.Tensor:
    return F.log_softmax((x.to(lm_weight.dtype) @ lm_weight.T).float(), dim=-1)


def states_mtp_loss(
    head: MTPHead,
    hidden: torch.Tensor,
    embeds: torch.Tensor,
    lm_weight: torch.Tensor | Sequence[torch.Tensor],
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    num_steps: int,
    beta: float,
    form: str = "paper",
    label_source: str = "data",
    greedy: torch.Tensor | None = None,
    vocab_index: torch.Tensor | None | Sequence[torch.Tensor | None] = None,
    row_groups: torch.Tensor | None = None,
    distill_weight: float = 0.0,
    distill_loss: str = "kl",
    top_ids: torch.Tensor | None = None,
    top_logp: torch.Tensor | None = None,
):
    """The training loss from precomputed main-model states (training.cache_states): sum_k alpha_k * L_k.

    ``lm_weight`` [V', H] holds the rows of the shared lm_head the head is trained over: the full matrix, or the
    rows of a draft vocabulary, with ``vocab_index`` [V] mapping a full id to its row (-1 outside). CE targets
    outside the draft vocabulary are skipped and counted. Several vocabularies (lists of weights and indexes, one
    per language map) with ``row_groups`` [B] naming each conversation's: each conversation's loss is over its own
    map, as a request is drafted over the map of its language; the means are over all positions of the batch.
    ``label_source`` "greedy" trains towards ``greedy[i + k]`` (the main model's greedy token, what verification
    accepts) instead of the data token. L_k = (1 - w) CE_k + w D_k, D_k the KL (or soft CE) to the main model's
    cached top-N next-token distribution restricted to the draft vocabulary and renormalised. Returns (loss,
    stats) where stats holds per-step CE (floats) and ``skipped`` (targets outside the vocabulary), ``targets``
    (targets used).
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    if label_source == "greedy" and greedy is None:
        raise ValueError("label_source='greedy' needs the main model's greedy tokens")
    if distill_weight > 0 and (top_ids is None or top_logp is None):
        raise ValueError("distill_weight > 0 needs the main model's top-N ids and log-probs")
    weights = list(lm_weight) if isinstance(lm_weight, (list, tuple)) else [lm_weight]
    indexes = list(vocab_index) if isinstance(vocab_index, (list, tuple)) else [vocab_index] * len(weights)
    if len(indexes) != len(weights) or (len(weights) > 1 and row_groups is None):
        raise ValueError(f"{len(weights)} vocabularies need as many indexes ({len(indexes)}) and row_groups")
    alphas = step_weights(num_steps, beta)
    n = input_ids.shape[1]
    total = hidden.new_zeros((), dtype=torch.float32)
    stats = {"ce": [], "skipped": 0, "targets": 0}
    # serving form: only the chains that reach a target (the rest feed nothing in that form)
    targets = loss_mask.bool() if form == SERVING_FORM else None
    for k, out in chain_outputs(head, hidden, embeds, num_steps, form, targets):
        length = n - k - 1  # anchors with a target t_{i+k+1}
        if length <= 0:
            break
        in_loss = loss_mask[:, k + 1 : k + 1 + length].bool()
        # the data's t_{i+k+1}, or the main model's greedy prediction for it (made at position i + k)
        labels, start = (input_ids, k + 1) if label_source == "data" else (greedy, k)
        parts = []  # (mean CE, targets used, mean distillation term or None, positions) per vocabulary
        for g, (weight, index) in enumerate(zip(weights, indexes)):
            sel = in_loss if len(weights) == 1 else in_loss & (row_groups == g)[:, None]
            part = _vocab_step_loss(out[:, :length], sel, labels[:, start : start + length], weight, index,
                                    distill_weight, distill_loss, top_ids, top_logp, k, length)
            if part is not None:
                stats["skipped"] += part[-1]
                parts.append(part[:-1])
        if not parts:
            stats["ce"].append(0.0)
            total = total + out.sum() * 0.0  # keep every parameter in the graph (DDP)
            continue
        ce, used = _pooled([(p[0], p[1]) for p in parts])
        step_loss = ce
        if distill_weight > 0:
            step_loss = (1.0 - distill_weight) * ce + distill_weight * _pooled([(p[2], p[3]) for p in parts])[0]
        stats["targets"] += used
        stats["ce"].append(float(ce.detach()))
        total = total + alphas[k - 1] * step_loss
    return total, stats


def _pooled(means: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """The mean over every item of several groups' means (mean, items); one group's mean unchanged."""
    n = sum(c for _, c in means)
    if len(means) == 1:
        return means[0][0], n
    return sum(m * c for m, c in means) / max(n, 1), n


def _vocab_step_loss(out, sel, labels, lm_weight, vocab_index, distill_weight, distill_loss, top_ids, top_logp,
                     k: int, length: int):
    """One step's loss over one vocabulary at the ``sel`` positions: (mean CE over the targets inside it, their
    number, mean distillation term or None, positions, targets outside) or None when nothing is trained."""
    targets = labels[sel].long()
    if targets.numel() == 0:
        return None
    if vocab_index is not None:
        rows = vocab_index[targets]
        inside = rows >= 0
    else:
        rows, inside = targets, torch.ones_like(targets, dtype=torch.bool)
    n_used, skipped = int(inside.sum()), int((~inside).sum())
    sel_out = out[sel]
    if distill_weight <= 0:  # plain CE; over frozen rows (always, in finetune) the fused form
        if n_used == 0:
            return None
        sel_out, rows = sel_out[inside], rows[inside]
        ce = (linear_cross_entropy(sel_out, lm_weight, rows) if not lm_weight.requires_grad
              else F.nll_loss(_log_probs(sel_out, lm_weight), rows))
        return ce, n_used, None, 0, skipped
    logp = _log_probs(sel_out, lm_weight)
    ce = -(logp[inside].gather(-1, rows[inside, None])).sum() / max(n_used, 1)
    t_ids = top_ids[:, k : k + length][sel].long()
    t_p = top_logp[:, k : k + length][sel].float().exp()
    t_rows = vocab_index[t_ids] if vocab_index is not None else t_ids
    keep = t_rows >= 0
    t_p = t_p * keep
    t_p = t_p / t_p.sum(-1, keepdim=True).clamp_min(1e-30)
    soft_ce = -(t_p * logp.gather(-1, t_rows.clamp_min(0))).sum(-1)
    d = soft_ce + (t_p * torch.log(t_p.clamp_min(1e-30))).sum(-1) if distill_loss == "kl" else soft_ce
    return ce, n_used, d.mean(), int(sel.sum()), skipped


LOSS_CHUNK = 2048  # target tokens per logits chunk


def _chunk_losses(lm_head, out, targets, teacher, top_n: int, distill_loss: str):
    """(sum of CE, sum of distillation loss) over one chunk of selected positions."""
    logits = lm_head(out.to(lm_head.weight.dtype)).float()
    logp = F.log_softmax(logits, dim=-1)
    ce = F.nll_loss(logp, targets, reduction="sum")
    if teacher is None:
        return ce, ce.new_zeros(())
    with torch.no_grad():
        t_logits = lm_head(teacher.to(lm_head.weight.dtype)).float()
        top_v, top_i = t_logits.topk(min(top_n, t_logits.shape[-1]), dim=-1)
        p = F.softmax(top_v, dim=-1)
    soft_ce = -(p * logp.gather(-1, top_i)).sum()
    if distill_loss == "kl":
        return ce, soft_ce + (p * torch.log(p.clamp_min(1e-30))).sum()
    if distill_loss == "soft_ce":
        return ce, soft_ce
    raise ValueError(f"distill_loss must be 'kl' or 'soft_ce', got {distill_loss!r}")


# ==================================================================== inference, exactly as vLLM serves
@torch.no_grad()
def draft_chain(main_model, head: MTPHead, input_ids: list[int], num_steps: int, hidden_state: str) -> list[int]:
    """Greedy [t_n, d_1, ..., d_K] for context ``input_ids`` (t_0..t_{n-1}), the way vLLM's proposer runs the head.

    The main model runs on the context and t_n is its greedy next token. Step 1 runs over ALL context
    positions 0..n-1 with inputs (H_i, t_{i+1}) (t_n at the last one), filling the head's KV cache; d_1 is the
    greedy token at the last position. Step k >= 2 is one query at position n + k - 2 with token d_{k-1} and
    h_prev = the step-(k-1) output, attending the cached step-1 entries plus the chain's own earlier steps.
    """
    return _chain(main_model, head, input_ids, num_steps, hidden_state)


def _chain(main_model, head, input_ids, num_steps, hidden_state, forced: list[int] | None = None) -> list[int]:
    """draft_chain; with ``forced`` = [t_n, x_1, ...], the sampled token and the step inputs are taken from it
    instead of the greedy tokens (teacher forcing; used to check batched_draft_chains)."""
    from transformers import DynamicCache

    if num_steps < 0:
        raise ValueError("num_steps must be >= 0")
    dev = next(head.parameters()).device
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=dev)
    n = ids.shape[1]
    hidden, post = main_hidden_states(main_model, ids, None, hidden_state)
    t_n = int(main_model.lm_head(post[:, -1]).argmax(-1))
    result = [t_n]
    if forced is not None:
        t_n = forced[0]
    if num_steps == 0:
        return result
    embed = main_model.get_input_embeddings()
    dtype = next(head.parameters()).dtype
    cache = DynamicCache()
    step1_tokens = torch.cat([ids[:, 1:], torch.tensor([[t_n]], device=dev)], dim=1)
    pos = torch.arange(n, device=dev).unsqueeze(0)
    out = head(hidden.to(dtype), embed(step1_tokens).to(dtype), pos, past_key_values=cache)
    h_last = out[:, -1:]
    d = int(main_model.lm_head(h_last.to(main_model.lm_head.weight.dtype)).argmax(-1))
    result.append(d)
    for k in range(2, num_steps + 1):
        pos = torch.tensor([[n + k - 2]], device=dev)
        tok = torch.tensor([[d if forced is None else forced[k - 1]]], device=dev)
        h_last = head(h_last, embed(tok).to(dtype), pos, past_key_values=cache)
        d = int(main_model.lm_head(h_last.to(main_model.lm_head.weight.dtype)).argmax(-1))
        result.append(d)
    return result


def _attn_qkv(head: MTPHead, x: torch.Tensor, position_ids: torch.Tensor):
    """q, k, v ([B, heads, L, d]) of the head's attention for layer input x (pre input_layernorm), with RoPE."""
    h = head.input_layernorm(x)
    return (_attn_q(head, h, position_ids), *_attn_kv(head, h, position_ids))


@torch.no_grad()
def batched_draft_chains(
    main_model,
    head: MTPHead,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    num_steps: int,
    hidden_state: str,
):
    """The chain of :func:`draft_chain` anchored at EVERY position of a batch, teacher-forced on the data.

    Returns (drafts [B, n, K] with -1 where undefined, main greedy next tokens [B, n]). drafts[b, i, k-1] is the
    step-k draft of the chain whose context is t_0..t_i and whose sampled token is t_{i+1}, with step-k input
    token t_{i+k} (the data token; identical to the served chain whenever the earlier drafts were accepted).
    Step k >= 2 attends step-1 K/V at positions <= i plus its own chain's steps 2..k, exactly like vLLM's cache.
    Equal to draft_chain(prefix)[1:] when the data are the main model's own greedy continuation.
    """
    # exact float math as written (a surrounding autocast, e.g. the Trainer's bf16 eval, would change it)
    with torch.autocast(device_type=input_ids.device.type, enabled=False):
        return _batched_draft_chains(main_model, head, input_ids, attention_mask, num_steps, hidden_state)


def _batched_draft_chains(main_model, head, input_ids, attention_mask, num_steps, hidden_state):
    hidden, post = main_hidden_states(main_model, input_ids, attention_mask, hidden_state)
    n = input_ids.shape[1]
    greedy = torch.cat([main_model.lm_head(post[:, c : c + 512]).argmax(-1) for c in range(0, n, 512)], dim=1)
    embeds = main_model.get_input_embeddings()(input_ids)
    drafts = drafts_from_states(head, hidden, embeds, main_model.lm_head.weight, num_steps)
    return drafts, greedy


def drafts_from_states(head, hidden, embeds, lm_rows, num_steps: int, vocab_ids: torch.Tensor | None = None):
    """[B, n, K] greedy drafts (-1 where undefined) of the serving-form chains anchored at every position, from
    the main model's hidden states and the data's token embeddings. ``lm_rows`` is the lm_head, or its rows of a
    draft vocabulary whose full ids are ``vocab_ids`` (drafts are mapped back to them, as a pruned head serves)."""
    B, n = hidden.shape[:2]
    drafts = torch.full((B, n, num_steps), -1, dtype=torch.long, device=hidden.device)
    for k, out in chain_outputs(head, hidden, embeds, num_steps, form=SERVING_FORM):
        ids = (out.to(lm_rows.dtype) @ lm_rows.T).argmax(-1)
        drafts[:, : out.shape[1], k - 1] = ids if vocab_ids is None else vocab_ids[ids]
    return drafts


PAPER_FORM = "paper"  # steps k > 1 attend step-(k-1) outputs at every earlier position (FastMTP's training)
SERVING_FORM = "serving"  # steps k > 1 attend step-1 K/V of earlier positions + the chain's own steps (vLLM)
TRAIN_FORMS = (PAPER_FORM, SERVING_FORM)


def chain_outputs(head, hidden: torch.Tensor, embeds: torch.Tensor, num_steps: int, form: str = PAPER_FORM,
                  targets: torch.Tensor | None = None):
    """Yield (k, out_k) for k = 1..K: out_k [B, n - k, H] is the step-k output of the chain anchored at position i,
    fed h_prev = hidden[:, i] (k = 1) or out_{k-1}[:, i], and the token embedding embeds[:, i + k]; RoPE position
    i + k - 1 as served. Teacher-forced on the data's tokens; differentiable (training uses it with grad).

    ``form`` decides what steps k > 1 attend to. ``paper``: a plain causal pass over the whole step-(k-1) output
    sequence (FastMTP's training code). ``serving``: what vLLM's KV cache holds when drafting, i.e. the step-1
    keys/values of positions <= i and the chain's own steps 2..k (EAGLE-3's "training-time test" idea).
    Step 1 is the same in both.

    ``targets`` ([B, n] bool, the positions whose token is trained; serving form only): in the serving form each
    chain reads nothing of another chain but the step-1 keys/values, so only the chains that reach a target are
    computed beyond those. Their position-wise parts (input_proj, q/k/v, o_proj, MLP, norms) run over exactly
    those chains, packed; the attention alone over each row's span of anchors from the first to the last that
    reaches one, as wide as the batch's widest (on the throughput benchmark's batches 34 % of the positions are
    prompt or padding, the spans hold 20 % more slots than the live chains, and packing cut a training step by
    ~10 %). out_k is then zero at anchors whose chain reaches no target at step k or later; the loss over
    ``targets`` and its gradient are unchanged.
    """
    if form not in TRAIN_FORMS:
        raise ValueError(f"form must be one of {TRAIN_FORMS}, got {form!r}")
    B, n = hidden.shape[:2]
    dev = hidden.device
    dtype = head.input_proj.weight.dtype
    h_prev = hidden.to(dtype)
    if form == PAPER_FORM:
        if targets is not None:
            raise ValueError("targets (computing only the chains that reach one) needs the serving form: in the "
                             "paper form every position's step-k output is attended by the next step")
        for k in range(1, num_steps + 1):
            length = n - k
            if length <= 0:
                return
            pos = (torch.arange(length, device=dev) + (k - 1)).unsqueeze(0).expand(B, -1)
            out = head(h_prev[:, :length], embeds[:, k : k + length].to(dtype), pos)
            yield k, out
            h_prev = out
        return
    if n < 2:
        return
    attn = head.self_attn
    scale = attn.scaling

    def finish(x, attn_out):
        a = attn_out.transpose(1, 2).reshape(*x.shape[:-1], -1)
        y = x + attn.o_proj(a)
        y = y + head.mlp(head.post_attention_layernorm(y))
        return head.final_layernorm(y)

    # step 1 over every position: its keys/values are what every chain attends
    pos1 = torch.arange(n - 1, device=dev).unsqueeze(0).expand(B, -1)
    x1 = head.step_input(h_prev[:, : n - 1], embeds[:, 1:n].to(dtype), pos1)
    h1 = head.input_layernorm(x1)
    k1, v1 = _attn_kv(head, h1, pos1)
    if targets is None:  # every chain
        anchors, live = pos1, torch.ones(B, n - 1, dtype=torch.bool, device=dev)
        span = torch.full((B,), n - 1, device=dev)
    else:
        anchors, span, live = _target_span(targets, num_steps)
        if anchors is None:  # nothing trained in this batch
            for k in range(1, min(num_steps, n - 1) + 1):
                yield k, x1.new_zeros(B, n - k, x1.shape[-1]) + 0.0 * x1.sum()
            return
    # only the live slots (the chains that reach a target) through the position-wise parts (input_proj, q/k/v,
    # o_proj, MLP, norms): flat [1, N, H] rows; the attention alone runs anchor-indexed [B, heads, W, d], with
    # the dead slots (past a row's span, between its turns) zero and never read back
    bi, ti = ((torch.arange(anchors.shape[1], device=dev)[None, :] < span[:, None]) & live.gather(1, anchors)).nonzero(
        as_tuple=True)
    ai = anchors[bi, ti]  # [N] each live slot's anchor position

    def attend(q, priv_k, priv_v):  # flat q [1, heads, N, d] -> flat attention output, same shape
        return _tree_attend(to_slots(q), k1, v1, priv_k, priv_v, scale, anchors)[bi, :, ti].transpose(0, 1)[None]

    def to_slots(t):  # flat [1, heads, N, d] -> [B, heads, W, d], zero at dead slots
        slots = t.new_zeros(B, t.shape[1], anchors.shape[1], t.shape[-1])
        slots[bi, :, ti] = t[0].transpose(0, 1)
        return slots

    x = x1[bi, ai][None]
    out = finish(x, attend(_attn_q(head, h1[bi, ai][None], ai[None]), [], []))
    priv_k, priv_v = [], []  # chain-private K/V of steps 2..k, each [B, heads, W, d] (slot-indexed)
    for k in range(1, num_steps + 1):
        length = n - k
        if length <= 0:
            return
        if k > 1:
            pos = (ai + (k - 1))[None]
            x = head.step_input(out, embeds[bi, (ai + k).clamp(max=n - 1)][None].to(dtype), pos)
            q, kk, vv = _attn_qkv(head, x, pos)
            priv_k, priv_v = priv_k + [to_slots(kk)], priv_v + [to_slots(vv)]
            out = finish(x, attend(q, priv_k, priv_v))
        keep = ai < length  # back to anchor positions; chains past the sequence end dropped
        dense = out.new_zeros(B, length, out.shape[-1])
        dense[bi[keep], ai[keep]] = out[0, keep]
        yield k, dense


def _target_span(targets: torch.Tensor, num_steps: int):
    """(anchors [B, W], span [B], live [B, n - 1]): per row the anchors from the first to the last whose chain
    reaches a target (anchor i's step-k target is position i + k + 1) in its first span[b] slots, W the longest
    span (shorter rows repeat their last anchor), and which anchors' chains reach one; (None, None, None) when no
    row has one."""
    B, n = targets.shape
    live = torch.zeros(B, n - 1, dtype=torch.bool, device=targets.device)
    for k in range(1, num_steps + 1):
        if n - k - 1 > 0:
            live[:, : n - k - 1] |= targets[:, k + 1 :].bool()
    if not live.any():
        return None, None, None
    idx = torch.arange(n - 1, device=targets.device)
    first = torch.where(live, idx, n - 1).amin(-1)
    end = torch.where(live, idx + 1, 0).amax(-1)
    first = torch.minimum(first, end)  # rows without any: an empty span at 0
    span = end - first
    anchors = (first[:, None] + torch.arange(int(span.max()), device=targets.device)).clamp(max=n - 2)
    return anchors, span, live


def _attn_q(head: MTPHead, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Queries [B, heads, L, d] with RoPE for normed layer input h at position_ids."""
    attn = head.self_attn
    q = attn.q_proj(h).view(*h.shape[:-1], -1, attn.head_dim).transpose(1, 2)
    cos, sin = head.rotary_emb(h, position_ids)
    return apply_rotary_pos_emb(q, q, cos, sin)[0]


def _attn_kv(head: MTPHead, h: torch.Tensor, position_ids: torch.Tensor):
    """Keys (with RoPE) and values [B, heads, L, d], repeated over the query groups, for normed layer input h."""
    attn = head.self_attn
    shape = (*h.shape[:-1], -1, attn.head_dim)
    k = attn.k_proj(h).view(shape).transpose(1, 2)
    v = attn.v_proj(h).view(shape).transpose(1, 2)
    cos, sin = head.rotary_emb(h, position_ids)
    k = apply_rotary_pos_emb(k, k, cos, sin)[0]
    return repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)


def _tree_attend(q, k1, v1, priv_k, priv_v, scale: float, anchors: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Attention of anchor-indexed queries q [B, h, W, d] (query row t of batch row b belongs to the chain anchored
    at anchors[b, t]): it sees the shared step-1 keys j <= its anchor and its own chain-private keys (row t of each
    priv_k). Products in the inputs' dtype (bf16 under autocast), scores and softmax in fp32; query blocks bound
    the score memory; 128-row blocks also skip more of the masked upper triangle than 256 (~2.5 % of a training
    step here). (SDPA over the shared keys plus the block's private ones, masked, measured ~10 % slower a
    training step here: it scores every row against every private key of its block.)"""
    outs = []
    W = q.shape[2]
    for c in range(0, W, block):
        e = min(c + block, W)
        a = anchors[:, c:e]
        keys = int(a.max()) + 1  # keys beyond the block's last anchor are masked for all of it
        qc, ks, vs = q[:, :, c:e], k1[:, :, :keys], v1[:, :, :keys]
        sc = torch.matmul(qc, ks.transpose(-1, -2)).float() * scale
        mask = torch.arange(keys, device=q.device)[None, None, :] > a[:, :, None]  # [B, rows, keys]
        sc = sc.masked_fill(mask[:, None], float("-inf"))  # every row keeps at least its own key
        if priv_k:
            sp = torch.stack([(qc.float() * pk[:, :, c:e].float()).sum(-1) * scale for pk in priv_k], dim=-1)
            sc = torch.cat([sc, sp], dim=-1)
        p = F.softmax(sc, dim=-1)
        o = torch.matmul(p[..., :keys].to(vs.dtype), vs)
        for j, pv in enumerate(priv_v):
            o = o + p[..., keys + j : keys + j + 1].to(pv.dtype) * pv[:, :, c:e]
        outs.append(o)
    return torch.cat(outs, dim=2)


def acceptance_counts(
    drafts: torch.Tensor, greedy: torch.Tensor, anchor_mask: torch.Tensor, num_steps: int
) -> torch.Tensor:
    """[K + 1] tensor: number of anchors, then how many had drafts 1..k ALL equal to the main greedy tokens.

    Anchor i (context t_0..t_i) is counted where anchor_mask[b, i] and all K steps are defined (i <= n-1-K).
    Draft k of anchor i is compared with greedy[b, i + k] (the main model's greedy next token after t_{i+k}).
    """
    B, n, K = drafts.shape
    counts = torch.zeros(num_steps + 1, dtype=torch.long, device=drafts.device)
    valid_len = n - num_steps
    if valid_len <= 0:
        return counts
    m = anchor_mask[:, :valid_len].bool()
    counts[0] = m.sum()
    ok = torch.ones_like(m)
    for k in range(1, num_steps + 1):
        ok = ok & (drafts[:, :valid_len, k - 1] == greedy[:, k : k + valid_len])
        counts[k] = (ok & m).sum()
    return counts


def acceptance_rows(drafts, greedy, input_ids, attention_mask, loss_mask, num_steps: int) -> torch.Tensor:
    """[B, K + 2]: anchors counted, anchors whose first k drafts all matched the main model's greedy tokens
    (k = 1..K), anchors whose data token equals the main model's greedy token.

    An anchor is a position i whose next token t_{i+1} is an assistant token (the token the main model "just
    sampled") and whose chain reads and is compared at real (not padding) tokens only.
    """
    valid = loss_mask.bool() if attention_mask is None else loss_mask.bool() & attention_mask.bool()
    anchor = torch.zeros_like(valid)
    anchor[:, :-1] = valid[:, 1:]
    if attention_mask is not None:
        am = attention_mask.bool()
        for k in range(1, num_steps + 1):
            anchor[:, : anchor.shape[1] - k] &= am[:, k:]
            anchor[:, anchor.shape[1] - k :] = False
    rows = [acceptance_counts(drafts[b : b + 1], greedy[b : b + 1], anchor[b : b + 1], num_steps)
            for b in range(len(input_ids))]
    match = torch.zeros_like(anchor)
    match[:, :-1] = greedy[:, :-1] == input_ids[:, 1:]
    return torch.cat([torch.stack(rows), (match & anchor).sum(-1)[:, None]], dim=-1)
