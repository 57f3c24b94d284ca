"""The MTP head module: checkpoint mapping, math vs an independent reference of vLLM's MiMo layer, chains."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vllm_fastmtp.conventions import POST_NORM, PRE_NORM
from training.mtp_head import (
    CHECKPOINT_PREFIX,
    MissingMTPHeadError,
    MTPHead,
    _chain,
    acceptance_counts,
    batched_draft_chains,
    draft_chain,
    main_hidden_states,
    mtp_loss,
    step_weights,
)

torch.set_num_threads(1)


def _load(path):
    from training.finetune import load_main_model

    main = load_main_model(path, torch.float32)
    head = MTPHead(main.config).eval()
    head.load_checkpoint_tensors(load_file(str(path / "model.safetensors")))
    return main, head


@pytest.fixture(scope="module")
def random_pair(tiny_random_mimo):
    return _load(tiny_random_mimo)


def test_state_dict_maps_one_to_one_onto_checkpoint_keys(tiny_random_mimo, random_pair):
    _, head = random_pair
    ckpt = {k: v for k, v in load_file(str(tiny_random_mimo / "model.safetensors")).items() if k.startswith(CHECKPOINT_PREFIX)}
    out = head.checkpoint_tensors()
    assert set(out) == set(ckpt)
    for k in ckpt:
        assert torch.equal(out[k], ckpt[k]), k
    names = {k[len(CHECKPOINT_PREFIX):] for k in ckpt}
    for expected in ("token_layernorm.weight", "hidden_layernorm.weight", "input_proj.weight", "final_layernorm.weight",
                     "self_attn.q_proj.bias", "mlp.gate_proj.weight", "input_layernorm.weight",
                     "post_attention_layernorm.weight"):
        assert expected in names


def test_missing_head_tensors_is_a_named_error(random_pair):
    main, _ = random_pair
    with pytest.raises(MissingMTPHeadError):
        MTPHead(main.config).load_checkpoint_tensors({"model.norm.weight": torch.ones(64)})


def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x, pos, theta, dim):
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    ang = pos[:, None].float() * inv[None]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def reference_step(t, cfg, h_prev, tokens, positions, embed):
    """vLLM's MiMoMultiTokenPredictorLayer.forward written out with plain tensor ops (one sequence, causal)."""
    p = CHECKPOINT_PREFIX
    eps = cfg.rms_norm_eps
    e = embed[tokens]
    e = torch.where((positions == 0)[:, None], torch.zeros_like(e), e)
    x = torch.cat([_rms(h_prev, t[p + "hidden_layernorm.weight"], eps), _rms(e, t[p + "token_layernorm.weight"], eps)], -1)
    x = x @ t[p + "input_proj.weight"].T
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = cfg.hidden_size // nh
    a = _rms(x, t[p + "input_layernorm.weight"], eps)
    q = (a @ t[p + "self_attn.q_proj.weight"].T + t[p + "self_attn.q_proj.bias"]).view(-1, nh, hd).transpose(0, 1)
    k = (a @ t[p + "self_attn.k_proj.weight"].T + t[p + "self_attn.k_proj.bias"]).view(-1, nkv, hd).transpose(0, 1)
    v = (a @ t[p + "self_attn.v_proj.weight"].T + t[p + "self_attn.v_proj.bias"]).view(-1, nkv, hd).transpose(0, 1)
    q, k = _rope(q, positions, 10000.0, hd), _rope(k, positions, 10000.0, hd)  # tiny config: rope_theta 10000
    k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    n = len(tokens)
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    o = (F.softmax(s, -1) @ v).transpose(0, 1).reshape(n, -1) @ t[p + "self_attn.o_proj.weight"].T
    x = x + o
    m = _rms(x, t[p + "post_attention_layernorm.weight"], eps)
    m = (F.silu(m @ t[p + "mlp.gate_proj.weight"].T) * (m @ t[p + "mlp.up_proj.weight"].T)) @ t[p + "mlp.down_proj.weight"].T
    return _rms(x + m, t[p + "final_layernorm.weight"], eps)


@pytest.mark.parametrize("start", [0, 3])
def test_step_matches_independent_reference_of_vllm_math(tiny_random_mimo, random_pair, start):
    main, head = random_pair
    t = load_file(str(tiny_random_mimo / "model.safetensors"))
    g = torch.Generator().manual_seed(1)
    n = 9
    h = torch.randn(n, main.config.hidden_size, generator=g)
    tokens = torch.randint(0, 256, (n,), generator=g)
    pos = torch.arange(n) + start
    ref = reference_step(t, main.config, h, tokens, pos, t["model.embed_tokens.weight"])
    with torch.no_grad():
        out = head(h[None], t["model.embed_tokens.weight"][tokens][None], pos[None])[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_position_zero_embedding_is_masked(random_pair):
    main, head = random_pair
    h = torch.randn(1, 1, main.config.hidden_size)
    with torch.no_grad():
        a = head(h, torch.randn(1, 1, main.config.hidden_size), torch.tensor([[0]]))
        b = head(h, torch.randn(1, 1, main.config.hidden_size), torch.tensor([[0]]))
        c = head(h, torch.randn(1, 1, main.config.hidden_size), torch.tensor([[1]]))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_step_weights_defaults():
    w = step_weights(3, 0.6)
    assert [round(x, 3) for x in w] == [0.51, 0.306, 0.184]
    with pytest.raises(ValueError):
        step_weights(0, 0.6)


@pytest.mark.parametrize("hidden_state", [POST_NORM, PRE_NORM])
def test_draft_chain_on_counting_model_feeds_own_hidden_state(tiny_counting_mimo, hidden_state):
    main, head = _load(tiny_counting_mimo)
    assert draft_chain(main, head, [5, 6, 7], 3, hidden_state) == [8, 9, 10, 11]
    assert draft_chain(main, head, [40], 4, hidden_state) == [41, 42, 43, 44, 45]


@pytest.mark.parametrize("hidden_state", [POST_NORM, PRE_NORM])
def test_batched_chains_equal_sequential_chain(random_pair, hidden_state):
    """The batched, all-anchors chain used for offline acceptance == draft_chain's cache behaviour, step by step."""
    main, head = random_pair
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 300, (2, 14), generator=g)
    K = 3
    drafts, greedy = batched_draft_chains(main, head, ids, None, K, hidden_state)
    for b in range(2):
        row = ids[b].tolist()
        for i in range(len(row) - K):
            forced = row[i + 1 : i + 1 + K]  # sampled token t_{i+1}, then step inputs t_{i+2}, t_{i+3}
            ref = _chain(main, head, row[: i + 1], K, hidden_state, forced=forced)
            assert ref[0] == int(greedy[b, i])
            assert drafts[b, i].tolist() == ref[1:], (b, i)


def test_draft_chain_equals_batched_on_greedy_data(random_pair):
    """On the main model's own greedy continuation the teacher-forced chain IS the served chain."""
    main, head = random_pair
    ids = [10, 20, 30, 40]
    for _ in range(12):
        ids.append(draft_chain(main, head, ids, 0, POST_NORM)[0])
    x = torch.tensor([ids])
    drafts, greedy = batched_draft_chains(main, head, x, None, 3, POST_NORM)
    assert greedy[0, 3:-1].tolist() == ids[4:]
    for m in range(4, len(ids) - 3):
        chain = draft_chain(main, head, ids[:m], 3, POST_NORM)
        assert chain[0] == ids[m]
        got = drafts[0, m - 1].tolist()
        for k in range(3):  # identical up to and including the first draft that leaves the greedy path
            assert got[k] == chain[k + 1]
            if chain[k + 1] != ids[m + 1 + k]:
                break


def test_acceptance_counts_are_cumulative():
    drafts = torch.tensor([[[1, 2, 3], [5, 9, 9], [0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    greedy = torch.tensor([[0, 1, 2, 3, 4]])  # anchor 0: greedy[1..3] = 1,2,3 ; anchor 1: greedy[2..4] = 2,3,4
    c = acceptance_counts(drafts, greedy, torch.ones(1, 5, dtype=torch.bool), 3)
    assert c.tolist() == [2, 1, 1, 1]


def test_loss_only_counts_masked_targets_and_backprops_to_head_only(random_pair):
    main, head = random_pair
    head.train()
    ids = torch.randint(0, 256, (2, 12))
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 6:] = True
    loss, per_step = mtp_loss(main, head, ids, mask, None, num_steps=3, beta=0.6, hidden_state=POST_NORM)
    loss.backward()
    assert len(per_step) == 3 and torch.isfinite(loss)
    assert all(p.grad is not None for p in head.parameters())
    assert all(p.grad is None for p in main.parameters())
    mask_none = torch.zeros_like(mask)
    loss_b, steps_b = mtp_loss(main, head, ids, mask_none, None, num_steps=3, beta=0.6, hidden_state=POST_NORM)
    assert float(loss_b.detach()) == 0.0
    head.eval()


@torch.no_grad()
def test_distillation_loss_runs(random_pair):
    main, head = random_pair
    ids = torch.randint(0, 256, (1, 10))
    mask = torch.ones_like(ids, dtype=torch.bool)
    for kind in ("kl", "soft_ce"):
        loss, _ = mtp_loss(main, head, ids, mask, None, num_steps=2, beta=0.6, hidden_state=PRE_NORM,
                           distill_weight=1.0, distill_loss=kind, distill_top_n=5)
        assert torch.isfinite(loss) and float(loss) >= 0
    # self-distillation targets come from the main model: a head that reproduces them has ~zero KL; here just
    # check that the mixed loss lies between its parts
    ce, _ = mtp_loss(main, head, ids, mask, None, num_steps=2, beta=0.6, hidden_state=PRE_NORM)
    kl, _ = mtp_loss(main, head, ids, mask, None, num_steps=2, beta=0.6, hidden_state=PRE_NORM,
                     distill_weight=1.0, distill_top_n=5)
    mix, _ = mtp_loss(main, head, ids, mask, None, num_steps=2, beta=0.6, hidden_state=PRE_NORM,
                      distill_weight=0.5, distill_top_n=5)
    assert min(ce, kl) - 1e-4 <= mix <= max(ce, kl) + 1e-4


def test_main_hidden_states_conventions(random_pair):
    main, _ = random_pair
    ids = torch.tensor([[1, 2, 3, 4]])
    pre, post_a = main_hidden_states(main, ids, None, PRE_NORM)
    post, post_b = main_hidden_states(main, ids, None, POST_NORM)
    assert torch.equal(post, post_a) and torch.equal(post, post_b)
    torch.testing.assert_close(main.model.norm(pre), post)
    assert not torch.allclose(pre, post)


def test_chunked_loss_equals_unchunked(random_pair, monkeypatch):
    import training.mtp_head as mh

    main, head = random_pair
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids, dtype=torch.bool)
    kw = dict(num_steps=3, beta=0.6, hidden_state=POST_NORM, distill_weight=0.5, distill_top_n=7)
    results = []
    for chunk in (4096, 5):
        monkeypatch.setattr(mh, "LOSS_CHUNK", chunk)
        head.zero_grad()
        loss, _ = mh.mtp_loss(main, head, ids, mask, None, **kw)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in head.parameters()]))
    head.zero_grad()
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_batched_chains_block_size_does_not_matter(random_pair, monkeypatch):
    import training.mtp_head as mh

    main, head = random_pair
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(9))
    ref, _ = mh.batched_draft_chains(main, head, ids, None, 3, POST_NORM)
    orig = mh._tree_attend
    monkeypatch.setattr(mh, "_tree_attend", lambda *a, **kw: orig(*a, block=7))
    got, _ = mh.batched_draft_chains(main, head, ids, None, 3, POST_NORM)
    assert torch.equal(ref, got)
