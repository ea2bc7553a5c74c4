"""The rest of vtrain keeps working for LTX-2: CREPA on the video stream, EMA, quantisation exclusions, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain_ltx2.synthetic import SyntheticAVPlugin


def test_crepa_and_ema_train_with_ltx2(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    from vtrain.runner import Runner

    torch.manual_seed(0)
    encoder = tmp_path / "tiny-dinov2"
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=4,
                             image_size=16)).save_pretrained(encoder)
    config = {**ltx2_config, "max_train_steps": 2, "crepa_enabled": True, "crepa_block_index": 1,
              "crepa_encoder": str(encoder), "crepa_encoder_image_size": 16, "use_ema": True}
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=17)]).run()
    rows = [json.loads(line) for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert all({"loss/video_flow", "loss/audio_flow", "loss/crepa"} <= set(row) for row in rows)
    assert Path(config["output_dir"]) / "crepa_head.safetensors" in result.model_paths


def test_capture_reshapes_the_video_stream_only(prepared: Any) -> None:
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared({"ltx2_ic_lora": True})
    dataset = SyntheticAVPlugin(count=1, frames=17, reference_scale=2).build_dataset(
        bundle=bundle, config=runner.config, family=runner.family)
    with runner.family.capture_hidden_states(bundle, 1) as captured:
        runner.hooks.compute_loss(bundle, collate([dataset[0]]), runner.config, TrainState(shift_for=lambda s: None))
    width = runner.family.hidden_state_width(bundle, 1)
    assert captured.hidden_states.shape == (1, 3, 4, width) and captured.grid == (3, 2, 2)


def test_quantisation_keeps_the_sensitive_layers(prepared: Any) -> None:
    """int8-quanto on the transformer: block projections quantised, the input/output projections, adaLN,
    audio-video modulation and norms stay in full precision (the family's exclusion list)."""
    pytest.importorskip("optimum.quanto")
    runner, bundle = prepared({"base_model_precision": "int8-quanto", "quantize_via": "cpu"})
    types = {name: type(module).__name__ for name, module in bundle.model.named_modules()}
    assert "QLinear" in types["transformer_blocks.0.attn1.to_q.base_layer"] or \
        "QLinear" in types.get("transformer_blocks.0.attn1.to_q", "")
    for kept in ("proj_in", "audio_proj_in", "proj_out", "time_embed.linear", "av_cross_attn_video_scale_shift.linear"):
        assert types[kept] == "Linear", (kept, types[kept])


def test_resume_is_bit_exact(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from vtrain.runner import Runner

    def run(output: Path, steps: int, resume: bool = False) -> None:
        config = {**ltx2_config, "output_dir": str(output), "max_train_steps": steps, "checkpoint_step_interval": 2,
                  "ltx2_i2v_probability": 0.5}
        if resume:
            config["resume_from_checkpoint"] = "latest"
        Runner.from_config(config, plugins=[SyntheticAVPlugin(count=4, frames=9)]).run()

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 4, resume=True)
    straight = load_file(str(tmp_path / "straight" / "pytorch_lora_weights.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "pytorch_lora_weights.safetensors"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_gemma_is_quantised_and_offloaded_while_caching(prepared: Any) -> None:
    """text_encoder_1_precision quantises Gemma; the connectors sit with it in the text phase of
    offload_during_startup (component names text_encoder*), and the cached embeddings stay usable."""
    pytest.importorskip("optimum.quanto")
    from vtrain.data.build import _offload

    runner, bundle = prepared({"text_encoder_1_precision": "int8-quanto", "quantize_via": "cpu"})
    names = {type(m).__name__ for m in bundle.components["text_encoder"].modules()}
    assert "QLinear" in names
    text = runner.hooks.encode_batch(bundle, {"captions": ["a red square"]}, runner.config)
    assert torch.isfinite(text["video_prompt_embeds"]).all() and text["audio_prompt_embeds"].shape[1] == 32
    kinds = {name: _offload(None, {}, "text")._kind(name) for name in bundle.components}  # type: ignore[arg-type]
    assert kinds["text_encoder"] == kinds["text_encoder_connectors"] == "text"
    assert kinds["vae"] == kinds["audio_vae"] == "vae"


def test_fixed_noise_evaluation_fixes_the_audio_noise_too(prepared: Any) -> None:
    """The evaluation loss passes ``sigmas`` and ``noise`` (video-shaped); the audio term must be fixed as well."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared()
    dataset = SyntheticAVPlugin(count=1, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                 family=runner.family)
    batch = collate([dataset[0]])
    batch["sigmas"], batch["noise"] = torch.tensor([0.5]), torch.randn(batch["latents"].shape)
    losses = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            losses.append(float(runner.hooks.compute_loss(bundle, dict(batch), runner.config, TrainState()).loss))
    assert losses[0] == losses[1]
