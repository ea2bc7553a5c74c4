"""The router on the LTX-2 audio-video transformer (2.0 interleaved rope, 2.3 split rope and prompt
modulation): the video stream is routed, the audio stream stays whole, and a routed block computes what
the block computes on the kept video tokens by hand."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from vtrain.family import ModelBundle, TokenRouting
from vtrain_ltx2.family import LTX2Family
from vtrain_ltx2.tiny import TRANSFORMER_20, TRANSFORMER_23
from vtrain_tread.router import TokenRouter
from vtrain_tread.settings import Route

FRAMES, HEIGHT, WIDTH, AUDIO = 2, 4, 4, 5  # 32 video tokens, 5 audio tokens
VARIANTS = {"2.0": TRANSFORMER_20, "2.3": TRANSFORMER_23}


def _transformer(variant: str) -> Any:
    from diffusers import LTX2VideoTransformer3DModel

    torch.manual_seed(0)
    return LTX2VideoTransformer3DModel(**{**VARIANTS[variant], "num_layers": 3})


def _inputs(model: Any) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    tokens = FRAMES * HEIGHT * WIDTH
    video_t = torch.tensor([300.0, 700.0])[:, None].repeat(1, tokens)
    video_t[:, : HEIGHT * WIDTH] = 0  # a clean first frame: per-token timesteps
    settings = model.config
    widths = (settings.caption_channels, settings.caption_channels) if settings.use_prompt_embeddings else \
        (settings.num_attention_heads * settings.attention_head_dim,
         settings.audio_num_attention_heads * settings.audio_attention_head_dim)
    text, audio_text = widths
    return dict(hidden_states=torch.randn(2, tokens, 8, generator=generator),
                audio_hidden_states=torch.randn(2, AUDIO, 8, generator=generator),
                encoder_hidden_states=torch.randn(2, 6, text, generator=generator),
                audio_encoder_hidden_states=torch.randn(2, 6, audio_text, generator=generator),
                timestep=video_t, audio_timestep=torch.tensor([300.0, 700.0]),
                sigma=torch.tensor([0.3, 0.7]), audio_sigma=torch.tensor([0.3, 0.7]),
                encoder_attention_mask=torch.ones(2, 6), audio_encoder_attention_mask=torch.ones(2, 6),
                num_frames=FRAMES, height=HEIGHT, width=WIDTH, fps=24.0, audio_num_frames=AUDIO,
                use_cross_timestep=False, return_dict=False)


def _routed(model: Any, routes: list[Route]) -> TokenRouter:
    family = LTX2Family()
    router = TokenRouter(family, routes)
    router.install(model, family.token_routing_blocks(ModelBundle(family="ltx2", model=model)))
    return router


def test_ltx2_family_offers_token_routing() -> None:
    assert isinstance(LTX2Family(), TokenRouting)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_video_tokens_are_routed_and_audio_is_not(variant: str) -> None:
    model = _transformer(variant)
    router = _routed(model, [Route(0.5, 1, 1)])
    seen: list[tuple[int, int]] = []

    def count(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        values = inspect.signature(type(block).forward).bind(block, *args, **kwargs).arguments
        seen.append((values["hidden_states"].shape[1], values["audio_hidden_states"].shape[1]))

    for block in model.transformer_blocks:
        block.register_forward_pre_hook(count, with_kwargs=True)
    model.train()
    with router.training_forward():
        video, audio = model(**_inputs(model))
    assert seen == [(32, AUDIO), (16, AUDIO), (32, AUDIO)]
    assert video.shape == (2, 32, 8) and audio.shape == (2, AUDIO, 8)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_routed_block_computes_the_block_on_the_kept_video_tokens(variant: str) -> None:
    model = _transformer(variant)
    router = _routed(model, [Route(0.5, 1, 1)])
    block = model.transformer_blocks[1]
    seen: dict[str, Any] = {}
    handle = block.register_forward_pre_hook(lambda _m, _a, k: seen.setdefault("inputs", dict(k)) and None, with_kwargs=True)
    block._forward_pre_hooks.move_to_end(handle.id, last=False)  # before the router's: the full inputs
    block.register_forward_hook(lambda _m, _a, out: seen.setdefault("output", tuple(t.detach().clone() for t in out)))
    model.train()
    with router.training_forward():
        model(**_inputs(model))
    inputs, kept = seen["inputs"], router._forward.indices[0]
    rows = torch.arange(2)[:, None]
    assert inputs["temb"].shape[1] == 32 and inputs["temb_ca_scale_shift"].shape[1] == 32  # per-token modulations

    def cut(value: Any) -> Any:
        if value.dim() == 4:  # split rope (B, heads, S, r)
            return value.permute(0, 2, 1, 3)[rows, kept].permute(0, 2, 1, 3)
        return value[rows, kept] if value.shape[1] == 32 else value

    by_hand_inputs = dict(inputs)
    for name in ("hidden_states", "temb", "temb_ca_scale_shift", "temb_ca_gate", "temb_prompt"):
        if inputs.get(name) is not None:
            by_hand_inputs[name] = cut(inputs[name])
    for name in ("video_rotary_emb", "ca_video_rotary_emb"):
        by_hand_inputs[name] = tuple(cut(part) for part in inputs[name])
    video, audio = block.forward(**by_hand_inputs)
    expected = inputs["hidden_states"].clone()
    expected[rows, kept] = video
    assert torch.allclose(seen["output"][0], expected.detach(), atol=1e-5)
    assert torch.allclose(seen["output"][1], audio.detach(), atol=1e-5)


def test_ltx2_training_with_tread_runs_to_the_end(ltx2_tiny_dir: Any, tmp_path: Any) -> None:
    import json

    from vtrain.runner import Runner
    from vtrain_ltx2.synthetic import SyntheticAVPlugin
    from vtrain_ltx2.testing import tiny_ltx2_config

    tread = {"routes": [{"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": -1}]}
    config = tiny_ltx2_config(ltx2_tiny_dir, tmp_path / "out", max_train_steps=2, tread_config=tread)
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=9)]).run()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").open()]
    assert result.steps == 2
    assert [row["tread_token_share"] for row in rows] == [0.5, 0.5]  # 4 of 8 video tokens in both blocks
    assert all("loss/audio_flow" in row for row in rows)  # the audio stream still trains


@pytest.mark.parametrize("mode, overrides, scale, share", [
    ("ic_lora", {"ltx2_ic_lora": True}, 2, 0.5),  # 8 video + 2 reference tokens, 5 kept in both blocks
    ("audio_only", {"ltx2_video": "off"}, 0, 1.0),  # a single placeholder video token: nothing to route
])
def test_ltx2_modes_with_tread(ltx2_tiny_dir: Any, tmp_path: Any, mode: str, overrides: dict[str, Any], scale: int,
                               share: float) -> None:
    import json

    from vtrain.runner import Runner
    from vtrain_ltx2.synthetic import SyntheticAVPlugin
    from vtrain_ltx2.testing import tiny_ltx2_config

    tread = {"routes": [{"selection_ratio": 0.5, "start_layer_idx": 0, "end_layer_idx": -1}]}
    config = tiny_ltx2_config(ltx2_tiny_dir, tmp_path / "out", max_train_steps=2, tread_config=tread, **overrides)
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=9, reference_scale=scale)]).run()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").open()]
    assert result.steps == 2, mode
    assert [row["tread_token_share"] for row in rows] == [share, share], mode
