"""``tinyflow``: a tiny but real flow-matching model family for testing the core on CPU.

Samples are latents ``(C, F, H, W)`` drawn around one prototype per class; the class id plays
the part of the text condition. Two latent shapes make two buckets. The model learns the
velocity field, so the loss falls within a few dozen updates.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.family import Artifact, FamilyTraits, LossOutput, ModelBundle, TrainState

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig

NAME = "tinyflow"
SHAPES = ((3, 4, 4), (5, 2, 4))  # (frames, height, width) of the two buckets


class TinyFlowDataset:
    """Deterministic synthetic latents in two buckets."""

    def __init__(self, num_samples: int, channels: int, num_classes: int, seed: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.prototypes = {shape: torch.randn(num_classes, channels, *shape, generator=generator) for shape in SHAPES}
        self.items = []
        for index in range(num_samples):
            shape = SHAPES[index % len(SHAPES)]
            label = index % num_classes
            latents = self.prototypes[shape][label] + 0.05 * torch.randn(channels, *shape, generator=generator)
            mask = torch.ones(1, *shape)
            mask[:, -1] = 0.0  # the last frame does not count when use_masked_loss is on
            self.items.append({"latents": latents, "labels": torch.tensor(label), "mask": mask,
                               "id": f"sample-{index:04d}", "sample_key": f"tinyflow-{seed}-{num_samples}-{index}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def bucket_of(self, index: int) -> Hashable:
        return "x".join(map(str, self.items[index]["latents"].shape[1:]))

    def describe(self) -> list[str]:
        counts: dict[Hashable, int] = {}
        for i in range(len(self)):
            counts[self.bucket_of(i)] = counts.get(self.bucket_of(i), 0) + 1
        return [f"tinyflow synthetic: {len(self)} samples, buckets " + ", ".join(f"{k}: {v}" for k, v in counts.items())]


def caption_label(text: str, num_classes: int) -> int:
    """The tinyflow stand-in for a text encoder: a stable hash of the caption modulo ``num_classes``."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % num_classes


@dataclass
class Captured:
    hidden_states: Any = None
    grid: tuple[int, int, int] | None = None  # (frames, height, width) of the captured tokens


class TinyFlowFamily:
    """The ``tinyflow`` family object (follows :class:`vtrain.family.ModelFamily` and the optional
    capabilities ``HiddenStateCapture``, ``LatentDecoder``, ``PreviewDecoder`` and ``VelocityPredictor``)."""

    name = NAME
    # The cheap encoder below maps 4k+1 frames to k+1 latent frames and 8x8 pixels to one latent pixel.
    traits = FamilyTraits(frame_factor=4, frame_offset=1, spatial_alignment=8, latent_channels=4,
                          supports_masked_loss=True, default_fps=8, repeated_block_classes=("TinyBlock",),
                          empty_weight_loading=True,
                          quantization_exclusions=("proj_in", "proj_out", "time_embed", "class_embed", "*norm*"))

    def load_model(self, config: ResolvedConfig) -> ModelBundle:
        import torch

        from vtrain.family import base_dtype_name
        from vtrain.testing.tinyflow_model import TinyFlowModel

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[base_dtype_name(config)]
        from vtrain.fsdp_options import reads_weights

        if not reads_weights(config):  # sharded, and rank 0 reads the weights: build it empty (meta parameters)
            import json

            from accelerate import init_empty_weights

            path = config.pretrained_model_name_or_path
            settings = (json.loads((Path(path) / "config.json").read_text()) if path else
                        {"channels": self.traits.latent_channels, "width": config.tinyflow_width,
                         "depth": config.tinyflow_depth, "num_classes": config.tinyflow_classes})
            with init_empty_weights(include_buffers=False):
                model = TinyFlowModel(**settings)
        elif config.pretrained_model_name_or_path:
            model = TinyFlowModel.from_pretrained(config.pretrained_model_name_or_path)
        else:
            model = TinyFlowModel(channels=self.traits.latent_channels, width=config.tinyflow_width,
                                  depth=config.tinyflow_depth, num_classes=config.tinyflow_classes)
        model.requires_grad_(False)
        # LoRA trains in fp32 on top of frozen weights; full training keeps fp32 master weights.
        model.to(torch.float32 if config.model_type == "full" else dtype)
        # what changes encode_batch's outputs besides the config keys the data layer already keys caches on
        identity = {"text": {"classes": config.tinyflow_classes}, "vae": {"encoder": "avgpool-rgbl-v1"}}
        return ModelBundle(family=NAME, model=model, meta={"dtype": str(dtype), "cache_identity": identity})

    def add_adapters(self, bundle: ModelBundle, config: ResolvedConfig) -> None:
        import torch

        model = bundle.model
        if config.model_type == "full":
            model.requires_grad_(True)
        else:
            if config.lora_type != "standard":
                from vtrain.errors import ConfigError, Problem

                raise ConfigError([Problem("lora_type", f"the tinyflow family supports standard LoRA only, not {config.lora_type!r}")])
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha or config.lora_rank,
                              lora_dropout=config.lora_dropout, init_lora_weights="gaussian",
                              target_modules=["to_hidden", "to_out", "to_scale"])
            inject_adapter_in_model(lora, model)
            for name, param in model.named_parameters():
                param.requires_grad_("lora_" in name)
                if "lora_" in name:
                    param.data = param.data.to(torch.float32)
        model.gradient_checkpointing = bool(config.gradient_checkpointing)
        model.train()

    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        """A real but cheap encoder: pixels -> pooled RGB+luminance latents, captions -> class labels.

        ``pixels`` (B, F, 3, H, W) in [0, 1], F = 4k+1, H and W multiples of 8, become latents
        (B, 4, k+1, H/8, W/8): the first frame alone, then groups of 4 frames averaged (like a
        causal video VAE). A caption's label is a stable hash of its text modulo ``tinyflow_classes``.
        """
        import torch

        out: dict[str, Any] = {}
        if "pixels" in batch:
            pixels = batch["pixels"].float()
            b, f, c, h, w = pixels.shape
            if c != 3 or (f - 1) % 4 or h % 8 or w % 8:
                raise ValueError(f"tinyflow encodes (B, 4k+1, 3, 8m, 8n) pixels, got {tuple(pixels.shape)}")
            luminance = (pixels * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
            x = torch.cat([pixels, luminance], dim=2).reshape(b * f, 4, h, w)
            x = torch.nn.functional.avg_pool2d(x, 8).reshape(b, f, 4, h // 8, w // 8)
            rest = x[:, 1:].reshape(b, (f - 1) // 4, 4, 4, h // 8, w // 8).mean(2)
            latents = torch.cat([x[:, :1], rest], dim=1).permute(0, 2, 1, 3, 4)
            out["latents"] = ((latents - 0.5) * 4.0).contiguous()
        if "captions" in batch:
            out["labels"] = torch.tensor([caption_label(text, config.tinyflow_classes) for text in batch["captions"]],
                                         dtype=torch.long)
        return out

    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        from vtrain.flow_matching import resolution_shift

        if config.flow_schedule_auto_shift:
            tokens = 1
            for size in sample_shape[-3:]:
                tokens *= size
            return resolution_shift(tokens, base_seq_len=16, max_seq_len=64, base_shift=0.5, max_shift=1.15)
        return config.flow_schedule_shift

    def draw_flow_inputs(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                         state: TrainState) -> dict[str, Any]:
        """:class:`vtrain.family.VelocityPredictor`: ``sigmas`` then ``noise``, drawn as ``compute_loss`` draws them."""
        import torch

        from vtrain.flow_matching import sample_sigmas, shift_sigmas

        x0 = batch["latents"].float()
        if "sigmas" in batch:  # fixed timesteps (evaluation): used as given
            sigmas = batch["sigmas"].to(x0.device, torch.float32)
        else:
            sigmas = sample_sigmas(x0.shape[0], config.flow_sigma_sampling, config.flow_logit_mean,
                                   config.flow_logit_std, device=x0.device)
            shift = state.shift_for(tuple(x0.shape[1:])) if state.shift_for else self.schedule_shift(config, x0.shape[1:])
            if shift is not None:
                sigmas = shift_sigmas(sigmas, shift)
        noise = batch["noise"].to(x0.device, x0.dtype) if "noise" in batch else torch.randn_like(x0)
        return {"sigmas": sigmas, "noise": noise}

    def fixed_condition_mask(self, bundle: ModelBundle, batch: dict[str, Any]) -> None:
        """:class:`vtrain.family.VelocityPredictor`: tinyflow has no fixed conditions."""
        return None

    def predict_velocity(self, bundle: ModelBundle, batch: dict[str, Any], noisy_latents: torch.Tensor,
                         sigmas: torch.Tensor) -> torch.Tensor:
        """:class:`vtrain.family.VelocityPredictor`: the model's velocity (the unwrapped model, no collectives)."""
        return bundle.model(noisy_latents.float(), sigmas.float(), batch["labels"]).float()

    def compute_loss(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                     state: TrainState) -> LossOutput:
        """Flow matching; honours ``sigmas``, ``noise``, ``noisy_latents`` and ``loss_weight`` in the batch."""
        from vtrain.flow_matching import noisy_latents

        x0 = batch["latents"].float()
        drawn = self.draw_flow_inputs(bundle, batch, config, state)
        sigmas, noise = drawn["sigmas"], drawn["noise"]
        if batch.get("noisy_latents") is not None:
            x_t = batch["noisy_latents"].to(x0.device, x0.dtype)
        else:
            x_t = noisy_latents(x0, noise, sigmas)
        prediction = bundle.forward_model()(x_t, sigmas, batch["labels"]).float()
        error = (prediction - (noise - x0)) ** 2
        if batch.get("loss_weight") is not None:
            error = error * batch["loss_weight"].to(error.device, error.dtype)
        if config.use_masked_loss:
            weight = batch["mask"].to(error.dtype).expand_as(error)
            loss = (error * weight).sum() / weight.sum().clamp_min(1)
        else:
            loss = error.mean()
        return LossOutput(loss=loss, terms={"flow": loss.detach()}, metrics={"sigma_mean": float(sigmas.mean())},
                          prediction=prediction)

    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int,
                 prompts: Mapping[str, str]) -> list[Artifact]:
        import numpy as np
        import torch

        from vtrain.services.preview import denoising_step

        model = bundle.model
        folder = Path(config.output_dir) / "validation" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = []
        was_training = model.training
        model.eval()
        frames = config.validation_num_video_frames or 9
        latent_frames = (frames - 1) // self.traits.frame_factor + 1
        negative = caption_label(config.validation_negative_prompt or "", config.tinyflow_classes)
        dtype = next(model.parameters()).dtype
        for nickname, prompt in prompts.items():
            label = caption_label(prompt, config.tinyflow_classes)
            for size in config.validation_resolution:
                width, height = (int(v) for v in size.lower().split("x"))
                generator = torch.Generator().manual_seed(config.validation_seed)
                x = torch.randn(1, self.traits.latent_channels, latent_frames, max(1, height // 8), max(1, width // 8),
                                generator=generator)
                sigmas = torch.linspace(1.0, 0.0, config.validation_num_inference_steps + 1)
                name = f"{nickname}-{width}x{height}"
                with torch.no_grad():
                    for index, (current, following) in enumerate(zip(sigmas[:-1], sigmas[1:])):
                        velocity = model(x.to(dtype), current.repeat(1), torch.tensor([label])).float()
                        if config.validation_guidance != 1.0:  # classifier-free guidance against the negative prompt
                            unconditional = model(x.to(dtype), current.repeat(1), torch.tensor([negative])).float()
                            velocity = unconditional + config.validation_guidance * (velocity - unconditional)
                        x = x + (following - current) * velocity
                        denoising_step(bundle, name, index, len(sigmas) - 1, x)
                path = folder / f"{name}.npy"
                np.save(path, x[0].numpy())
                artifacts.append(Artifact(path=path, kind="latents", meta={"prompt": prompt, "step": step,
                                                                           "width": width, "height": height}))
        model.train(was_training)
        return artifacts

    def preview_decoder(self, bundle: ModelBundle, config: ResolvedConfig) -> Any:
        """A trivial "tiny autoencoder" (:class:`vtrain.family.PreviewDecoder`): the first three latent
        channels as RGB, inverting the encoder's scaling, each latent pixel 8x8 pixels."""

        def decode(latents: torch.Tensor) -> torch.Tensor:
            import torch

            rgb = (latents[:, :3].float() / 4.0 + 0.5).clamp(0, 1)  # (B, 3, F, H, W)
            rgb = rgb.repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2)
            return rgb.permute(0, 2, 1, 3, 4).contiguous().to(torch.float32)  # (B, F, 3, 8H, 8W)

        return decode

    def read_lora(self, source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
        """A LoRA file as this family saves it (``adapter_model.safetensors``, peft names, alpha = rank)."""
        from safetensors.torch import load_file

        path = Path(source) / (weight_name or "adapter_model.safetensors")
        return load_file(str(path)), None

    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        from safetensors.torch import save_file

        output_dir.mkdir(parents=True, exist_ok=True)
        if config.model_type == "full":
            bundle.model.save_pretrained(output_dir / "model")
            return [output_dir / "model" / "model.safetensors"]
        from peft import get_peft_model_state_dict

        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(bundle.model).items()}
        path = output_dir / "adapter_model.safetensors"
        save_file(state, str(path))
        paths = [path]
        for name, module in bundle.extra_trainables.items():
            extra = output_dir / f"{name}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(extra))
            paths.append(extra)
        return paths

    @contextlib.contextmanager
    def capture_hidden_states(self, bundle: ModelBundle, block_index: int) -> Iterator[Captured]:
        """Capture block ``block_index``'s output as (batch, frames, tokens_per_frame, width)."""
        captured = Captured()
        model = bundle.model
        model.captured = []
        grids: list[tuple[int, int, int]] = []
        handle = model.register_forward_pre_hook(lambda _module, args: grids.append(tuple(args[0].shape[2:])))
        try:
            yield captured
        finally:
            handle.remove()
        if model.captured:
            if not 0 <= block_index < len(model.captured):
                raise ValueError(f"block {block_index} does not exist: the tinyflow model has {len(model.captured)} blocks")
            captured.hidden_states = model.captured[block_index]
            captured.grid = grids[0] if grids else None
        model.captured = None

    def hidden_state_width(self, bundle: ModelBundle, block_index: int) -> int:
        """The width of the hidden states :meth:`capture_hidden_states` yields."""
        return int(bundle.model.config["width"])

    def decode_latents(self, bundle: ModelBundle, latents: torch.Tensor) -> torch.Tensor:
        """:class:`vtrain.family.LatentDecoder`: invert the cheap encoder approximately.

        Latents (B, 4, k+1, h, w) become pixels (B, 4k+1, 3, 8h, 8w) in [0, 1]: the first three
        channels un-scaled as RGB, each latent pixel 8x8 pixels, latent frame 0 one frame and every
        further latent frame repeated over the 4 frames it averaged.
        """
        import torch

        rgb = (latents[:, :3].float() / 4.0 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (B, F', 3, h, w)
        repeats = [1] + [4] * (rgb.shape[1] - 1)
        rgb = rgb.repeat_interleave(torch.tensor(repeats, device=rgb.device), dim=1)
        return rgb.repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2).contiguous()

    def build_dataset(self, config: ResolvedConfig) -> TinyFlowDataset:
        return TinyFlowDataset(config.tinyflow_num_samples, self.traits.latent_channels, config.tinyflow_classes,
                               config.seed)

