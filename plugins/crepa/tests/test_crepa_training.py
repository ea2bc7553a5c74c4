"""CREPA end to end on the tinyflow family: terms logged, alignment rising, head saved beside the
adapter, nothing changed when disabled or blocked, and configure-time refusals."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from vtrain.errors import ConfigError
from vtrain.hookspecs import hookimpl


def _metrics(output_dir: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").open()]


def test_training_logs_both_terms_and_alignment_rises(crepa_config: dict[str, Any], make_runner: Any) -> None:
    result = make_runner({**crepa_config, "max_train_steps": 30}).run()
    rows = _metrics(crepa_config["output_dir"])
    assert len(rows) == 30
    for row in rows:
        assert {"loss/flow", "loss/crepa", "crepa_alignment", "crepa_weight"} <= set(row)
        assert row["loss"] == pytest.approx(row["loss/flow"] + row["loss/crepa"], abs=1e-5)
        assert row["crepa_weight"] == 0.5
    alignment = [row["crepa_alignment"] for row in rows]
    assert np.mean(alignment[-8:]) > np.mean(alignment[:8]) + 0.1, alignment

    out = Path(crepa_config["output_dir"])
    assert out / "crepa_head.safetensors" in result.model_paths
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and not any("crepa" in key for key in adapter)  # inference loads the LoRA alone
    head = load_file(str(out / "crepa_head.safetensors"))
    assert head["1.weight"].shape == (16, 32)  # Linear from the tinyflow width (32) to the DINOv2 width (16)


def test_disabled_or_blocked_plugin_changes_nothing(tinyflow_config: dict[str, Any], tiny_dinov2_dir: Path,
                                                     make_runner: Any, tmp_path: Path) -> None:
    def adapter(name: str, **kwargs: Any) -> dict[str, Any]:
        config = {**tinyflow_config, "output_dir": str(tmp_path / name), **kwargs.pop("extra", {})}
        make_runner(config, **kwargs).run()
        return load_file(str(tmp_path / name / "adapter_model.safetensors"))

    blocked = adapter("blocked", blocked=["crepa"])
    disabled = adapter("disabled", extra={"crepa_block_index": 0, "crepa_encoder": str(tiny_dinov2_dir)})
    enabled = adapter("enabled", extra={"crepa_enabled": True, "crepa_block_index": 0,
                                        "crepa_encoder": str(tiny_dinov2_dir), "crepa_encoder_image_size": 16})
    assert blocked.keys() == disabled.keys()
    assert all((blocked[k] == disabled[k]).all() for k in blocked)  # bit-identical
    assert any(not (blocked[k] == enabled[k]).all() for k in blocked)  # the test can tell a difference
    assert not (tmp_path / "disabled" / "crepa_head.safetensors").exists()


def test_cutoff_turns_crepa_off(crepa_config: dict[str, Any], make_runner: Any) -> None:
    make_runner({**crepa_config, "max_train_steps": 6, "crepa_cutoff_step": 3, "crepa_lambda_end": 0.2}).run()
    rows = _metrics(crepa_config["output_dir"])
    assert [row.get("crepa_weight") for row in rows] == pytest.approx([0.5, 0.4, 0.3, None, None, None])
    assert all("loss/crepa" not in row for row in rows[3:])


def test_head_is_checkpointed_and_resumed(crepa_config: dict[str, Any], make_runner: Any) -> None:
    out = Path(crepa_config["output_dir"])
    make_runner({**crepa_config, "max_train_steps": 6, "checkpoint_step_interval": 3}).run()
    straight = load_file(str(out / "crepa_head.safetensors"))
    (out / "checkpoint-6").rename(out.parent / "moved")  # resume from step 3 instead
    make_runner({**crepa_config, "max_train_steps": 6, "checkpoint_step_interval": 3,
                 "resume_from_checkpoint": "latest"}).run()
    resumed = load_file(str(out / "crepa_head.safetensors"))
    assert all(bool((straight[k] == resumed[k]).all()) for k in straight)


class _PlainFamily:
    """A family that trains but offers no hidden-state capture and no latent decoder."""

    name = "plainflow"

    def __init__(self) -> None:
        from vtrain.testing.tinyflow import TinyFlowFamily

        self._inner = TinyFlowFamily()
        self.traits = self._inner.traits

    def load_model(self, config: Any) -> Any:
        return self._inner.load_model(config)

    def add_adapters(self, bundle: Any, config: Any) -> None:
        self._inner.add_adapters(bundle, config)

    def encode_batch(self, bundle: Any, batch: dict[str, Any], config: Any) -> dict[str, Any]:
        return self._inner.encode_batch(bundle, batch, config)

    def schedule_shift(self, config: Any, sample_shape: tuple[int, ...]) -> float | None:
        return None

    def compute_loss(self, bundle: Any, batch: dict[str, Any], config: Any, state: Any) -> Any:
        return self._inner.compute_loss(bundle, batch, config, state)

    def validate(self, bundle: Any, config: Any, step: int, prompts: Mapping[str, str]) -> list[Any]:
        return []

    def save_model(self, bundle: Any, config: Any, output_dir: Path) -> list[Path]:
        return []


class _PlainFamilyPlugin:
    name = "plainflow-plugin"

    @hookimpl
    def register_families(self, register: Callable[[Any], None]) -> None:
        register(_PlainFamily())


def test_family_without_the_capability_is_refused_at_configure_time(tmp_path: Path, tiny_dinov2_dir: Path,
                                                                    make_runner: Any) -> None:
    config = {"model_family": "plainflow", "output_dir": str(tmp_path / "out"), "max_train_steps": 2,
              "crepa_enabled": True, "crepa_encoder": str(tiny_dinov2_dir)}
    with pytest.raises(ConfigError) as info:
        make_runner(config, plugins=[_PlainFamilyPlugin()])
    message = str(info.value)
    assert "crepa_enabled" in message and "CREPA" in message and "'plainflow'" in message
    assert "capture_hidden_states" in message and "decode_latents" in message
    make_runner({**config, "crepa_enabled": False}, plugins=[_PlainFamilyPlugin()])  # fine when off


@pytest.mark.parametrize(("overrides", "key"), [
    ({"crepa_encoder": "not a model"}, "crepa_encoder"),
    ({"crepa_encoder": "dinov2_vits14", "crepa_encoder_image_size": 230}, "crepa_encoder_image_size"),
    ({"crepa_warmup_steps": 5, "crepa_cutoff_step": 5}, "crepa_warmup_steps"),
])
def test_bad_settings_are_refused(crepa_config: dict[str, Any], make_runner: Any, overrides: dict[str, Any],
                                  key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make_runner({**crepa_config, **overrides})


def test_small_encoder_defaults_to_224(crepa_config: dict[str, Any], make_runner: Any) -> None:
    from vtrain_crepa.encoder import image_size_for

    config = dict(crepa_config)
    config.pop("crepa_encoder_image_size")
    assert image_size_for(make_runner({**config, "crepa_encoder": "dinov2_vits14"}).config) == 224
    assert image_size_for(make_runner(config).config) == 518


def test_missing_encoder_weights_name_the_key(crepa_config: dict[str, Any], make_runner: Any) -> None:
    """Offline and not cached: a ConfigError that names crepa_encoder and the local-folder fix."""
    with pytest.raises(ConfigError, match="crepa_encoder.*local folder"):
        make_runner({**crepa_config, "crepa_encoder": "vtrain-tests/no-such-dinov2"}).run()


def test_drop_vae_encoder_needs_a_vae(crepa_config: dict[str, Any], make_runner: Any) -> None:
    with pytest.raises(ConfigError, match="no VAE encoder to drop"):
        make_runner({**crepa_config, "crepa_drop_vae_encoder": True}).run()


def test_options_are_supported(make_runner: Any, crepa_config: dict[str, Any]) -> None:
    runner = make_runner(crepa_config)
    crepa = [option for option in runner.registry if option.name.startswith("crepa_")]
    assert len(crepa) >= 12 and all(option.status == "supported" for option in crepa)


def test_feature_cache_skips_the_encoder_after_the_first_epoch(crepa_config: dict[str, Any], make_runner: Any,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    from vtrain_crepa.encoder import FrameEncoder

    calls: list[int] = []
    original = FrameEncoder.patch_features

    def counting(self: Any, frames: Any) -> Any:
        calls.append(int(frames.shape[0]))
        return original(self, frames)

    monkeypatch.setattr(FrameEncoder, "patch_features", counting)
    base = {**crepa_config, "max_train_steps": 24, "train_batch_size": 2}  # 16 samples: 3 epochs of 8 batches
    plain = make_runner({**base, "output_dir": str(tmp_path / "plain")}).run()
    uncached_calls = len(calls)
    calls.clear()
    cached = make_runner({**base, "output_dir": str(tmp_path / "cached"),
                          "crepa_feature_cache_dir": str(tmp_path / "features")}).run()
    assert uncached_calls == 24 and len(calls) == 8  # only the first epoch runs the encoder
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 16
    a, b = (load_file(str(r.output_dir / "adapter_model.safetensors")) for r in (plain, cached))
    assert all(torch.equal(a[k], b[k]) for k in a)  # cached targets train exactly like computed ones
