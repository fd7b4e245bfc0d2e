"""Plain-torch log-probabilities for TRL's GRPO loss where Triton is missing.

TRL 1.15 computes the per-token log-probabilities of its loss with a Triton kernel
(`trl.trainer.utils._ChunkedLogProbFunction`) and leaves it None when Triton does not import,
which is the case for CPU builds of torch: the first training step then fails with
"'NoneType' object has no attribute 'apply'". This module supplies the same computation
(logits * scale, optional soft-capping, / temperature, log-softmax) with torch's own autograd.
It materialises the logits, which is fine for the small models that train on CPU.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def install_if_missing() -> bool:
    """Install the plain-torch fallback when TRL has no kernel; True when it was installed."""
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is not None:
        return False
    # a duck-typed stand-in for TRL's private autograd class, so not of its type
    trl_utils._ChunkedLogProbFunction = TorchLogProbs  # type: ignore[misc, assignment]
    return True


class TorchLogProbs:
    """The interface of TRL's ChunkedLogProbFunction: `apply(...)` returns log-probabilities and
    the optional outputs (entropy, log of the summed squared probabilities, mean logit, whether
    the target is the argmax), None for those not requested."""

    @staticmethod
    def apply(
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        softcap: float | None,
        scale: float,
        outputs: Collection[str],
    ) -> tuple[torch.Tensor | None, ...]:
        import torch
        import torch.nn.functional as F

        logits = F.linear(hidden, weight, bias).float() * scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logp = (logits / temperature).log_softmax(-1)
        logprobs = logp.gather(-1, targets[:, None]).squeeze(-1)
        extra = {
            "entropy": lambda: -(logp.exp() * logp).sum(-1),
            "log_sum_sq_probs": lambda: torch.logsumexp(2 * logp, -1).detach(),
            "mean_logits": lambda: logits.mean(-1).detach(),
            "is_top1": lambda: logits.argmax(-1) == targets,
        }
        return logprobs, *(make() if name in outputs else None for name, make in extra.items())
