"""ReflexFlow (arXiv 2512.04904) on rolled-out samples: frequency compensation and anti-drift rectification.

- Frequency compensation (FC): the exposure bias of a rolled-out input is delta = x_hat - x_t (self-generated
  minus analytic input at the same sigma). Each element's squared error is weighted by
  ``beta2 * (1 + alpha * |delta| / mean|delta|)`` (mean over the sample's free elements), so the regions the
  model's own sampling got most wrong (early on, mostly low-frequency content) weigh more. Costs no forward.
- Anti-drift rectification (ADR): for a biased input the velocity that leads back to the clean sample is
  u = (x_hat - x0) / sigma; the term is ``beta1 * mean over rolled samples of ||v/|v| - u/|u|||^2`` (directions
  compared, magnitudes not), on the prediction of the training forward.
Samples that were not rolled out keep weight 1 and add nothing to the ADR term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

EPSILON = 1e-6


def _free(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """1 where the latents are not a fixed condition, expanded to ``like``."""
    import torch

    if mask is None:
        return torch.ones_like(like)
    return (1 - mask).expand_as(like).to(like.dtype)


def compensation_weight(x_hat: torch.Tensor, x_t: torch.Tensor, rolled: torch.Tensor, mask: torch.Tensor | None,
                        alpha: float, beta2: float) -> torch.Tensor:
    """Per-element loss weight shaped like the latents: FC weight on rolled samples, 1 elsewhere."""
    import torch

    free = _free(mask, x_hat)
    bias = (x_hat - x_t).abs() * free
    dims = tuple(range(1, bias.dim()))
    mean = bias.sum(dim=dims, keepdim=True) / free.sum(dim=dims, keepdim=True).clamp_min(1)
    weight = beta2 * (1 + alpha * bias / mean.clamp_min(EPSILON))
    shape = (-1,) + (1,) * (bias.dim() - 1)
    return torch.where(rolled.view(shape), weight, torch.ones_like(weight))


def anti_drift(prediction: torch.Tensor, x_hat: torch.Tensor, x0: torch.Tensor, sigmas: torch.Tensor,
               rolled: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The unweighted ADR term (a scalar with the prediction's graph); 0 when nothing was rolled out."""
    if not bool(rolled.any()):
        return prediction.sum() * 0.0
    free = _free(mask, x_hat)[rolled]
    shape = (-1,) + (1,) * (x_hat.dim() - 1)
    target = (x_hat[rolled] - x0[rolled]) / sigmas[rolled].clamp_min(EPSILON).view(shape)
    predicted = (prediction[rolled].float() * free).flatten(1)
    target = (target * free).flatten(1)
    predicted = predicted / predicted.norm(dim=1, keepdim=True).clamp_min(EPSILON)
    target = target / target.norm(dim=1, keepdim=True).clamp_min(EPSILON)
    return ((predicted - target) ** 2).sum(dim=1).mean()
