"""The latent streams of one batch as the single tensor per sample the rollout solvers step.

A :class:`vtrain.family.VelocityPredictor` family has one stream (``latents``): its tensors pass through as
they are. A :class:`vtrain.family.MultiStreamVelocityPredictor` family (video and audio, say) lists its
generated streams; each is flattened per sample and the streams are concatenated, so one solver path moves
them together at the sample's sigma, and ReflexFlow weighs and compares the joint velocity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtrain.family import LatentStream, MultiStreamVelocityPredictor

if TYPE_CHECKING:
    import torch

    from vtrain.family import LossOutput, ModelBundle

SINGLE = LatentStream("latents", latents="latents", noise="noise", noisy_latents="noisy_latents",
                      loss_weight="loss_weight")


def offers_velocity(family: Any) -> bool:
    """Whether rollout can drive ``family``."""
    from vtrain.family import VelocityPredictor

    return isinstance(family, (MultiStreamVelocityPredictor, VelocityPredictor))


@dataclass
class StreamView:
    """``family``'s generated streams in ``batch`` and their per-sample shapes (``streams`` empty: none)."""

    family: Any
    config: Any
    streams: tuple[LatentStream, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, family: Any, bundle: ModelBundle, batch: dict[str, Any], config: Any) -> StreamView:
        if isinstance(family, MultiStreamVelocityPredictor):
            streams = tuple(family.latent_streams(bundle, batch, config))
        else:
            streams = (SINGLE,)
        return cls(family, config, streams, tuple(tuple(batch[s.latents].shape[1:]) for s in streams))

    @property
    def single(self) -> bool:
        return not isinstance(self.family, MultiStreamVelocityPredictor)

    def pack(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Stream name -> (B, *shape) to (B, ...): the tensor itself for one stream, flattened and joined otherwise."""
        import torch

        if self.single:
            return tensors[SINGLE.name]
        return torch.cat([tensors[s.name].reshape(tensors[s.name].shape[0], -1) for s in self.streams], dim=1)

    def unpack(self, packed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`pack` (any number of rows)."""
        if self.single:
            return {SINGLE.name: packed}
        out, start = {}, 0
        for stream, shape in zip(self.streams, self.shapes):
            count = 1
            for size in shape:
                count *= size
            out[stream.name] = packed[:, start:start + count].reshape(packed.shape[0], *shape)
            start += count
        return out

    def clean(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.pack({s.name: batch[s.latents].float() for s in self.streams})

    def noise(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.pack({s.name: inputs[s.noise] for s in self.streams})

    def condition_mask(self, bundle: ModelBundle, batch: dict[str, Any]) -> torch.Tensor | None:
        """1 on the fixed clean conditions, broadcastable to the packed latents; ``None`` when nothing is fixed."""
        import torch

        if self.single:
            return self.family.fixed_condition_mask(bundle, batch)
        masks = self.family.stream_condition_masks(bundle, batch, self.config)
        if not masks:
            return None
        size = batch[self.streams[0].latents].shape[0]
        device = batch[self.streams[0].latents].device
        return self.pack({s.name: (masks[s.name].float().to(device).expand(size, *shape) if s.name in masks
                                   else torch.zeros(size, *shape, device=device))
                          for s, shape in zip(self.streams, self.shapes)})

    def predict(self, bundle: ModelBundle, batch: dict[str, Any], packed: torch.Tensor,
                sigmas: torch.Tensor) -> torch.Tensor:
        """The family's velocity for the packed input ``packed`` at ``sigmas``, packed."""
        if self.single:
            return self.family.predict_velocity(bundle, batch, packed, sigmas)
        velocities = self.family.predict_stream_velocities(bundle, batch, self.config, self.unpack(packed), sigmas)
        return self.pack(velocities)

    def put(self, batch: dict[str, Any], key: str, packed: torch.Tensor) -> None:
        """Write each stream's part of ``packed`` to the batch under the stream's ``key`` attribute
        (``noisy_latents`` or ``loss_weight``)."""
        parts = self.unpack(packed)
        for stream in self.streams:
            batch[getattr(stream, key)] = parts[stream.name]

    def prediction(self, out: LossOutput) -> torch.Tensor | None:
        """The loss's prediction, packed (``None`` when the family returned none)."""
        if self.single:
            return out.prediction
        if not all(s.name in out.predictions for s in self.streams):
            return None
        return self.pack(out.predictions)
