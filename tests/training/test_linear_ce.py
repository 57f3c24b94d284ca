"""training.linear_ce: the fused lm_head + CE gives autograd's loss and input gradient, chunk boundaries and all."""

import pytest
import torch
import torch.nn.functional as F

from training.linear_ce import linear_cross_entropy


def _reference(x, weight, targets):
    return F.nll_loss(F.log_softmax((x.to(weight.dtype) @ weight.T).float(), dim=-1), targets)


def _loss_and_grad(fn, x, weight, targets, scale):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, weight, targets)
    (loss * scale).backward()  # an upstream gradient other than 1, as the step weight alpha_k gives it
    return loss.detach(), x.grad


@pytest.mark.parametrize("chunk", [1, 8, 37, 256])  # one row a chunk, a ragged last chunk, exactly N, more than N
def test_fp32_loss_and_gradient_equal_autograd(chunk):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(37, 16, generator=g), torch.randn(50, 16, generator=g)
    t = torch.randint(0, 50, (37,), generator=g)
    t[:5] = t[0]  # repeated targets inside one chunk
    ref_l, ref_g = _loss_and_grad(_reference, x, w, t, 0.6)
    got_l, got_g = _loss_and_grad(lambda *a: linear_cross_entropy(*a, chunk=chunk), x, w, t, 0.6)
    torch.testing.assert_close(got_l, ref_l, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_g, ref_g, rtol=1e-5, atol=1e-7)
    assert got_g.abs().sum() > 0


def test_bf16_rows_under_autocast_match_autograd_to_bf16_rounding():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(300, 64, generator=g), (torch.randn(900, 64, generator=g) * 0.1).bfloat16()
    t = torch.randint(0, 900, (300,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_l, ref_g = _loss_and_grad(_reference, x, w, t, 0.6)
        got_l, got_g = _loss_and_grad(linear_cross_entropy, x, w, t, 0.6)
        fp32_l, fp32_g = _loss_and_grad(linear_cross_entropy, x, w.float(), t, 0.6)
    # fp32 rows under autocast: the product in bf16, as autocast would compute it
    assert torch.equal(fp32_l, got_l) and torch.equal(fp32_g, got_g)
    assert got_g.dtype == x.dtype == torch.float32
    torch.testing.assert_close(got_l, ref_l, rtol=1e-5, atol=1e-5)
    # the gradient is cast to bf16 before the product in both; only where alpha_k is applied differs
    torch.testing.assert_close(got_g, ref_g, rtol=2e-2, atol=1e-2 * float(ref_g.abs().max()))


def test_no_gradient_wanted_no_gradient_computed():
    x, w, t = torch.randn(10, 8), torch.randn(20, 8), torch.randint(0, 20, (10,))
    with torch.no_grad():
        loss = linear_cross_entropy(x, w, t, chunk=3)
    torch.testing.assert_close(loss, _reference(x, w, t))


def test_bad_input_is_refused():
    x, t = torch.randn(10, 8), torch.randint(0, 20, (10,))
    with pytest.raises(ValueError, match="frozen"):
        linear_cross_entropy(x, torch.randn(20, 8, requires_grad=True), t)
    with pytest.raises(ValueError, match=r"x \[N, H\] and targets \[N\]"):
        linear_cross_entropy(x, torch.randn(20, 8), t[:9])
    with pytest.raises(ValueError, match="chunk"):
        linear_cross_entropy(x, torch.randn(20, 8), t, chunk=0)
