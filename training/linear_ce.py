"""Cross-entropy over a frozen lm_head, with the input's gradient computed in the forward pass, chunk by chunk.

Autograd's log_softmax + nll over [N, V'] logits stores the fp32 log-probs for the backward pass and walks them
several times (cast, max, exp-sum, gather; in the backward exp, subtract, cast): on a CPU that memory traffic costs
about half as much again as the [N, H] x [H, V'] product itself. Here each chunk of rows gets its logits, their
log-sum-exp, its share of the loss and its gradient (softmax - onehot) @ W while the chunk is still in cache, and
only the [N, H] gradient is kept. The arithmetic is autograd's (logits in W's dtype, softmax in fp32, the gradient
cast to W's dtype for the product), so the loss and the gradient match the unfused form up to rounding; the weight
gets none, so it must be frozen (the head's lm_head is shared with the main model and never trained).
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # rows per chunk: a [256, ~9k] fp32 block stays in L2/L3 (measured fastest of 128/256/512 here)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n, v = x.shape[0], weight.shape[0]
        want_grad = ctx.needs_input_grad[0]
        xw = x.to(weight.dtype)
        grad = torch.empty_like(xw) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        rows = min(chunk, n)
        # two buffers reused by every chunk, updated in place (fresh [256, V] tensors per chunk measured slower)
        logits = torch.empty(rows, v, dtype=torch.float32, device=x.device)
        low = None if weight.dtype == torch.float32 else torch.empty(rows, v, dtype=weight.dtype, device=x.device)
        arange = torch.arange(rows, device=x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            for s in range(0, n, chunk):
                t = targets[s : s + chunk]
                r = len(t)
                lg = logits[:r]
                if low is None:
                    torch.mm(xw[s : s + r], weight.T, out=lg)
                else:  # the product in W's dtype, as autocast computes it, then fp32 for the softmax
                    torch.mm(xw[s : s + r], weight.T, out=low[:r])
                    lg.copy_(low[:r])
                top = lg.amax(dim=-1, keepdim=True)
                picked = lg.gather(1, t[:, None])
                lg.sub_(top).exp_()
                norm = lg.sum(dim=-1, keepdim=True)
                total += (top + norm.log() - picked).sum()  # log-sum-exp - the target's logit
                if want_grad:  # d(mean CE)/d logits = (softmax - onehot) / n
                    lg.mul_((norm * n).reciprocal_())
                    lg[arange[:r], t] -= 1.0 / n
                    if low is None:
                        torch.mm(lg, weight, out=grad[s : s + r])
                    else:
                        low[:r].copy_(lg)
                        torch.mm(low[:r], weight, out=grad[s : s + r])
        ctx.save_for_backward(grad)
        ctx.x_dtype = x.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad.to(ctx.x_dtype) * grad_out, None, None, None


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Mean CE of softmax(x @ weight.T) at ``targets`` ([N, H], [V', H], [N] ids into weight's rows). The product
    runs in weight's dtype, or in the autocast dtype for fp32 rows under autocast (as autocast would run it)."""
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy computes no gradient for the weight; pass a frozen (detached) one")
    if x.ndim != 2 or targets.shape != x.shape[:1]:
        raise ValueError(f"expected x [N, H] and targets [N], got {tuple(x.shape)} and {tuple(targets.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and weight.dtype == torch.float32:  # the product autocast would compute
        weight = weight.to(torch.get_autocast_dtype(dev))
    return _LinearCrossEntropy.apply(x, weight, targets.long(), chunk)
