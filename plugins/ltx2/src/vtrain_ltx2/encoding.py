"""Pixels -> video latents, waveforms -> log-mel -> audio latents, captions -> connector embeddings.

Data-layer contract: ``pixels`` ``(B, F, C, H, W)`` in [0, 1]; ``audio`` ``(B, channels, samples)`` in
[-1, 1] at the audio VAE's sample rate (the data layer resamples and aligns it to the frames used).

- Video latents are stored unpacked ``(B, C, F', H', W')``, normalised like ``LTX2Pipeline._normalize_latents``.
- Audio latents are stored packed ``(B, L, C*M')`` and normalised after packing, in the pipeline's order
  (``_pack_audio_latents`` then ``_normalize_audio_latents``): the statistics are per packed channel.
- Text goes through the pipeline's own ``encode_prompt`` (Gemma, left padding, every hidden state stacked)
  and its ``connectors``; what is cached is the connectors' output, what the transformer consumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle

MEL_N_FFT = 1024  # ltx-core's AudioProcessor: STFT 1024, Hann window, centred, magnitude, slaney mel, log(1e-5)
LOG_FLOOR = 1e-5


def module_device(module: Any) -> torch.device:
    return next(module.parameters()).device


def pipeline_shell(bundle: ModelBundle) -> Any:
    """An ``LTX2Pipeline`` around the bundle's parts (no copies), for its encoding helpers."""
    from diffusers import LTX2Pipeline

    parts = bundle.components
    return LTX2Pipeline(scheduler=bundle.noise_scheduler, vae=parts["vae"], audio_vae=parts["audio_vae"],
                        text_encoder=parts.get("text_encoder"), tokenizer=parts.get("tokenizer"),
                        connectors=parts["text_encoder_connectors"], transformer=bundle.model, vocoder=parts["vocoder"])


def encode_pixels(bundle: ModelBundle, pixels: torch.Tensor) -> torch.Tensor:
    """(B, F, C, H, W) in [0, 1] -> normalised latents (B, C, 1 + (F-1)/8, H/32, W/32)."""
    import torch
    from diffusers import LTX2Pipeline

    if pixels.dim() != 5 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be (batch, frames, 3, height, width), got {tuple(pixels.shape)}")
    frames = pixels.shape[1]
    if (frames - 1) % 8:
        pixels = pixels[:, : (frames - 1) // 8 * 8 + 1]
    vae = bundle.components["vae"]
    device = module_device(bundle.model)
    vae.to(device)
    video = pixels.to(device=device, dtype=vae.dtype).permute(0, 2, 1, 3, 4) * 2.0 - 1.0
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mode()
    return LTX2Pipeline._normalize_latents(latents.float(), vae.latents_mean, vae.latents_std, vae.config.scaling_factor)


def waveform_to_logmel(waveform: torch.Tensor, sample_rate: int, hop_length: int, mel_bins: int) -> torch.Tensor:
    """(B, C, N) -> log-mel (B, C, T, mel_bins), as ltx-core's AudioProcessor computes the audio VAE's input."""
    import torch
    from transformers.audio_utils import mel_filter_bank

    batch, channels, samples = waveform.shape
    filters = torch.from_numpy(mel_filter_bank(num_frequency_bins=MEL_N_FFT // 2 + 1, num_mel_filters=mel_bins,
                                               min_frequency=0.0, max_frequency=sample_rate / 2,
                                               sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")).float()
    flat = waveform.reshape(batch * channels, samples).float()
    if samples <= MEL_N_FFT // 2:  # reflect padding needs more samples than half the window
        flat = torch.nn.functional.pad(flat, (0, MEL_N_FFT // 2 + 1 - samples))
    spectrum = torch.stft(flat, n_fft=MEL_N_FFT, hop_length=hop_length, win_length=MEL_N_FFT,
                          window=torch.hann_window(MEL_N_FFT, device=flat.device), center=True, pad_mode="reflect",
                          return_complex=True).abs()
    mel = torch.einsum("bft,fm->btm", spectrum, filters.to(spectrum.device))
    return torch.log(mel.clamp(min=LOG_FLOOR)).reshape(batch, channels, -1, mel_bins)


def audio_latent_count(samples: int, audio_vae: Any) -> int:
    """Audio tokens for ``samples`` samples: the pipeline's round(duration * sr / hop / 4)."""
    compression = int(getattr(audio_vae, "temporal_compression_ratio", 4))
    return max(1, round(samples / audio_vae.config.mel_hop_length / compression))


def encode_audio(bundle: ModelBundle, audio: torch.Tensor) -> torch.Tensor:
    """(B, C, N) waveform at the audio VAE's rate -> normalised packed audio latents (B, L, C_lat * mel/4)."""
    import torch
    from diffusers import LTX2Pipeline

    audio_vae = bundle.components["audio_vae"]
    if audio.dim() != 3:
        raise ValueError(f"audio must be (batch, channels, samples), got {tuple(audio.shape)}")
    wanted = int(audio_vae.config.in_channels)
    if audio.shape[1] != wanted:
        if audio.shape[1] == 1:
            audio = audio.expand(-1, wanted, -1)
        else:
            raise ValueError(f"the audio VAE takes {wanted} channel(s), got {audio.shape[1]}")
    device = module_device(bundle.model)
    audio_vae.to(device)
    count = audio_latent_count(audio.shape[-1], audio_vae)
    mel = waveform_to_logmel(audio.to(device), int(audio_vae.config.sample_rate),
                             int(audio_vae.config.mel_hop_length), int(audio_vae.config.mel_bins))
    mel = mel[:, :, : 4 * (count - 1) + 1]
    if mel.shape[2] < 4 * (count - 1) + 1:  # a clip a few samples short: pad with the log floor (silence)
        mel = torch.nn.functional.pad(mel, (0, 0, 0, 4 * (count - 1) + 1 - mel.shape[2]), value=float(torch.tensor(LOG_FLOOR).log()))
    with torch.no_grad():
        latents = audio_vae.encode(mel.to(audio_vae.dtype)).latent_dist.mode().float()
    packed = LTX2Pipeline._pack_audio_latents(latents[:, :, :count])
    return LTX2Pipeline._normalize_audio_latents(packed, audio_vae.latents_mean.float(), audio_vae.latents_std.float())


def encode_captions(bundle: ModelBundle, captions: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """The connectors' video and audio text embeddings and their mask, exactly as ``LTX2Pipeline.__call__``."""
    import torch

    encoder = bundle.components["text_encoder"]
    connectors = bundle.components["text_encoder_connectors"]
    device = module_device(bundle.model)
    encoder.to(device)
    connectors.to(device)
    pipeline = pipeline_shell(bundle)
    with torch.no_grad():
        embeds, mask, _, _ = pipeline.encode_prompt(list(captions), do_classifier_free_guidance=False,
                                                    max_sequence_length=max_length, device=device)
        side = getattr(bundle.components["tokenizer"], "padding_side", "left")
        video, audio, connector_mask = connectors(embeds.to(next(connectors.parameters()).dtype), mask,
                                                  padding_side=side)
    return {"video_prompt_embeds": video.float(), "audio_prompt_embeds": audio.float(),
            "prompt_attention_mask": connector_mask.float() if connector_mask.is_floating_point() else connector_mask}
