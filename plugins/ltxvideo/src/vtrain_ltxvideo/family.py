"""The ``ltxvideo`` family object (follows :class:`vtrain.family.ModelFamily`,
:class:`vtrain.family.HiddenStateCapture` and :class:`vtrain.family.VelocityPredictor`). Each step lives in its own module; this class wires them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.family import FamilyDefault, FamilyTraits
from vtrain_ltxvideo.options import FAMILY, RECOMMENDED_DEFAULTS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import Artifact, LossOutput, ModelBundle, TrainState

DEFAULT_FPS = 25
DEFAULT_TEXT_LENGTH = 128
# Kept in full precision when the base model is quantised: patch embedding, timestep and caption
# projections, the output projection and every norm (sensitive to rounding, and small).
QUANTIZATION_EXCLUSIONS = ("proj_in", "proj_out", "time_embed", "caption_projection", "*norm*")
# Self-attention gets no mask; the cross-attention (attn2) always gets the prompt's padding mask.
UNMASKED_ATTENTION = ("transformer_blocks.*.attn1",)


def batch_fps(batch: dict[str, Any], default: float) -> float:
    """The frame rate for the rope scale: the batch's clips' (from the data layer), else ``default``.

    diffusers takes one rope scale per call, so a batch uses its first sample's rate.
    """
    fps = batch.get("fps")
    if fps is None:
        return default
    value = float(fps.reshape(-1)[0])
    return value if value > 0 else default


class LTXVideoFamily:
    """LTX-Video: T5 text encoder, causal video VAE (32x spatial, 8x temporal), flow-matching DiT."""

    name = FAMILY

    def __init__(self) -> None:
        # latent_channels is 128 for the published VAE; load_model refreshes it from the loaded VAE.
        self.traits = self._traits(128)
        self._settings_cache: dict[tuple[Any, ...], tuple[dict[str, Any], tuple[int, int]]] = {}

    @staticmethod
    def _traits(latent_channels: int, i2v_default: bool = True) -> FamilyTraits:
        defaults = tuple(FamilyDefault(unless_set=keys, values=values, reason=reason)
                         for keys, values, reason in RECOMMENDED_DEFAULTS)
        return FamilyTraits(frame_factor=8, frame_offset=1, spatial_alignment=32, latent_channels=latent_channels,
                            supports_masked_loss=False, default_fps=DEFAULT_FPS, text_max_length=DEFAULT_TEXT_LENGTH,
                            i2v_default=i2v_default, quantization_exclusions=QUANTIZATION_EXCLUSIONS,
                            unmasked_attention=UNMASKED_ATTENTION, recommended_defaults=defaults,
                            repeated_block_classes=("LTXVideoTransformerBlock",), empty_weight_loading=True,
                            dataset_validation=True)

    # -- loading -------------------------------------------------------------------------------

    def load_model(self, config: ResolvedConfig) -> ModelBundle:
        from vtrain.family import ModelBundle, base_dtype_name
        from vtrain_ltxvideo import loading

        dtype = loading.torch_dtype(base_dtype_name(config))
        transformer = loading.load_transformer(config, dtype)
        vae = loading.load_vae(config, dtype)
        tokenizer, text_encoder = loading.load_text_encoder(config, dtype)
        scheduler = loading.load_scheduler(config)
        for module in (transformer, vae, text_encoder):
            module.requires_grad_(False)
        vae.eval()
        text_encoder.eval()
        self.traits = self._traits(int(vae.config.latent_channels), i2v_default=config.ltx_train_mode == "i2v")
        for switch, enable in (("vae_enable_slicing", vae.enable_slicing), ("vae_enable_tiling", vae.enable_tiling)):
            if config[switch]:
                enable()
        meta = {
            "dtype": str(dtype),
            "compute_dtype": dtype,
            "patch_size": int(transformer.config.patch_size),
            "patch_size_t": int(transformer.config.patch_size_t),
            "spatial_compression": int(vae.spatial_compression_ratio),
            "temporal_compression": int(vae.temporal_compression_ratio),
            "latent_channels": int(vae.config.latent_channels),
            "scaling_factor": float(vae.config.scaling_factor),
            "source": config.pretrained_model_name_or_path,
            "temporal_positions": loading.temporal_positions(config, vae),
            "cache_identity": {"vae": "posterior mean+std"},  # caches from before latents_std are rebuilt
        }
        return ModelBundle(family=FAMILY, model=transformer, noise_scheduler=scheduler, meta=meta,
                           components={"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer})

    def add_adapters(self, bundle: ModelBundle, config: ResolvedConfig) -> None:
        from vtrain_ltxvideo.adapters import add_adapters

        add_adapters(bundle, config)

    # -- data ----------------------------------------------------------------------------------

    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        """``pixels`` -> ``latents`` (B, C, F', H', W'); ``captions`` -> ``prompt_embeds``, ``prompt_attention_mask``."""
        from vtrain_ltxvideo.encoding import encode_captions, encode_posterior

        out: dict[str, Any] = {}
        pixels = batch.get("pixels")
        if pixels is not None:  # both are cached; vae_latent_sampling decides at training time
            out["latents"], out["latents_std"] = encode_posterior(bundle, pixels)
        captions = batch.get("captions")
        if captions is not None:
            out.update(encode_captions(bundle, list(captions), config.tokenizer_max_length))
        return out

    # -- the objective -------------------------------------------------------------------------

    def _model_settings(self, config: ResolvedConfig) -> tuple[dict[str, Any], tuple[int, int]]:
        """(scheduler settings, (patch_size, patch_size_t)) read from the config files, cached per model."""
        key = (config.pretrained_model_name_or_path, config.pretrained_transformer_model_name_or_path,
               config.pretrained_transformer_subfolder)
        if key not in self._settings_cache:
            from vtrain_ltxvideo import loading

            self._settings_cache[key] = (loading.scheduler_settings(config), loading.transformer_patch_sizes(config))
        return self._settings_cache[key]

    def latent_tokens(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> int:
        """Transformer tokens of a latent sample ``(C, F', H', W')`` with this model's patch sizes."""
        _, (patch, patch_t) = self._model_settings(config)
        frames, height, width = sample_shape[-3:]
        return (frames // patch_t) * (height // patch) * (width // patch)

    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        """``flow_schedule_shift``, or with ``flow_schedule_auto_shift`` exp(mu) from the token count and the
        scheduler's base/max shift settings (what the pipeline's dynamic shifting uses at inference)."""
        if not config.flow_schedule_auto_shift:
            return config.flow_schedule_shift
        from vtrain.flow_matching import resolution_shift

        settings, _ = self._model_settings(config)
        return resolution_shift(self.latent_tokens(config, sample_shape),
                                base_seq_len=int(settings.get("base_image_seq_len", 256)),
                                max_seq_len=int(settings.get("max_image_seq_len", 4096)),
                                base_shift=float(settings.get("base_shift", 0.5)),
                                max_shift=float(settings.get("max_shift", 1.15)))

    def compute_loss(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                     state: TrainState) -> LossOutput:
        from vtrain_ltxvideo.loss import flow_matching_loss

        return flow_matching_loss(bundle, batch, config, state, self.schedule_shift, fps=batch_fps(batch, self.traits.default_fps))

    # -- outputs -------------------------------------------------------------------------------

    def read_lora(self, source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
        """A published LoRA for validation (:class:`vtrain.family.LoraReader`)."""
        from vtrain_ltxvideo.adapters import read_lora

        return read_lora(source, weight_name)

    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int,
                 prompts: Mapping[str, str]) -> list[Artifact]:
        from vtrain_ltxvideo.validation import render_videos

        return render_videos(bundle, config, step, prompts, fps=self.traits.default_fps)

    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        from vtrain_ltxvideo.saving import save_model

        return save_model(bundle, config, Path(output_dir))

    # -- capabilities --------------------------------------------------------------------------

    def capture_hidden_states(self, bundle: ModelBundle, block_index: int) -> AbstractContextManager[Any]:
        """Inside the context, the training forward stores block ``block_index``'s output as
        ``(batch, latent_frames, tokens_per_frame, dim)`` in ``captured.hidden_states``."""
        from vtrain_ltxvideo.capture import capture_hidden_states

        return capture_hidden_states(bundle, block_index)

    def hidden_state_width(self, bundle: ModelBundle, block_index: int) -> int:
        """The ``dim`` of the captured hidden states (every block has the transformer's inner width)."""
        from vtrain_ltxvideo.decoding import hidden_state_width

        return hidden_state_width(bundle)

    def preview_decoder(self, bundle: ModelBundle, config: ResolvedConfig) -> Any:
        """:class:`vtrain.family.PreviewDecoder`: the first latent frame through the VAE decoder.

        No public tiny autoencoder exists for LTX-Video 0.9.x latents (TAEHV covers LTX-2, whose
        latents differ), so previews decode one latent frame, the cheapest exact decode:
        latents (B, C, F', H', W') -> pixels (B, 1, 3, 32H', 32W') in [0, 1].
        """
        from vtrain_ltxvideo.decoding import decode_latents

        return lambda latents: decode_latents(bundle, latents[:, :, :1])[:, :1]

    def decode_latents(self, bundle: ModelBundle, latents: Any) -> Any:
        """:class:`vtrain.family.LatentDecoder`: clean latents -> (B, 8k+1, 3, H, W) pixels in [0, 1] via the VAE."""
        from vtrain_ltxvideo.decoding import decode_latents

        return decode_latents(bundle, latents)

    def draw_flow_inputs(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                         state: TrainState) -> dict[str, Any]:
        """:class:`vtrain.family.VelocityPredictor`: ``sigmas``, ``noise`` and ``i2v_mask``, drawn as the loss does."""
        from vtrain_ltxvideo.velocity import draw_flow_inputs

        return draw_flow_inputs(bundle, batch, config, state, self.schedule_shift)

    def fixed_condition_mask(self, bundle: ModelBundle, batch: dict[str, Any]) -> Any:
        """:class:`vtrain.family.VelocityPredictor`: 1 on the clean image-to-video first latent frame."""
        from vtrain_ltxvideo.velocity import fixed_condition_mask

        return fixed_condition_mask(batch)

    def predict_velocity(self, bundle: ModelBundle, batch: dict[str, Any], noisy_latents: Any, sigmas: Any) -> Any:
        """:class:`vtrain.family.VelocityPredictor`: the transformer's velocity, shaped like the latents."""
        from vtrain_ltxvideo.velocity import predict_velocity

        return predict_velocity(bundle, batch, noisy_latents, sigmas, fps=batch_fps(batch, self.traits.default_fps))

    def token_routing_blocks(self, bundle: ModelBundle) -> Sequence[Any]:
        """:class:`vtrain.family.TokenRouting`: the transformer's ``transformer_blocks``."""
        from vtrain_ltxvideo.routing import routing_blocks

        return routing_blocks(bundle)

    def block_tokens(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """:class:`vtrain.family.TokenRouting`: the block's ``hidden_states`` (B, S, D)."""
        from vtrain_ltxvideo.routing import block_tokens

        return block_tokens(block, args, kwargs)

    def subset_block_inputs(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                            take: Callable[[Any, int], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """:class:`vtrain.family.TokenRouting`: hidden states, per-token ``temb`` and the rotary pair cut down."""
        from vtrain_ltxvideo.routing import subset_block_inputs

        return subset_block_inputs(block, args, kwargs, take)

    def replace_block_tokens(self, block: Any, output: Any, replace: Callable[[Any], Any]) -> Any:
        """:class:`vtrain.family.TokenRouting`: the block returns the hidden states alone."""
        from vtrain_ltxvideo.routing import replace_block_tokens

        return replace_block_tokens(output, replace)
