"""TREAD end to end on the 4-block tiny LTX-Video: training to the end, ratio 0 changes nothing, a
bit-exact resume, gradient checkpointing, validation untouched, and configure-time refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from vtrain.errors import ConfigError
from vtrain.runner import Runner
from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

ADAPTER = "pytorch_lora_weights.safetensors"


def _route(ratio: float, start: int, end: int) -> dict[str, Any]:
    return {"routes": [{"selection_ratio": ratio, "start_layer_idx": start, "end_layer_idx": end}]}


def _run(config: dict[str, Any], output: Path, **overrides: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(metrics rows, saved adapter) of a run on 4 synthetic clips (9 frames, 64x64: 8 tokens)."""
    runner = Runner.from_config({**config, "output_dir": str(output), **overrides},
                                plugins=[SyntheticDataPlugin(count=4, frames=9)])
    runner.run()
    rows = [json.loads(line) for line in (output / "metrics.jsonl").open()]
    return rows, load_file(str(output / ADAPTER))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_ratio_zero_trains_exactly_like_no_routing(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    plain_rows, plain = _run(tread_ltx_config, tmp_path / "plain")
    zero_rows, zero = _run(tread_ltx_config, tmp_path / "zero", tread_config=_route(0.0, 1, 2))
    routed_rows, routed = _run(tread_ltx_config, tmp_path / "routed", tread_config=_route(0.5, 1, 2))
    assert [r["loss"] for r in zero_rows] == [r["loss"] for r in plain_rows]
    assert _same(zero, plain)
    assert [r["tread_token_share"] for r in zero_rows] == [1.0] * 4
    assert not _same(routed, plain)  # the comparison can tell routing from none


def test_routed_training_runs_to_the_end_and_resumes_bit_exactly(tread_ltx_config: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    config = {**tread_ltx_config, "tread_config": _route(0.5, 1, -2), "checkpoint_step_interval": 2}
    rows, straight = _run(config, tmp_path / "out")
    assert len(rows) == 4
    assert all(row["tread_token_share"] == pytest.approx(0.75) for row in rows)  # 4 of 8 tokens in 2 of 4 blocks
    (tmp_path / "out" / "checkpoint-4").rename(tmp_path / "moved")
    _, resumed = _run(config, tmp_path / "out", resume_from_checkpoint="latest")
    assert _same(resumed, straight)


def test_gradient_checkpointing_trains_the_same_routed_run(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    config = {**tread_ltx_config, "tread_config": _route(0.5, 1, 2), "max_train_steps": 2}
    rows, plain = _run(config, tmp_path / "plain")
    checkpointed_rows, checkpointed = _run(config, tmp_path / "ckpt", gradient_checkpointing=True)
    assert [r["loss"] for r in checkpointed_rows] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert all(bool((plain[k] - checkpointed[k]).abs().max() < 1e-6) for k in plain)


def test_validation_is_not_routed(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    """The step-0 validation video (before any update) is the same with and without tread_config."""
    import imageio.v3 as iio

    extra = {"max_train_steps": 1, "validation_prompt": "a red square", "validation_resolution": "64x64",
             "validation_num_video_frames": 9, "validation_num_inference_steps": 2, "validation_step_interval": 1}
    frames = []
    for name, tread in (("plain", None), ("routed", _route(0.75, 0, -1))):
        _run(tread_ltx_config, tmp_path / name, tread_config=tread, **extra)
        videos = sorted((tmp_path / name / "validation" / "step-0").glob("*.mp4"))
        assert videos, name
        frames.append(iio.imread(videos[0]))
    assert (frames[0] == frames[1]).all()


@pytest.mark.parametrize("tread, needle", [
    ({"routes": [{"selection_ratio": 1.0, "start_layer_idx": 1, "end_layer_idx": 2}]}, "below 1"),
    ({"routes": [{"selection_ratio": -0.1, "start_layer_idx": 1, "end_layer_idx": 2}]}, "at least 0"),
    ({"routes": [{"selection_ratio": 0.5, "start_layer_idx": 3, "end_layer_idx": 1}]}, "comes before"),
    ({"routes": [{"selection_rate": 0.5, "start_layer_idx": 1, "end_layer_idx": 2}]}, "'selection_ratio'"),
    ({"routes": []}, "non-empty 'routes'"),
    ({"route": []}, "unknown key 'route'"),
    ("no/such/file.json", "neither a JSON object nor an existing JSON file"),
    ({"routes": [{"selection_ratio": 0.5, "start_layer_idx": 1.5, "end_layer_idx": 2}]}, "not a whole number"),
])
def test_bad_tread_config_is_refused_with_the_fix(tread_ltx_config: dict[str, Any], tread: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Runner.from_config({**tread_ltx_config, "tread_config": tread})
    [problem] = [p for p in caught.value.problems if p.where.endswith("tread_config")]
    assert needle in f"{problem.message} {problem.fix}" and problem.fix, problem


@pytest.mark.parametrize("start, end, needle", [(1, 4, "end_layer_idx 4 is outside the model's 4"),
                                                (-5, 2, "start_layer_idx -5 is outside"),
                                                (2, -3, "comes before start_layer_idx 2")])
def test_indices_are_checked_against_the_loaded_model(tread_ltx_config: dict[str, Any], start: int, end: int,
                                                      needle: str) -> None:
    runner = Runner.from_config({**tread_ltx_config, "tread_config": _route(0.5, start, end)})
    with pytest.raises(ConfigError) as caught:
        runner.hooks.load_model(runner.config, runner.family)
    [problem] = caught.value.problems
    assert problem.where.endswith("tread_config") and needle in problem.message and problem.fix, problem


def test_json_string_and_file_are_read(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    text = json.dumps(_route(0.5, 1, 2))
    path = tmp_path / "tread.json"
    path.write_text(text)
    for value in (text, str(path)):
        runner = Runner.from_config({**tread_ltx_config, "tread_config": value})
        bundle = runner.hooks.load_model(runner.config, runner.family)
        assert [(r.selection_ratio, r.start, r.end) for r in bundle.meta["tread"].routes] == [(0.5, 1, 2)]


def test_a_family_without_token_routing_is_refused(tinyflow_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        Runner.from_config({**tinyflow_config, "tread_config": _route(0.5, 0, 1)})
    [problem] = [p for p in caught.value.problems if p.where.endswith("tread_config")]
    assert "'tinyflow' family does not offer token routing" in problem.message
    assert "ltxvideo, ltx2" in problem.fix


def test_without_the_plugin_the_key_names_the_distribution(tinyflow_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        Runner.from_config({**tinyflow_config, "tread_config": _route(0.5, 0, 1)}, blocked=["tread"])
    [problem] = [p for p in caught.value.problems if p.where.endswith("tread_config")]
    assert "vtrain-tread" in problem.message and "pip install vtrain-tread" in problem.fix


def test_crepa_captures_a_routed_block(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    """CREPA on a block inside the route sees the full token sequence (skipped tokens with their pre-route
    states) and both terms train."""
    pytest.importorskip("vtrain_crepa")
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    encoder = tmp_path / "tiny-dinov2"
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=4,
                             image_size=16)).save_pretrained(encoder)
    rows, _ = _run(tread_ltx_config, tmp_path / "out", max_train_steps=2, tread_config=_route(0.5, 1, 2),
                   crepa_enabled=True, crepa_block_index=1, crepa_encoder=str(encoder), crepa_encoder_image_size=16)
    assert len(rows) == 2
    assert all("loss/crepa" in row and row["tread_token_share"] == pytest.approx(0.75) for row in rows)


def test_rollout_forwards_are_not_routed(tread_ltx_config: dict[str, Any], tmp_path: Path) -> None:
    """Rollout's own denoising forwards (before the training forward) see every token; the training
    forward is routed."""
    pytest.importorskip("vtrain_rollout")
    from vtrain.hookspecs import hookimpl

    counts: list[tuple[bool, int]] = []

    class Spy:
        @hookimpl
        def on_run_start(self, run: Any) -> None:
            import torch

            def count(_block: Any, args: Any, kwargs: Any) -> None:
                hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                counts.append((torch.is_grad_enabled(), int(hidden.shape[1])))

            run.bundle.model.transformer_blocks[1].register_forward_pre_hook(count, with_kwargs=True)

    runner = Runner.from_config({**tread_ltx_config, "output_dir": str(tmp_path / "out"), "max_train_steps": 2,
                                 "tread_config": _route(0.5, 1, 2), "scheduled_sampling_max_step_offset": 3,
                                 "scheduled_sampling_probability": 1.0},
                                plugins=[SyntheticDataPlugin(count=4, frames=9), Spy()])
    runner.run()
    assert {tokens for grad, tokens in counts if not grad} == {8}  # rollout: no gradients, every token
    assert {tokens for grad, tokens in counts if grad} == {4}  # training forwards: half of 8


@pytest.mark.parametrize("value", ["", None])
def test_empty_or_null_tread_config_is_off(tread_ltx_config: dict[str, Any], value: Any) -> None:
    runner = Runner.from_config({**tread_ltx_config, "tread_config": value})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    assert "tread" not in bundle.meta


@pytest.mark.parametrize("extra", ["lycoris", "int8-quanto"])
def test_routing_with_lycoris_or_a_quantised_base(tread_ltx_config: dict[str, Any], tmp_path: Path,
                                                  extra: str) -> None:
    if extra == "lycoris":
        settings = tmp_path / "lycoris.json"
        settings.write_text(json.dumps({"algo": "lokr", "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 2,
                                        "factor": 4}))
        overrides: dict[str, Any] = {"lora_type": "lycoris", "lycoris_config": str(settings)}
    else:
        pytest.importorskip("vtrain_quant")
        pytest.importorskip("optimum.quanto")
        overrides = {"base_model_precision": "int8-quanto"}
    base = {k: v for k, v in tread_ltx_config.items() if not (extra == "lycoris" and k == "lora_target")}
    runner = Runner.from_config({**base, "output_dir": str(tmp_path / "out"), "max_train_steps": 2,
                                 "tread_config": _route(0.5, 1, 2), **overrides},
                                plugins=[SyntheticDataPlugin(count=4, frames=9)])
    result = runner.run()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").open()]
    assert result.steps == 2
    assert [row["tread_token_share"] for row in rows] == [0.75, 0.75]
