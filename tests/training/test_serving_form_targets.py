"""The serving-form chains computed only where a target is reached (chain_outputs(..., targets=)): the same outputs
at every trained position and the same gradients as computing every chain, for rows of different spans, a row
that reaches the sequence end, a multi-turn row and a row with nothing to train."""

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint_io import load_main_model
from training.mtp_head import MTPHead, chain_outputs, states_mtp_loss

torch.set_num_threads(1)

K = 3


@pytest.fixture(scope="module")
def head_and_embed(tiny_random_mimo):
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    return head, main.get_input_embeddings().weight.detach(), main.lm_head.weight.detach()


def _batch(hidden_size: int, vocab: int, n: int = 40):
    g = torch.Generator().manual_seed(0)
    targets = torch.zeros(4, n, dtype=torch.bool)
    targets[0, 10:25] = True   # one answer, then padding
    targets[1, 30:n] = True    # the answer runs to the end: chains near the end, clamped slots in the span
    targets[2, 5:9] = True     # two turns with a user turn between
    targets[2, 20:33] = True
    # row 3: nothing trained (all prompt)
    ids = torch.randint(1, vocab, (4, n), generator=g)
    hidden = torch.randn(4, n, hidden_size, generator=g)
    return ids, hidden, targets


def _functional(head, hidden, embeds, targets, weights, computed):
    """A linear functional of the step outputs at the trained positions, the chains computed for ``computed``
    (None: every chain). Returns it and the outputs."""
    total = 0.0
    outs = dict(chain_outputs(head, hidden, embeds, K, "serving", computed))
    n = hidden.shape[1]
    for k, out in outs.items():
        sel = targets[:, k + 1 : n].bool()
        total = total + (out[:, : n - k - 1][sel] * weights[k][: int(sel.sum())]).sum()
    return total, outs


def test_outputs_and_gradients_equal_computing_every_chain(head_and_embed):
    head, embed, _ = head_and_embed
    ids, hidden, targets = _batch(head.head_cfg.hidden_size, embed.shape[0])
    embeds = torch.nn.functional.embedding(ids, embed)
    g = torch.Generator().manual_seed(1)
    weights = {k: torch.randn(int(targets.sum()), hidden.shape[-1], generator=g) for k in range(1, K + 1)}
    grads = []
    for computed in (None, targets):
        head.zero_grad()
        total, outs = _functional(head, hidden, embeds, targets, weights, computed)
        total.backward()
        grads.append((outs, {name: p.grad.clone() for name, p in head.named_parameters()}))
    (dense, g_dense), (sparse, g_sparse) = grads
    n = hidden.shape[1]
    for k in range(1, K + 1):
        assert sparse[k].shape == dense[k].shape
        sel = targets[:, k + 1 :]
        torch.testing.assert_close(sparse[k][:, : n - k - 1][sel], dense[k][:, : n - k - 1][sel], rtol=1e-5,
                                   atol=1e-5)
        assert (sparse[k][3] == 0).all()  # the row with nothing trained is not computed
    for name, grad in g_dense.items():  # a repeated (clamped) slot counted twice would double its gradient
        # the two layouts block the attention's queries differently: rounding relative to the gradient's scale
        torch.testing.assert_close(g_sparse[name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()), msg=name)
    assert g_dense["mlp.down_proj.weight"].abs().sum() > 0


def test_the_loss_computes_only_the_chains_it_trains_and_is_unchanged(head_and_embed, monkeypatch):
    import training.mtp_head as mtp_head

    head, embed, lm = head_and_embed
    ids, hidden, targets = _batch(head.head_cfg.hidden_size, embed.shape[0])
    embeds = torch.nn.functional.embedding(ids, embed)
    seen, real = [], mtp_head.chain_outputs
    monkeypatch.setattr(mtp_head, "chain_outputs", lambda *a: seen.append(a[5]) or real(*a))
    kw = dict(num_steps=K, beta=0.6, label_source="data", form="serving")
    loss, _ = states_mtp_loss(head, hidden, embeds, lm, ids, targets, **kw)
    assert seen[-1] is not None and torch.equal(seen[-1], targets)
    # every chain computed (targets=None): the same loss
    monkeypatch.setattr(mtp_head, "chain_outputs", lambda h, hid, e, k, f, t: real(h, hid, e, k, f, None))
    full, _ = states_mtp_loss(head, hidden, embeds, lm, ids, targets, **kw)
    torch.testing.assert_close(loss, full, rtol=1e-6, atol=1e-6)


def test_nothing_to_train_and_the_paper_form(head_and_embed):
    head, embed, _ = head_and_embed
    ids, hidden, targets = _batch(head.head_cfg.hidden_size, embed.shape[0])
    embeds = torch.nn.functional.embedding(ids, embed)
    outs = dict(chain_outputs(head, hidden, embeds, K, "serving", torch.zeros_like(targets)))
    assert sorted(outs) == [1, 2, 3] and all((o == 0).all() for o in outs.values())
    assert outs[1].shape == (4, hidden.shape[1] - 1, hidden.shape[-1])
    with pytest.raises(ValueError, match="needs the serving form"):
        list(chain_outputs(head, hidden, embeds, K, "paper", targets))
