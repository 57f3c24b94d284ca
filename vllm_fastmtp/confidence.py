"""Draft-confidence stopping (opt-in, `"draft_confidence"` in the fastmtp config).

A draft costs a head step and a verified position, and pays only when it is accepted. The head's probability for
its own token estimates that; the product over a request's drafts so far estimates that they are all accepted
(the estimate EAGLE-2 ranks its draft tree by). A request's drafts end before the first one whose running product
falls below the threshold, and the head stops once every request in the batch has ended: verification never
sees the rest, and the head never computes them. Verification is unchanged, so outputs are too; only how many
drafts each step proposes moves. vLLM-free: the integration layer feeds each draft step's tokens and
probabilities to a `ConfidenceStop` and returns its `rows()`.
"""

from __future__ import annotations

import torch


class DraftsDone(Exception):
    """Raised from inside the drafter's K-step loop once every request has ended, to skip the remaining steps."""


def top_token(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax ids, their softmax probabilities) per row, computed in float32."""
    logits = logits.float()
    top, ids = logits.max(dim=-1)
    return ids, torch.exp(top - torch.logsumexp(logits, dim=-1))


def check_threshold(value) -> float:
    """A threshold in (0, 1): 0 would keep every draft (the option left out), 1 none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"expected a number in (0, 1) (the running product of the head's probabilities for its "
                         f"drafts below which a request's drafts end), got {value!r}")
    return float(value)


class ConfidenceStop:
    """One propose call's drafts, step by step, and where each request's drafts end."""

    def __init__(self, threshold: float):
        self.threshold = check_threshold(threshold)
        self.batch_size = 0
        self._steps: list[torch.Tensor] = []
        # running product of probabilities: probabilities are <= 1, so once below the threshold it stays there
        self._chain: torch.Tensor | None = None
        self._lengths: torch.Tensor | None = None

    def start(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._steps = []
        self._chain = None
        self._lengths = None

    @property
    def num_steps(self) -> int:
        return len(self._steps)

    def add(self, ids: torch.Tensor, probs: torch.Tensor) -> bool:
        """Record one draft step (ids and probabilities of the first `batch_size` rows); True once every request
        has ended, so that the caller can skip the steps left."""
        ids, probs = ids[: self.batch_size], probs[: self.batch_size].float()
        self._steps.append(ids)
        self._chain = probs if self._chain is None else self._chain * probs
        keep = self._chain >= self.threshold
        self._lengths = keep.long() if self._lengths is None else self._lengths + keep.long()
        return not bool(keep.any())

    def rows(self) -> list[list[int]]:
        """Each request's drafts, cut where its running product fell below the threshold (maybe empty)."""
        if not self._steps:
            return [[] for _ in range(self.batch_size)]
        drafts = torch.stack(self._steps, dim=1).tolist()
        return [row[:n] for row, n in zip(drafts, self._lengths.tolist())]
