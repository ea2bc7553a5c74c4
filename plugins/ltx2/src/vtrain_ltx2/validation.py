"""Validation media with diffusers' LTX-2 pipelines, assembled around the transformer being trained.

- text-to-audio+video (``LTX2Pipeline``) and image-to-video (``LTX2ImageToVideoPipeline``, with
  ``ltx2_validation_image``) write mp4 files with their AAC audio track (``diffusers.utils.encode_video``);
- IC-LoRA (``LTX2InContextPipeline``) conditions on the reference clip of the first training sample and
  writes the reference beside the output (side by side, same height);
- when the video modality is off (audio-only training) the audio is written as a wav file.

``validation_guidance`` > 1 turns on classifier-free guidance for both modalities; spatio-temporal and
modality-isolation guidance stay off (they need block indices of the real model), so one or two DiT
passes run per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltx2.audio_condition import audio_conditioned
from vtrain_ltx2.encoding import module_device

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import Artifact, ModelBundle

DEFAULT_FRAMES = 121  # the reference trainer's and pipeline's usual clip (about five seconds at 24 fps)
REFERENCE_LATENT = "ic_lora_reference_latents"


def parse_resolution(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def remember_reference(bundle: ModelBundle, dataset: Any) -> None:
    """Keep the first training sample's IC-LoRA reference latents for validation."""
    for index in range(min(len(dataset), 64)):
        sample = dataset[index]
        if "reference_latents" in sample:
            bundle.meta[REFERENCE_LATENT] = sample["reference_latents"].detach().cpu().clone()
            return


def _guidance(config: ResolvedConfig) -> dict[str, Any]:
    scale = float(config.validation_guidance)
    scale = scale if scale > 1 else 1.0
    return dict(guidance_scale=scale, audio_guidance_scale=scale, stg_scale=0.0, audio_stg_scale=0.0,
                modality_scale=1.0, audio_modality_scale=1.0, guidance_rescale=0.0, audio_guidance_rescale=0.0,
                spatio_temporal_guidance_blocks=None)


def build_pipeline(bundle: ModelBundle, kind: str) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2ImageToVideoPipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2InContextPipeline

    parts = bundle.components
    device = module_device(bundle.model)
    for name in ("vae", "audio_vae", "vocoder", "text_encoder", "text_encoder_connectors"):
        parts[name].to(device)
    cls = {"t2av": LTX2Pipeline, "i2v": LTX2ImageToVideoPipeline, "ic_lora": LTX2InContextPipeline}[kind]
    pipeline = cls(scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundle.noise_scheduler.config),
                   vae=parts["vae"], audio_vae=parts["audio_vae"], text_encoder=parts["text_encoder"],
                   tokenizer=parts["tokenizer"], connectors=parts["text_encoder_connectors"], transformer=bundle.model,
                   vocoder=parts["vocoder"])
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _reference_video(bundle: ModelBundle) -> Any | None:
    """The remembered reference latents decoded to frames (F, H, W, 3) float in [0, 1], or None."""
    from vtrain_ltx2.decoding import decode_latents

    latents = bundle.meta.get(REFERENCE_LATENT)
    if latents is None:
        return None
    frames = decode_latents(bundle, latents[None].to(module_device(bundle.model)))[0]  # (F, 3, H, W)
    return frames.permute(0, 2, 3, 1).float().cpu().numpy()


def render(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str],
           fps: float) -> list[Artifact]:
    """Render every prompt at every validation resolution; write ``<nickname>-<W>x<H>.mp4`` (or ``.wav``)."""
    import numpy as np
    import torch
    from PIL import Image

    from vtrain.family import Artifact

    model = bundle.model
    folder = Path(config.output_dir) / "validation" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    variant = bundle.meta.get("validation_variant")
    suffix = f"-{variant}" if variant else ""
    image = Image.open(config.ltx2_validation_image).convert("RGB") if config.ltx2_validation_image else None
    if image is None and config.get("validation_using_datasets"):
        image = dataset_first_frame(bundle)
    reference = _reference_video(bundle) if config.ltx2_ic_lora else None
    kind = "ic_lora" if reference is not None else ("i2v" if image is not None else "t2av")
    audio_only = config.ltx2_video == "off"
    pipeline = build_pipeline(bundle, kind)
    sound = dataset_sound(bundle, config) if not audio_only else None
    frames = int(config.validation_num_video_frames or DEFAULT_FRAMES)
    device = module_device(model)
    sample_rate = int(bundle.components["vocoder"].config.output_sampling_rate)
    was_training = model.training
    model.eval()
    artifacts: list[Artifact] = []
    try:
        for nickname, prompt in prompts.items():
            for size in config.validation_resolution:
                width, height = parse_resolution(size)
                kwargs: dict[str, Any] = dict(_guidance(config))
                if kind == "i2v":
                    kwargs["image"] = image
                elif kind == "ic_lora":
                    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

                    ref_height = reference.shape[1]
                    kwargs["reference_conditions"] = [LTX2ReferenceCondition(frames=torch.from_numpy(reference).permute(0, 3, 1, 2) * 2 - 1)]
                    kwargs["reference_downscale_factor"] = max(1, height // ref_height)
                generator = torch.Generator(device=device).manual_seed(config.validation_seed)
                condition = audio_conditioned(pipeline, sound.to(device)) if sound is not None else nullcontext()
                with torch.no_grad(), condition:
                    video, audio = pipeline(prompt=prompt, negative_prompt=config.validation_negative_prompt or None,
                                            width=width, height=height, num_frames=frames, frame_rate=fps,
                                            num_inference_steps=config.validation_num_inference_steps,
                                            generator=generator, max_sequence_length=config.ltx2_text_max_length,
                                            output_type="np", return_dict=False, **kwargs)
                name = f"{nickname}-{width}x{height}{suffix}"
                waveform = audio[0].float().cpu()
                if audio_only:
                    path = folder / f"{name}.wav"
                    write_wav(path, waveform, sample_rate)
                    artifacts.append(Artifact(path=path, kind="audio", meta={"prompt": prompt, "step": step,
                                                                             "sample_rate": sample_rate}))
                    continue
                clip = np.asarray(video[0], dtype=np.float32)
                if kind == "ic_lora":
                    clip = side_by_side(reference, clip)
                path = folder / f"{name}.mp4"
                write_mp4(path, clip, fps, waveform, sample_rate)
                artifacts.append(Artifact(path=path, kind="video", meta={
                    "prompt": prompt, "step": step, "mode": kind, "width": width, "height": height,
                    "frames": frames, "fps": fps, "sample_rate": sample_rate}))
    finally:
        model.train(was_training)
    return artifacts


def dataset_sound(bundle: ModelBundle, config: ResolvedConfig) -> Any | None:
    """``validation_using_datasets``: the conditioning sample's cached audio latents (its own sound or its
    ``s2v_datasets`` file), which the video is then generated against; None without sound."""
    samples = bundle.meta.get("validation_samples") if config.get("validation_using_datasets") else None
    return samples[0].get("audio_latents") if samples else None


def dataset_first_frame(bundle: ModelBundle) -> Any | None:
    """``validation_using_datasets``: the first frame of the conditioning sample (of ``eval_dataset_id``, or of
    the training data), decoded from its cached latents, as a PIL image for image-to-video; None when the
    sample has no video (an audio-only sample: text-to-audio+video then)."""
    from PIL import Image

    from vtrain_ltx2.decoding import decode_latents

    samples = bundle.meta.get("validation_samples") or []
    latents = samples[0].get("latents") if samples else None
    if latents is None:
        return None
    frame = decode_latents(bundle, latents[None, :, :1].to(module_device(bundle.model)))[0, 0]  # (3, H, W)
    pixels = (frame.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
    return Image.fromarray(pixels)


def side_by_side(reference: Any, clip: Any) -> Any:
    """The reference (resized to the output's height, frames matched) left of the output."""
    import numpy as np
    import torch

    frames, height = clip.shape[0], clip.shape[1]
    ref = torch.from_numpy(np.ascontiguousarray(reference[:frames])).permute(0, 3, 1, 2)
    if ref.shape[0] < frames:
        ref = torch.cat([ref, ref[-1:].expand(frames - ref.shape[0], -1, -1, -1)])
    width = max(2, round(ref.shape[-1] * height / ref.shape[-2]) // 2 * 2)
    ref = torch.nn.functional.interpolate(ref, size=(height, width), mode="bilinear", align_corners=False)
    return np.concatenate([ref.permute(0, 2, 3, 1).clamp(0, 1).numpy(), clip], axis=2)


def write_mp4(path: Path, clip: Any, fps: float, waveform: Any, sample_rate: int) -> None:
    """H.264 video with an AAC audio track (``diffusers.utils.encode_video``, PyAV), atomically."""
    from diffusers.utils import encode_video

    partial = path.with_name(path.stem + ".partial.mp4")
    encode_video(clip, fps=int(round(fps)), audio=waveform, audio_sample_rate=sample_rate, output_path=str(partial))
    partial.replace(path)


def write_wav(path: Path, waveform: Any, sample_rate: int) -> None:
    """16-bit PCM wav of a (channels, samples) waveform in [-1, 1]."""
    import wave

    import numpy as np

    data = (np.clip(waveform.numpy(), -1, 1) * 32767).astype("<i2")
    partial = path.with_name(path.stem + ".partial.wav")
    with wave.open(str(partial), "wb") as handle:
        handle.setnchannels(int(data.shape[0]))
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(np.ascontiguousarray(data.T).tobytes())
    partial.replace(path)
