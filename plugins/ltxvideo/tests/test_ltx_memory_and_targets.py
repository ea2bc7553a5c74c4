"""SimpleTuner's VAE memory switches and peft_lora_target_modules on the LTX-Video family."""

from __future__ import annotations

from typing import Any


def test_vae_memory_switches_change_the_ltx_vae(prepared: Any) -> None:
    _, bundle = prepared()
    vae = bundle.components["vae"]
    assert not (vae.use_slicing or vae.use_tiling or vae.use_framewise_encoding)
    runner, bundle = prepared({"vae_enable_slicing": True, "vae_enable_tiling": True, "vae_enable_temporal_roll": True})
    vae = bundle.components["vae"]
    assert vae.use_slicing and vae.use_tiling and vae.use_framewise_encoding and vae.use_framewise_decoding
    assert not [n for n in runner.config.notices if n.startswith("vae_enable")]  # LTX-Video's VAE offers all of them


def test_peft_lora_target_modules_replaces_lora_target(prepared: Any) -> None:
    _, bundle = prepared({"peft_lora_target_modules": '["to_k", "ff.net.2"]'})
    modules = {n.rsplit(".lora_A", 1)[0] for n, _ in bundle.model.named_parameters() if ".lora_A." in n}
    expected = {n for n, _ in bundle.model.named_modules() if n.endswith((".to_k", ".ff.net.2"))}
    assert modules == expected and bundle.model.peft_config["default"].target_modules == {"to_k", "ff.net.2"}
