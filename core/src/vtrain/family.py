"""The typed objects that cross the hook contract: model families, bundles, losses, artifacts.

Nothing here imports torch at module level, so the CLI can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig


def base_dtype_name(config: Any) -> str:
    """``base_model_default_dtype``, or when unset bf16 with a CUDA device and fp32 without one
    (``Runner.run`` fills it in the same way before loading; this covers direct family calls)."""
    if config.base_model_default_dtype:
        return str(config.base_model_default_dtype)
    import torch

    return "bf16" if torch.cuda.is_available() else "fp32"


@dataclass(frozen=True)
class FamilyDefault:
    """A family's recommended values for a group of keys (the reference trainers' defaults).

    They apply when the config sets none of ``unless_set`` (so SimpleTuner's keys are still read
    exactly when given) and are shown by ``vtrain config show`` as ``family default (<family>)``.

    :param unless_set: the keys whose explicit setting keeps the registry defaults.
    :param values: key -> value to use instead.
    :param reason: why (one phrase, for the summary and the docs).
    """

    unless_set: tuple[str, ...]
    values: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class FamilyTraits:
    """What the model-agnostic core and data layer need to know about a family.

    :param frame_factor: valid frame counts are ``frame_factor * k + frame_offset`` (8k+1 for
        LTX-Video); 1 and 0 mean "any count".
    :param frame_offset: see ``frame_factor``.
    :param spatial_alignment: pixel sizes are rounded to a multiple of this (32 for LTX-Video).
    :param latent_channels: channels of the latents the family trains on.
    :param supports_masked_loss: whether a mask-weighted loss is meaningful for this family.
    :param default_fps: the frame rate validation videos are written at.
    :param text_max_length: default maximum text-token length for the family's text encoder.
    :param quantization_exclusions: module-name patterns of the denoiser that keep full precision
        when the base model is quantised (norms, embeddings, input/output projections). ``fnmatch``
        patterns; a pattern also covers the modules below the one it names.
    :param dataset_validation: ``validate`` takes its conditioning (an i2v first frame) from
        ``bundle.meta["validation_samples"]`` (samples of the ``eval_dataset_id`` dataset, or of the
        training data) when ``validation_using_datasets`` is set.
    :param i2v_default: whether video datasets train image-to-video (first frame as condition)
        when their ``video.is_i2v`` is not set.
    :param repeated_block_classes: class names of the denoiser's repeated transformer block; sharded
        training (FSDP2) shards each such block as one unit (``fsdp_transformer_layer_cls_to_wrap``'s default).
    :param empty_weight_loading: whether ``load_model`` builds the denoiser without reading its weights
        (parameters on the meta device, buffers computed) when
        :func:`vtrain.fsdp_options.reads_weights` is false, so only rank 0 reads them
        (``fsdp_cpu_ram_efficient_loading``). Frozen components (VAE, text encoder) load as usual.
    :param recommended_defaults: :class:`FamilyDefault` groups applied to configs that leave
        those keys unset.
    :param audio_sample_rate: a family that generates sound sets the rate its audio encoder takes;
        the data layer then reads each clip's audio stream, resampled to this rate and aligned to
        the frames used, and hands it to ``encode_batch`` as ``audio``. 0: the family takes no audio.
    :param audio_channels: channels of that audio (1 mono, 2 stereo).
    :param unmasked_attention: module-name patterns (``fnmatch``) of the denoiser's attention layers
        that never receive an attention mask (self-attention). Attention kernels that refuse a mask
        (flash, sage) may run there; every other attention layer keeps a backend that takes one.
    :param aliases: other names ``model_family`` accepts for this family (another trainer's name for
        it, such as SimpleTuner's ``ltxvideo2``); the config is read as if the family's own name were given.
    :param simpletuner_sections: SimpleTuner settings sections that belong to this family (``ltxvideo2``):
        their keys are this family's SimpleTuner settings, not another family's, when it is selected.
    :param simpletuner_refusals: SimpleTuner key -> what to use instead, for SimpleTuner settings of this
        family that vtrain expresses with other keys (refused with that fix when set to a non-default value).
    """

    frame_factor: int = 1
    frame_offset: int = 0
    spatial_alignment: int = 1
    latent_channels: int = 4
    supports_masked_loss: bool = True
    default_fps: int = 24
    text_max_length: int = 0
    quantization_exclusions: tuple[str, ...] = ()
    i2v_default: bool = False
    dataset_validation: bool = False
    repeated_block_classes: tuple[str, ...] = ()
    empty_weight_loading: bool = False
    recommended_defaults: tuple[FamilyDefault, ...] = ()
    audio_sample_rate: int = 0
    audio_channels: int = 0
    unmasked_attention: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    simpletuner_sections: tuple[str, ...] = ()
    simpletuner_refusals: Mapping[str, str] = field(default_factory=dict)


def family_aliases(families: Mapping[str, Any]) -> dict[str, str]:
    """alias -> family name, from the ``traits.aliases`` of each registered family (a name wins over an alias)."""
    table: dict[str, str] = {}
    for name, family in families.items():
        for alias in getattr(getattr(family, "traits", None), "aliases", ()) or ():
            if alias not in families:
                table.setdefault(alias, name)
    return table


@dataclass
class ModelBundle:
    """Everything a loaded model consists of.

    :param family: the family name.
    :param model: the denoiser being trained (the module adapters attach to).
    :param components: frozen parts by name (``vae``, ``text_encoder``, ``tokenizer`` ...).
    :param noise_scheduler: the family's noise scheduler object (diffusers or its own).
    :param extra_trainables: further trainable modules owned by plugins (a regulariser's
        projection head, say). They are optimised and checkpointed with the model, and saved
        beside (not inside) the final adapter.
    :param meta: free-form facts (dtype, latent scaling, paths) for summaries and plugins.
    :param runtime_model: the distributed wrapper around ``model`` (set by the runner; ``None``
        before preparation). Call :meth:`forward_model` rather than reading it.
    """

    family: str
    model: Any
    components: dict[str, Any] = field(default_factory=dict)
    noise_scheduler: Any = None
    extra_trainables: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    runtime_model: Any = None

    def forward_model(self) -> Any:
        """The module to call in the training forward (the distributed wrapper when there is one)."""
        return self.runtime_model if self.runtime_model is not None else self.model

    def trainable_named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Every trainable parameter, with a stable name (``model.`` or ``<extra name>.`` prefixed)."""
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                yield f"model.{name}", param
        for key in sorted(self.extra_trainables):
            for name, param in self.extra_trainables[key].named_parameters():
                if param.requires_grad:
                    yield f"{key}.{name}", param

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) parameter counts over the model and the extra trainables."""
        total = sum(p.numel() for p in self.model.parameters())
        total += sum(p.numel() for m in self.extra_trainables.values() for p in m.parameters())
        trainable = sum(p.numel() for _, p in self.trainable_named_parameters())
        return total, trainable


@dataclass
class LossOutput:
    """What ``compute_loss`` returns: the total to back-propagate and its named terms.

    Wrappers add terms with :meth:`add_term`; the total is kept equal to the sum of the terms.
    ``metrics`` are logged but not optimised (alignment scores, timestep statistics ...); a metric may be a
    detached 0-dim tensor, which the loop reads after the backward pass (no device sync inside the step).
    ``prediction`` is the model's output in the latents' layout, with its graph, when the family
    offers it (:class:`VelocityPredictor` families do), so a wrapper can add a term on it.

    :param loss: the scalar to back-propagate (the sum of ``terms``).
    :param terms: named parts of the loss; each is logged as ``loss/<name>``.
    :param metrics: numbers (or detached 0-dim tensors) logged under their own names (``sigma_mean`` ...),
        not optimised.
    :param prediction: the model's output (latents' layout, with its graph), or ``None``.
    :param predictions: for a :class:`MultiStreamVelocityPredictor` family, the output for each generated
        :class:`LatentStream` by name (each in its stream's layout, with its graph); ``prediction`` is then the
        first stream's.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    prediction: torch.Tensor | None = None
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)

    def add_term(self, name: str, value: torch.Tensor) -> None:
        """Add ``value`` to the loss as the term ``name`` (logged as ``loss/<name>``); a name is used once."""
        if name in self.terms:
            raise ValueError(f"loss term {name!r} is already present")
        self.terms[name] = value
        self.loss = self.loss + value


@dataclass(frozen=True)
class Artifact:
    """A file a run produced (a validation video, an image, a sample tensor) and what it shows.

    :param path: the file.
    :param kind: ``video``, ``image``, ``latents`` ...
    :param meta: what the producer knows about it (``prompt``, ``step``, ``width``, ``height`` ...).
    """

    path: Path
    kind: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    """The loop's position, handed to hooks that need to know where the run is.

    :param step: optimizer updates done so far.
    :param epoch: the current epoch (0-based).
    :param batch_in_epoch: batches of this epoch consumed so far (this rank's view).
    :param max_steps: the planned number of updates.
    :param shift_for: ``shift_for(sample_shape)`` asks the ``schedule_shift`` hook for the
        timestep shift of a latent sample, so any plugin can override a family's shift.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    max_steps: int = 0
    shift_for: Any = None


@runtime_checkable
class ModelFamily(Protocol):
    """A model family: how to load, encode, train, validate and save one kind of model.

    Families are registered through ``register_families``. The core's default implementations
    of the ``load_model`` .. ``save_model`` hooks delegate to the selected family, so another
    plugin can override or wrap any step without the family knowing.
    """

    name: str
    traits: FamilyTraits

    def load_model(self, config: ResolvedConfig) -> ModelBundle:
        """Load every part of the model (frozen, on CPU or per ``config``) and return the bundle."""

    def add_adapters(self, bundle: ModelBundle, config: ResolvedConfig) -> None:
        """Make the trainable part trainable: attach LoRA/LyCORIS, or unfreeze for full training."""

    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        """Turn raw pixels and captions into what ``compute_loss`` consumes (latents, embeddings)."""

    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        """The timestep shift for a latent sample of this shape (``None``: no shift)."""

    def compute_loss(
        self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState
    ) -> LossOutput:
        """The training objective for one batch."""

    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> list[Artifact]:
        """Generate validation media for ``prompts`` (nickname -> prompt) into ``output_dir``."""

    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        """Write the trained adapter or model in a format other tools load; return the paths."""


@runtime_checkable
class HiddenStateCapture(Protocol):
    """Optional family capability: capture the hidden states of one transformer block.

    Used by regularisers such as CREPA. Inside the context, each training forward stores the
    output of block ``block_index`` in ``captured.hidden_states`` as ``(batch, frames, tokens_per_frame, dim)``.
    A family may also set ``captured.grid = (frames, height, width)`` (the token grid of one sample);
    without it, users infer the grid from the latents' aspect ratio.

    Families offering it should also offer ``hidden_state_width(bundle, block_index) -> int`` (the
    ``dim`` above), so a plugin can build a projection head before the optimizer exists.
    """

    def capture_hidden_states(self, bundle: ModelBundle, block_index: int) -> AbstractContextManager[Any]: ...


@runtime_checkable
class LatentDecoder(Protocol):
    """Optional family capability: decode clean latents back to pixel frames.

    ``decode_latents(bundle, latents)`` takes latents as ``encode_batch`` returns them,
    ``(batch, channels, latent_frames, height, width)``, and returns pixel frames
    ``(batch, frames, 3, H, W)`` in [0, 1] with ``frames`` following the family's
    ``traits`` (``frame_factor * (latent_frames - 1) + frame_offset`` for a causal video VAE).
    Used by regularisers such as CREPA that compare the model with an image encoder.
    """

    def decode_latents(self, bundle: ModelBundle, latents: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class PreviewDecoder(Protocol):
    """Optional family capability: a cheap decoder for intermediate validation previews."""

    def preview_decoder(self, bundle: ModelBundle, config: ResolvedConfig) -> Any: ...


@runtime_checkable
class LoraReader(Protocol):
    """Optional family capability: read a published LoRA for the denoiser (used by validation adapters).

    ``read_lora(source, weight_name)`` takes a local file, a local folder or a hub repo id (with
    ``weight_name`` the file inside it, or None for the format's default name), converts the
    family's published layouts (diffusers, ComfyUI / original checkpoints) and returns
    ``(state_dict, alpha)``: peft-style keys relative to ``bundle.model``
    (``<module>.lora_A.weight`` / ``<module>.lora_B.weight``) and the adapter's ``lora_alpha``
    (None: alpha equals the rank, that is scale 1, or alpha is already folded into the weights).
    """

    def read_lora(self, source: str, weight_name: str | None) -> tuple[dict[str, torch.Tensor], float | None]: ...


@runtime_checkable
class VelocityPredictor(Protocol):
    """Optional family capability: the flow-matching velocity for given inputs (used by rollout).

    A family offering it also honours, in ``compute_loss``, the batch keys it returns from
    ``draw_flow_inputs`` (used as given, nothing redrawn) and two more optional keys:
    ``noisy_latents`` (the model input x_t, shaped like the latents, used instead of interpolating
    latents and noise; fixed conditions are still made clean; the target stays ``noise - latents``)
    and ``loss_weight`` (a per-element weight on the squared error, broadcastable to the latents).
    Its :class:`LossOutput` carries ``prediction``.
    """

    def draw_flow_inputs(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                         state: TrainState) -> dict[str, Any]:
        """Draw this step's random training inputs exactly as ``compute_loss`` would (same RNG calls, same
        order) and return them as batch keys: ``sigmas`` ``(B,)``, ``noise`` (latent-shaped) and the
        family's own (which samples keep a clean condition ...)."""

    def fixed_condition_mask(self, bundle: ModelBundle, batch: dict[str, Any]) -> torch.Tensor | None:
        """For a batch holding ``draw_flow_inputs``' keys: 1 where the latents are a fixed clean condition
        (an image-to-video first frame), 0 elsewhere, broadcastable to the latents; ``None`` when nothing is."""

    def predict_velocity(self, bundle: ModelBundle, batch: dict[str, Any], noisy_latents: torch.Tensor,
                         sigmas: torch.Tensor) -> torch.Tensor:
        """The model's velocity (``noise - latents``) for ``noisy_latents`` at ``sigmas`` ``(B,)``, with the
        batch's conditioning, shaped like the latents, in float32. Fixed conditions are made clean in the
        input as in training. Calls the unwrapped model (no distributed collectives), so ranks may call it
        different numbers of times."""


@runtime_checkable
class TokenRouting(Protocol):
    """Optional family capability: run only a subset of the denoiser's tokens through some of its blocks.

    Used by token routers such as TREAD. The router hooks blocks of
    ``token_routing_blocks``; for a routed block call it reads the routed token sequence with
    ``block_tokens``, lets ``subset_block_inputs`` cut that sequence and every token-aligned side input
    (rotary positions, per-token modulation, attention masks over those tokens) to the kept tokens, and
    after the block writes the kept tokens' outputs back into the full sequence with
    ``replace_block_tokens``. Tokens a block skips keep their hidden states. A family routes one token
    sequence (LTX-2: the video stream; the audio stream is left whole).

    Blocks may be called with positional arguments (gradient checkpointing) or keywords; the family
    handles both and returns arguments in a form the block accepts.
    """

    def token_routing_blocks(self, bundle: ModelBundle) -> Sequence[Any]:
        """The denoiser's repeated blocks in call order; a route's block indices count in this list."""

    def block_tokens(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """The routed token sequence ``(batch, tokens, width)`` among one block call's arguments."""

    def subset_block_inputs(self, block: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                            take: Callable[[torch.Tensor, int], torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's ``(args, kwargs)`` with the routed sequence and its token-aligned inputs cut down.

        ``take(tensor, dim)`` keeps the kept tokens' entries along ``dim``; a tensor whose ``dim`` is not the
        full token count (a per-sample modulation of size 1, say) comes back unchanged.
        """

    def replace_block_tokens(self, block: Any, output: Any,
                             replace: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        """The block's ``output`` with its routed token sequence ``t`` replaced by ``replace(t)``."""


@dataclass(frozen=True)
class LatentStream:
    """One latent tensor a flow-matching loss noises and regresses a velocity on (a clip's video, its audio),
    and the batch keys that carry it. All streams of a sample share its sigma.

    :param name: the stream's name (``video``, ``audio``); keys :attr:`LossOutput.predictions`.
    :param latents: batch key of the clean latents.
    :param noise: batch key of the noise (``draw_flow_inputs`` returns it).
    :param noisy_latents: batch key of a given model input x_t (used instead of interpolating latents and noise).
    :param loss_weight: batch key of a per-element weight on the squared error (broadcastable to the latents).
    """

    name: str
    latents: str
    noise: str
    noisy_latents: str
    loss_weight: str


@runtime_checkable
class MultiStreamVelocityPredictor(Protocol):
    """Optional family capability: :class:`VelocityPredictor` for a loss over several latent streams (LTX-2's
    video and audio, denoised together with one sigma per sample). Rollout uses whichever of the two a family offers.

    ``compute_loss`` honours ``draw_flow_inputs``' keys (used as given) and, for each stream, its
    ``noisy_latents`` key (fixed conditions still made clean; the target stays ``noise - latents``) and its
    ``loss_weight`` key; its :class:`LossOutput` carries ``predictions`` by stream name.
    A stream the batch does not generate (absent, or kept clean as a condition) is not listed and stays clean.
    """

    def latent_streams(self, bundle: ModelBundle, batch: dict[str, Any],
                       config: ResolvedConfig) -> tuple[LatentStream, ...]:
        """The streams this batch generates (noised, in the loss), in a fixed order."""

    def draw_flow_inputs(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                         state: TrainState) -> dict[str, Any]:
        """As :meth:`VelocityPredictor.draw_flow_inputs`: ``sigmas`` ``(B,)``, each listed stream's noise under
        its ``noise`` key, and the family's own keys, drawn exactly as ``compute_loss`` would."""

    def stream_condition_masks(self, bundle: ModelBundle, batch: dict[str, Any],
                               config: ResolvedConfig) -> dict[str, torch.Tensor]:
        """For a batch holding ``draw_flow_inputs``' keys: per stream name, 1 where its latents are a fixed clean
        condition, broadcastable to them; a stream without any is left out."""

    def predict_stream_velocities(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                                  noisy_latents: Mapping[str, torch.Tensor],
                                  sigmas: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each listed stream's velocity for the inputs ``noisy_latents`` (by stream name) at ``sigmas`` ``(B,)``,
        float32 in the stream's layout; otherwise as :meth:`VelocityPredictor.predict_velocity`."""
