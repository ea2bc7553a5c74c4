"""The ``ltx2`` family object (follows :class:`vtrain.family.ModelFamily`, :class:`~vtrain.family.HiddenStateCapture`,
:class:`~vtrain.family.LatentDecoder`, :class:`~vtrain.family.TokenRouting` and
:class:`~vtrain.family.MultiStreamVelocityPredictor`). Each step lives in its own module; this class wires them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.family import FamilyTraits
from vtrain_ltx2.options import FAMILY
from vtrain_ltx2.simpletuner import SIMPLETUNER_REFUSALS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import Artifact, LossOutput, ModelBundle, TrainState

SIMPLETUNER_NAMES = ("ltxvideo2",)  # SimpleTuner's model_family for LTX-2, and its settings section
DEFAULT_FPS = 24  # LTX2Pipeline's frame_rate default
DEFAULT_TEXT_LENGTH = 1024
# Full precision when the base model is quantised: input/output projections of both streams, every
# timestep/prompt modulation (adaLN) and the audio-video cross-attention modulation, the 2.3 attention
# gates and the norms: small, and sensitive to rounding.
QUANTIZATION_EXCLUSIONS = ("proj_in", "proj_out", "audio_proj_in", "audio_proj_out", "*time_embed*", "*prompt_adaln*",
                           "av_cross_attn_*", "*caption_projection*", "*to_gate_logits", "*norm*")


class LTX2Family:
    """LTX-2 / 2.3 / 2.5: Gemma text encoder + connectors, video VAE (32x, 8x), audio VAE + vocoder, audio-video DiT."""

    name = FAMILY

    def __init__(self) -> None:
        self.traits = self._traits(128, 16000, 2)
        self._settings: dict[Any, dict[str, Any]] = {}

    @staticmethod
    def _traits(latent_channels: int, sample_rate: int, channels: int) -> FamilyTraits:
        return FamilyTraits(frame_factor=8, frame_offset=1, spatial_alignment=32, latent_channels=latent_channels,
                            supports_masked_loss=False, default_fps=DEFAULT_FPS, text_max_length=DEFAULT_TEXT_LENGTH,
                            quantization_exclusions=QUANTIZATION_EXCLUSIONS, i2v_default=False,
                            dataset_validation=True, audio_sample_rate=sample_rate, audio_channels=channels,
                            repeated_block_classes=("LTX2VideoTransformerBlock",),
                            aliases=SIMPLETUNER_NAMES, simpletuner_sections=SIMPLETUNER_NAMES,
                            simpletuner_refusals=SIMPLETUNER_REFUSALS)

    # -- loading -------------------------------------------------------------------------------

    def load_model(self, config: ResolvedConfig) -> ModelBundle:
        from vtrain.family import ModelBundle, base_dtype_name
        from vtrain.vae_memory import apply_vae_memory, note_once
        from vtrain_ltx2 import loading
        from vtrain_ltx2.flavours import check_version
        from vtrain_ltx2.flavours import describe as describe_source

        dtype = loading.torch_dtype(base_dtype_name(config))
        transformer = loading.load_transformer(config, dtype)
        vae = loading.load_vae(config, dtype)
        audio_vae = loading.load_audio_vae(config, dtype)
        vocoder = loading.load_vocoder(config, dtype)
        connectors = loading.load_connectors(config, dtype)
        tokenizer, text_encoder = loading.load_text_encoder(config, dtype)
        scheduler = loading.load_scheduler(config)
        note_once(config, [*apply_vae_memory(vae, config, "video VAE"), *apply_vae_memory(audio_vae, config, "audio VAE")])
        for module in (transformer, vae, audio_vae, vocoder, connectors, text_encoder):
            module.requires_grad_(False)
            if module is not transformer:
                module.eval()
        layout = loading.detect_layout(transformer, connectors, vocoder)
        source = loading.base_source(config)
        if config.get("model_flavour"):
            check_version(source.flavour, layout.variant, source)
        self.traits = self._traits(int(vae.config.latent_channels), int(audio_vae.config.sample_rate),
                                   int(audio_vae.config.in_channels))
        meta = {"dtype": str(dtype), "compute_dtype": dtype, "layout": layout, "variant": layout.variant,
                "spatial_compression": int(vae.spatial_compression_ratio),
                "temporal_compression": int(vae.temporal_compression_ratio),
                "latent_channels": int(vae.config.latent_channels), "source": source.checkpoint or source.base,
                "flavour": describe_source(source) if config.get("model_flavour") or source.checkpoint else None,
                "audio_sample_rate": int(audio_vae.config.sample_rate),
                # the keys that change cached latents / text embeddings besides the core's identity keys
                "cache_identity": {"vae": {key: str(config.get(key)) for key in ("ltx2_vae_path", "ltx2_audio_vae_path")},
                                   "text": {key: str(config.get(key)) for key in ("ltx2_text_encoder_path",
                                                                                  "ltx2_text_max_length")}}}
        # "text_encoder_connectors": the connectors belong to text encoding, so offload_during_startup moves
        # them with the Gemma encoder (the data layer treats text_encoder* components as one phase)
        components = {"vae": vae, "audio_vae": audio_vae, "vocoder": vocoder, "text_encoder_connectors": connectors,
                      "text_encoder": text_encoder, "tokenizer": tokenizer}
        return ModelBundle(family=FAMILY, model=transformer, noise_scheduler=scheduler, meta=meta, components=components)

    def add_adapters(self, bundle: ModelBundle, config: ResolvedConfig) -> None:
        from vtrain_ltx2.adapters import add_adapters

        add_adapters(bundle, config)

    # -- data ----------------------------------------------------------------------------------

    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        """``pixels`` -> ``latents``; ``audio`` -> ``audio_latents``; ``reference_pixels`` -> ``reference_latents``;
        ``captions`` -> ``video_prompt_embeds``, ``audio_prompt_embeds``, ``prompt_attention_mask``."""
        from vtrain_ltx2 import encoding

        out: dict[str, Any] = {}
        if batch.get("pixels") is not None:
            out["latents"] = encoding.encode_pixels(bundle, batch["pixels"])
        if batch.get("reference_pixels") is not None:
            out["reference_latents"] = encoding.encode_pixels(bundle, batch["reference_pixels"])
        if batch.get("audio") is not None:
            out["audio_latents"] = encoding.encode_audio(bundle, batch["audio"])
        if batch.get("captions") is not None:
            out.update(encoding.encode_captions(bundle, list(batch["captions"]), config.ltx2_text_max_length))
        return out

    # -- the objective -------------------------------------------------------------------------

    def _scheduler_settings(self, config: ResolvedConfig) -> dict[str, Any]:
        from vtrain_ltx2.loading import _subfolder, base_source

        key = base_source(config).base
        if key not in self._settings:
            from diffusers import FlowMatchEulerDiscreteScheduler

            self._settings[key] = dict(FlowMatchEulerDiscreteScheduler.load_config(
                str(key), subfolder=_subfolder(str(key), "scheduler")))
        return self._settings[key]

    @staticmethod
    def latent_tokens(sample_shape: tuple[int, ...]) -> int:
        """Transformer tokens of a video sample ``(C, F', H', W')`` (patch size 1) or an audio one ``(L, D)``."""
        if len(sample_shape) >= 4:
            frames, height, width = sample_shape[-3:]
            return int(frames * height * width)
        return int(sample_shape[0])

    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        """``flow_schedule_shift`` when set; otherwise exp(mu) of the pipeline's ``calculate_shift`` from the token
        count (LTX-2's scheduler always shifts dynamically, so training does too)."""
        if config.flow_schedule_shift is not None and not config.flow_schedule_auto_shift:
            return config.flow_schedule_shift
        from vtrain.flow_matching import resolution_shift

        settings = self._scheduler_settings(config)
        return resolution_shift(self.latent_tokens(sample_shape),
                                base_seq_len=int(settings.get("base_image_seq_len", 1024)),
                                max_seq_len=int(settings.get("max_image_seq_len", 4096)),
                                base_shift=float(settings.get("base_shift", 0.95)),
                                max_shift=float(settings.get("max_shift", 2.05)))

    def compute_loss(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                     state: TrainState) -> LossOutput:
        from vtrain_ltx2.loss import flow_matching_loss

        return flow_matching_loss(bundle, batch, config, state, self.schedule_shift, float(self.traits.default_fps))

    # -- outputs -------------------------------------------------------------------------------

    def read_lora(self, source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
        """A published LoRA for validation (:class:`vtrain.family.LoraReader`)."""
        from vtrain_ltx2.adapters import read_lora

        return read_lora(source, weight_name)

    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int,
                 prompts: Mapping[str, str]) -> list[Artifact]:
        from vtrain_ltx2.validation import render

        return render(bundle, config, step, prompts, fps=float(self.traits.default_fps))

    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        from vtrain_ltx2.saving import save_model

        return save_model(bundle, config, Path(output_dir))

    # -- capabilities --------------------------------------------------------------------------

    def capture_hidden_states(self, bundle: ModelBundle, block_index: int) -> AbstractContextManager[Any]:
        """The video stream of block ``block_index`` as ``(batch, latent_frames, tokens_per_frame, dim)``."""
        from vtrain_ltx2.capture import capture_hidden_states

        return capture_hidden_states(bundle, block_index)

    def hidden_state_width(self, bundle: ModelBundle, block_index: int) -> int:
        from vtrain_ltx2.decoding import hidden_state_width

        return hidden_state_width(bundle)

    def decode_latents(self, bundle: ModelBundle, latents: Any) -> Any:
        """:class:`vtrain.family.LatentDecoder`: clean video latents -> (B, 8k+1, 3, H, W) pixels in [0, 1]."""
        from vtrain_ltx2.decoding import decode_latents

        return decode_latents(bundle, latents)

    def token_routing_blocks(self, bundle: ModelBundle) -> Sequence[Any]:
        """:class:`vtrain.family.TokenRouting`: the transformer's ``transformer_blocks``."""
        from vtrain_ltx2.routing import routing_blocks

        return routing_blocks(bundle)

    def block_tokens(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """:class:`vtrain.family.TokenRouting`: the video stream's ``hidden_states`` (B, S, D)."""
        from vtrain_ltx2.routing import block_tokens

        return block_tokens(block, args, kwargs)

    def subset_block_inputs(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                            take: Callable[[Any, int], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """:class:`vtrain.family.TokenRouting`: video tokens, their modulations, rotary pairs and masks cut down."""
        from vtrain_ltx2.routing import subset_block_inputs

        return subset_block_inputs(block, args, kwargs, take)

    def replace_block_tokens(self, block: Any, output: Any, replace: Callable[[Any], Any]) -> Any:
        """:class:`vtrain.family.TokenRouting`: the block returns (video, audio); the video part is replaced."""
        from vtrain_ltx2.routing import replace_block_tokens

        return replace_block_tokens(output, replace)

    def latent_streams(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> Any:
        """:class:`vtrain.family.MultiStreamVelocityPredictor`: the generated streams (video, audio)."""
        from vtrain_ltx2.velocity import latent_streams

        return latent_streams(batch, config)

    def draw_flow_inputs(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                         state: TrainState) -> dict[str, Any]:
        """:class:`vtrain.family.MultiStreamVelocityPredictor`: the step's draws, as ``compute_loss`` makes them."""
        from vtrain_ltx2.velocity import draw_flow_inputs

        return draw_flow_inputs(bundle, batch, config, state, self.schedule_shift)

    def stream_condition_masks(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> Any:
        """:class:`vtrain.family.MultiStreamVelocityPredictor`: the video stream's clean condition frames."""
        from vtrain_ltx2.velocity import stream_condition_masks

        return stream_condition_masks(batch, config)

    def predict_stream_velocities(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                                  noisy_latents: Mapping[str, Any], sigmas: Any) -> dict[str, Any]:
        """:class:`vtrain.family.MultiStreamVelocityPredictor`: both streams' velocities (unwrapped model)."""
        from vtrain_ltx2.velocity import predict_stream_velocities

        return predict_stream_velocities(bundle, batch, config, noisy_latents, sigmas, float(self.traits.default_fps))
