"""End to end on the tiny model: training lowers the loss, validation videos, portable outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vtrain_ltxvideo.synthetic import SyntheticDataPlugin
from vtrain_ltxvideo.testing import lora_output_change


def _fixed_eval_loss(runner: Any, bundle: Any, dataset: Any) -> float:
    """Mean loss over the dataset at fixed sigmas and fixed noise (no RNG involved)."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    generator = torch.Generator().manual_seed(123)
    total = 0.0
    with torch.no_grad():
        for index in range(len(dataset)):
            batch = collate([dataset[index]])
            for sigma in (0.2, 0.5, 0.8):
                batch["sigmas"] = torch.tensor([sigma])
                batch["noise"] = torch.randn(batch["latents"].shape, generator=generator)
                total += float(runner.hooks.compute_loss(bundle, batch, runner.config, TrainState()).loss)
    return total / (3 * len(dataset))


def test_seeded_training_lowers_the_loss(ltx_config: dict[str, Any]) -> None:
    from vtrain.runner import Runner

    data = SyntheticDataPlugin(count=8, frames=9)
    # mode: the tiny random VAE's posterior std is as large as its mean, which would bury the signal
    runner = Runner.from_config({**ltx_config, "max_train_steps": 40, "lora_target": "attention+ffn",
                                 "learning_rate": 2e-3, "vae_latent_sampling": "mode"}, plugins=[data])
    result = runner.run()
    losses = [json.loads(line)["loss"] for line in (Path(ltx_config["output_dir"]) / "metrics.jsonl").open()]
    assert result.steps == 40 and len(losses) == 40
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses


def test_training_lowers_fixed_noise_loss(prepared: Any) -> None:
    """The same comparison at fixed timesteps and noise, before and after 30 updates."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared({"lora_target": "attention+ffn", "vae_latent_sampling": "mode"})
    dataset = SyntheticDataPlugin(count=8, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                     family=runner.family)
    before = _fixed_eval_loss(runner, bundle, dataset)
    params = [p for _, p in bundle.trainable_named_parameters()]
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    torch.manual_seed(0)
    state = TrainState(shift_for=lambda shape: None)
    for step in range(30):
        indices = [(2 * step) % 8, (2 * step + 1) % 8]
        out = runner.hooks.compute_loss(bundle, collate([dataset[i] for i in indices]), runner.config, state)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = _fixed_eval_loss(runner, bundle, dataset)
    assert after < 0.8 * before, (before, after)


def _decode(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_validation_videos_and_lora_portability(ltx_config: dict[str, Any], tmp_path: Path) -> None:

    from vtrain.runner import Runner

    library = tmp_path / "prompts.json"
    library.write_text(json.dumps({"red_square": "a red square moves from left to right"}))
    config = {**ltx_config, "max_train_steps": 6, "learning_rate": 5e-3, "validation_step_interval": 3,
              "validation_prompt": "a blue circle slides from top to bottom", "user_prompt_library": str(library),
              "validation_resolution": "64x64,96x64", "validation_num_video_frames": 9,
              "validation_num_inference_steps": 2, "validation_guidance": 2.0, "validation_negative_prompt": "blurry",
              "disable_benchmark": True}
    result = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9, is_i2v=False)]).run()
    out = Path(config["output_dir"])
    for step in (3, 6):
        for name in ("validation", "red_square"):
            for width, height in ((64, 64), (96, 64)):
                video = _decode(out / "validation" / f"step-{step}" / f"{name}-{width}x{height}.mp4")
                assert video.shape == (9, height, width, 3)
    assert not (out / "validation" / "step-0").exists()
    assert len(result.validation) == 8

    # the LoRA loads into a fresh LTXPipeline unchanged and changes its output
    base = config["pretrained_model_name_or_path"]

    assert lora_output_change(base, out) > 1e-3
    from safetensors.torch import load_file

    saved = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert saved and all(k.startswith("transformer.") for k in saved)
    assert any(torch.count_nonzero(v) for k, v in saved.items() if "lora_B" in k)

    comfy = load_file(str(out / "pytorch_lora_weights_comfyui.safetensors"))
    lora_keys = [k for k in comfy if not k.endswith(".alpha")]
    assert len(lora_keys) == len(saved)
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in comfy)
    assert "diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight" in comfy
    assert "diffusion_model.transformer_blocks.1.attn2.to_out.0.lora_B.weight" in comfy
    assert float(comfy["diffusion_model.transformer_blocks.0.attn1.to_q.alpha"]) == 8.0
    for key in lora_keys:
        torch.testing.assert_close(comfy[key], saved["transformer." + key.removeprefix("diffusion_model.")])


def test_comfy_names_follow_the_original_layout() -> None:
    from vtrain_ltxvideo.saving import comfy_state_dict

    state = {"transformer.proj_in.lora_A.weight": torch.zeros(2, 3), "transformer.proj_in.lora_B.weight": torch.zeros(3, 2),
             "transformer.time_embed.linear.lora_A.weight": torch.zeros(2, 3)}
    keys = set(comfy_state_dict(state, alpha=4))
    assert keys == {"diffusion_model.patchify_proj.lora_A.weight", "diffusion_model.patchify_proj.lora_B.weight",
                    "diffusion_model.patchify_proj.alpha", "diffusion_model.adaln_single.linear.lora_A.weight",
                    "diffusion_model.adaln_single.linear.alpha"}


def test_image_to_video_validation_uses_the_image(ltx_config: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    from vtrain.hookspecs import hookimpl
    from vtrain.runner import Runner

    image = tmp_path / "first.png"
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(image)
    config = {**ltx_config, "max_train_steps": 2, "validation_prompt": "a red square", "validation_image": str(image),
              "validation_resolution": "64x64", "validation_num_video_frames": 9, "validation_num_inference_steps": 2,
              "disable_benchmark": True}
    seen: list[Any] = []

    class Recorder:
        @hookimpl
        def on_validation(self, artifacts: list[Any]) -> None:
            seen.extend(artifacts)

    runner = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=2, frames=9), Recorder()])
    result = runner.run()
    assert [p.name for p in result.validation] == ["validation-64x64.mp4"]
    assert [a.meta["mode"] for a in seen] == ["i2v"]
    assert _decode(result.validation[0]).shape == (9, 64, 64, 3)


@pytest.mark.parametrize("algo", ["lokr", "lora"])
def test_lycoris_trains_saves_and_reloads(ltx_config: dict[str, Any], tmp_path: Path, algo: str) -> None:
    from lycoris import create_lycoris_from_weights

    from vtrain.runner import Runner
    from vtrain_ltxvideo.loading import load_transformer

    settings = tmp_path / "lycoris.json"
    settings.write_text(json.dumps({"algo": algo, "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 2, "factor": 4}))
    config = {**ltx_config, "lora_type": "lycoris", "lycoris_config": str(settings), "max_train_steps": 3,
              "learning_rate": 1e-2}
    runner = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=2, frames=9)])
    result = runner.run()
    out = Path(config["output_dir"])
    assert {p.name for p in result.model_paths} == {"lycoris_weights.safetensors", "lycoris_config.json"}
    assert json.loads((out / "lycoris_config.json").read_text())["algo"] == algo
    model = load_transformer(runner.config, torch.float32)
    network, _ = create_lycoris_from_weights(1.0, str(out / "lycoris_weights.safetensors"), model)
    assert len(network.loras) > 0


@pytest.mark.parametrize(("overrides", "scale", "dropout"), [
    ({}, 1.0, 0.0),  # unset lora_alpha = the rank: scale 1, as the lora_alpha help says
    ({"lora_alpha": 2.0, "lora_dropout": 0.25}, 0.5, 0.25),
])
def test_lycoris_takes_lora_alpha_and_dropout(prepared: Any, tmp_path: Path, overrides: dict[str, Any], scale: float,
                                              dropout: float) -> None:
    settings = tmp_path / "lycoris.json"
    settings.write_text(json.dumps({"algo": "lora", "linear_dim": 4}))
    _, bundle = prepared({"lora_type": "lycoris", "lycoris_config": str(settings), **overrides})
    modules = bundle.extra_trainables["lycoris"].loras
    assert modules and all(m.scale == pytest.approx(scale) for m in modules)
    assert all(getattr(m.dropout, "p", 0.0) == dropout for m in modules)


def test_lora_alpha_is_passed_to_peft(prepared: Any) -> None:
    _, bundle = prepared({"lora_alpha": 4.0})
    assert bundle.model.peft_config["default"].lora_alpha == 4.0
    _, bundle = prepared({})
    assert bundle.model.peft_config["default"].lora_alpha == 8  # = lora_rank of the tiny config


def test_full_finetune_saves_a_transformer_folder(ltx_config: dict[str, Any]) -> None:
    from diffusers import LTXVideoTransformer3DModel

    from vtrain.runner import Runner

    config = {**ltx_config, "model_type": "full", "max_train_steps": 2, "learning_rate": 1e-2}
    runner = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=2, frames=9)])
    runner.run()
    folder = Path(config["output_dir"]) / "transformer"
    trained = LTXVideoTransformer3DModel.from_pretrained(folder)
    original = LTXVideoTransformer3DModel.from_pretrained(config["pretrained_model_name_or_path"], subfolder="transformer")
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), original.state_dict().values()))


def test_i2v_validation_is_the_same_with_cold_and_warm_caches(ltx_config: dict[str, Any], tmp_path: Path) -> None:
    """The i2v reference comes from the training dataset, not from whichever clips were encoded now."""
    import sys

    from vtrain.runner import Runner

    sys.path.insert(0, str(Path(__file__).parents[3] / "examples" / "ltxvideo"))
    from make_demo_data import make_clips

    make_clips(tmp_path / "clips", 2, 9, 64, 64, fps=25)
    backends = [{"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(tmp_path / "clips"),
                 "cache_dir_vae": str(tmp_path / "cache" / "vae"), "caption_strategy": "textfile", "resolution": 64,
                 "resolution_type": "pixel", "video": {"num_frames": 9, "min_frames": 9}},
                {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
                 "cache_dir": str(tmp_path / "cache" / "text")}]
    from vtrain.hookspecs import hookimpl

    modes: list[str] = []

    class Recorder:
        @hookimpl
        def on_validation(self, artifacts: list[Any]) -> None:
            modes.extend(a.meta["mode"] for a in artifacts)

    runs = []
    for name in ("cold", "warm"):
        config = {**ltx_config, "output_dir": str(tmp_path / name), "data_backend_config": backends,
                  "max_train_steps": 1, "validation_prompt": "a red square", "validation_resolution": "64x64",
                  "validation_num_video_frames": 9, "validation_num_inference_steps": 2, "vae_batch_size": 1,
                  "i2v_conditioning_probability": 1.0}
        runs.append(Runner.from_config(config, plugins=[Recorder()]).run())
    assert modes and set(modes) == {"i2v"}  # both runs validate image-to-video (mostly-i2v training)
    cold, warm = ([p for p in run.validation if p.parent.name == "step-0"][0] for run in runs)
    np.testing.assert_array_equal(_decode(cold), _decode(warm))
