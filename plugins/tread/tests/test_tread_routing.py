"""The router on the LTX-Video transformer itself: which blocks see how many tokens, what skipped tokens
carry, and that a routed block computes exactly what the block computes on the kept tokens by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vtrain.family import ModelBundle, TokenRouting
from vtrain_ltxvideo.family import LTXVideoFamily
from vtrain_tread.router import TokenRouter
from vtrain_tread.settings import Route

FRAMES, HEIGHT, WIDTH = 2, 4, 4  # 32 tokens


def _transformer(blocks: int = 4) -> Any:
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=4, attention_head_dim=8,
                                      cross_attention_dim=32, num_layers=blocks, caption_channels=32)


def _inputs(per_token: bool = True) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    tokens = FRAMES * HEIGHT * WIDTH
    timestep = torch.tensor([300.0, 700.0])
    if per_token:  # image-to-video: the first latent frame's tokens are clean (timestep 0)
        timestep = timestep[:, None].repeat(1, tokens)
        timestep[:, : HEIGHT * WIDTH] = 0
    return dict(hidden_states=torch.randn(2, tokens, 8, generator=generator),
                encoder_hidden_states=torch.randn(2, 6, 32, generator=generator), timestep=timestep,
                encoder_attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
                num_frames=FRAMES, height=HEIGHT, width=WIDTH, rope_interpolation_scale=(8 / 25, 32, 32),
                return_dict=False)


def _routed(model: Any, routes: list[Route]) -> TokenRouter:
    family = LTXVideoFamily()
    bundle = ModelBundle(family="ltxvideo", model=model)
    router = TokenRouter(family, routes)
    router.install(model, family.token_routing_blocks(bundle))
    return router


def _token_counts(model: Any) -> tuple[list[int], list[Any]]:
    """Block input lengths seen after the router's hooks (hooks run in the order they were added)."""
    counts: list[int] = []

    def count(_block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        counts.append(int(hidden.shape[1]))

    handles = [block.register_forward_pre_hook(count, with_kwargs=True) for block in model.transformer_blocks]
    return counts, handles


def test_ltx_family_offers_token_routing() -> None:
    assert isinstance(LTXVideoFamily(), TokenRouting)


def test_routed_blocks_see_fewer_tokens_only_in_training_forwards() -> None:
    model = _transformer()
    router = _routed(model, [Route(0.5, 1, 2)])
    counts, _ = _token_counts(model)
    model.train()
    with router.training_forward():
        output = model(**_inputs())[0]
    assert counts == [32, 16, 16, 32]
    assert output.shape == (2, 32, 8)
    assert router.token_share() == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)

    for label, context, train in (("no grad", torch.no_grad(), True), ("eval mode", torch.enable_grad(), False)):
        counts.clear()
        model.train(train)
        with router.training_forward(), context:
            model(**_inputs())
        assert counts == [32] * 4, label
    counts.clear()
    model.train()
    model(**_inputs())  # outside compute_loss (validation, rollout's own forwards)
    assert counts == [32] * 4


def test_skipped_tokens_carry_their_pre_span_hidden_states() -> None:
    model = _transformer()
    router = _routed(model, [Route(0.75, 1, 2)])
    outputs: dict[int, torch.Tensor] = {}
    for index in (0, 2):
        model.transformer_blocks[index].register_forward_hook(
            lambda _m, _a, out, index=index: outputs.__setitem__(index, out.detach().clone()))
    model.train()
    with router.training_forward():
        model(**_inputs())
    kept = router._forward.indices[0]  # (B, 8): 32 - round(32 * 0.75)
    assert kept.shape == (2, 8)
    skipped = torch.ones(2, 32, dtype=torch.bool)
    skipped[torch.arange(2)[:, None], kept] = False
    assert torch.equal(outputs[2][skipped], outputs[0][skipped])
    assert not torch.allclose(outputs[2][~skipped], outputs[0][~skipped])
    assert not torch.equal(kept[0], kept[1])  # drawn per sample


def test_a_routed_block_computes_the_block_on_the_kept_tokens() -> None:
    """Block 1 routed: its output equals the block called by hand on the kept rows of its full inputs
    (hidden states, per-token modulation and rotary pair), written back into the full sequence."""
    model = _transformer()
    router = _routed(model, [Route(0.5, 1, 1)])
    block = model.transformer_blocks[1]
    seen: dict[str, Any] = {}
    # a pre-hook added before the router's: sees the block's full inputs
    block._forward_pre_hooks.move_to_end(
        block.register_forward_pre_hook(lambda _m, a, k: seen.setdefault("inputs", (a, dict(k))) and None, with_kwargs=True).id,
        last=False)
    block.register_forward_hook(lambda _m, _a, out: seen.setdefault("output", out.detach().clone()))
    model.train()
    with router.training_forward():
        model(**_inputs(per_token=True))
    _, kwargs = seen["inputs"]
    assert kwargs["temb"].shape[1] == 32  # the per-token modulation really is routed
    kept = router._forward.indices[0]
    rows = torch.arange(2)[:, None]
    cos, sin = kwargs["image_rotary_emb"]
    by_hand = block.forward(hidden_states=kwargs["hidden_states"][rows, kept],
                            encoder_hidden_states=kwargs["encoder_hidden_states"], temb=kwargs["temb"][rows, kept],
                            image_rotary_emb=(cos[rows, kept], sin[rows, kept]),
                            encoder_attention_mask=kwargs["encoder_attention_mask"])
    expected = kwargs["hidden_states"].clone()
    expected[rows, kept] = by_hand
    assert torch.allclose(seen["output"], expected.detach(), atol=1e-6)


def test_ratio_zero_and_removed_hooks_change_nothing() -> None:
    model = _transformer()
    model.train()
    plain = model(**_inputs())[0]
    router = _routed(model, [Route(0.0, 0, 3)])
    with router.training_forward():
        assert torch.equal(model(**_inputs())[0], plain)
    router.remove()
    router = _routed(model, [Route(0.5, 0, 3)])
    with router.training_forward():
        assert not torch.allclose(model(**_inputs())[0], plain)
    router.remove()
    with router.training_forward():
        assert torch.equal(model(**_inputs())[0], plain)


def test_gradient_checkpointing_recomputes_the_same_routes() -> None:
    """The backward's recomputation of each routed block reuses the forward's draw: the gradients equal
    those of the same routed forward without checkpointing."""
    grads = []
    for checkpointing in (False, True):
        model = _transformer()
        if checkpointing:
            model.enable_gradient_checkpointing()
        router = _routed(model, [Route(0.5, 1, 2)])
        model.train()
        torch.manual_seed(5)
        with router.training_forward():
            loss = model(**_inputs())[0].square().mean()
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
