"""Validation previews for LTX-Video: each sampling step's latents are reported and decode cheaply."""

from __future__ import annotations

from typing import Any

from vtrain.family import PreviewDecoder


def test_sampling_steps_reach_the_preview_observer_and_decode(prepared: Any) -> None:
    from vtrain.services.preview import observing

    runner, bundle = prepared({"validation_resolution": "64x64", "validation_num_video_frames": 9,
                               "validation_num_inference_steps": 3, "validation_guidance": 1.0})
    family = runner.family
    assert isinstance(family, PreviewDecoder)
    seen: list[tuple[str, int, int, tuple[int, ...]]] = []
    decoded: list[Any] = []
    decoder = family.preview_decoder(bundle, runner.config)

    def observer(name: str, index: int, total: int, latents: Any) -> None:
        seen.append((name, index, total, tuple(latents.shape)))
        decoded.append(decoder(latents))

    with observing(bundle, observer):
        artifacts = runner.hooks.validate(bundle, runner.config, 0, {"cube": "a red cube"})
    assert len(artifacts) == 1
    channels = bundle.components["vae"].config.latent_channels
    assert seen == [("cube-64x64", i, 3, (1, channels, 2, 2, 2)) for i in range(3)]
    assert all(tuple(image.shape) == (1, 1, 3, 64, 64) for image in decoded)
    assert all(float(image.min()) >= 0.0 and float(image.max()) <= 1.0 for image in decoded)


def test_no_observer_no_callback(prepared: Any) -> None:
    from vtrain_ltxvideo.validation import preview_callback

    _runner, bundle = prepared()
    assert preview_callback(bundle, "x", 9, 64, 64, 3) == {}
