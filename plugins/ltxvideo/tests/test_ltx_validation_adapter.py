"""LTX-Video reads published LoRAs for validation adapters; the core stacks one on the trained LoRA and removes it
without a trace (the model, its trainable parameters and the saved adapter are as before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def test_a_saved_ltx_lora_is_stacked_and_removed(prepared: Any, tmp_path: Path) -> None:
    from peft.utils import get_peft_model_state_dict

    from vtrain.services.validation_adapters import applied
    from vtrain_ltxvideo.saving import save_lora

    runner, bundle = prepared()
    model = bundle.model
    with torch.no_grad():  # a trained-looking adapter (lora_B starts at zero)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    save_lora(bundle, tmp_path / "lora")
    for weight_name in (None, "pytorch_lora_weights_comfyui.safetensors"):  # both published layouts
        state, alpha = runner.family.read_lora(str(tmp_path / "lora"), weight_name)
        assert state and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in state)
    state, alpha = runner.family.read_lora(str(tmp_path / "lora"), None)
    before_names = [n for n, _ in model.named_parameters()]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    saved_before = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    x = torch.randn(1, 4, 32)
    probe = model.transformer_blocks[0].attn1.to_q
    plain = probe(x)
    with applied(model, [(state, alpha, 1.0)]):
        stacked = probe(x)
        assert any("vtrain_validation" in n for n, _ in model.named_parameters())
    # the same adapter twice: the stacked delta is the trained delta again
    torch.testing.assert_close(stacked - probe.base_layer(x), 2 * (plain - probe.base_layer(x)), atol=1e-5, rtol=1e-4)
    assert [n for n, _ in model.named_parameters()] == before_names
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    torch.testing.assert_close(probe(x), plain)
    after = get_peft_model_state_dict(model)
    assert set(after) == set(saved_before) and all(torch.equal(after[k], saved_before[k]) for k in after)


def test_validation_using_datasets_conditions_on_the_sample_first_frame(prepared: Any) -> None:
    import numpy as np

    from vtrain_ltxvideo.decoding import decode_latents
    from vtrain_ltxvideo.validation import conditioning_image

    runner, bundle = prepared({"validation_using_datasets": True})
    assert runner.family.traits.dataset_validation
    channels = runner.family.traits.latent_channels
    latents = torch.randn(channels, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    bundle.meta["validation_samples"] = [{"latents": latents}]
    image = conditioning_image(bundle, runner.config)
    expected = decode_latents(bundle, latents[None, :, :1])[0, 0].permute(1, 2, 0).numpy()
    assert image is not None and np.abs(np.asarray(image) / 255.0 - expected).max() < 1 / 255 + 1e-6
    runner, bundle = prepared()
    bundle.meta["validation_samples"] = [{"latents": latents}]
    assert conditioning_image(bundle, runner.config) is None  # not asked for: text-to-video as before
