"""The GPU paths of vtrain-offload, checked on the CPU: attention kernels that refuse a mask run only on
the self-attention layers (training and validation), configure-time refusals, every block offloaded
again after a checkpointed backward pass, and torchao's inner tensors following their group."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain.errors import ConfigError
from vtrain_ltxvideo.synthetic import SyntheticDataPlugin


def _prepare(config: dict[str, Any]) -> tuple[Any, Any]:
    from vtrain.testing.helpers import prepare_bundle

    return prepare_bundle(config)


def _batch(runner: Any, bundle: Any) -> dict[str, Any]:
    from vtrain.data.base import collate

    dataset = SyntheticDataPlugin(count=2, frames=9, is_i2v=False).build_dataset(
        bundle=bundle, config=runner.config, family=runner.family)
    return collate([dataset[0], dataset[1]])


def _state() -> Any:
    from vtrain.family import TrainState

    return TrainState(shift_for=lambda shape: None)


def test_maskless_table_matches_the_installed_diffusers() -> None:
    """Each registered backend is called with a mask: exactly the table's backends refuse it."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from vtrain_offload.speed import MASKLESS_BACKENDS

    q = torch.randn(1, 4, 2, 8)
    refusing = set()
    for name, fn in _AttentionBackendRegistry._backends.items():
        if "attn_mask" not in inspect.signature(fn).parameters:
            continue
        try:
            fn(query=q, key=q, value=q, attn_mask=torch.ones(1, 2, 4, 4, dtype=torch.bool))
        except ValueError as error:
            if "attn_mask` is not supported" in str(error):
                refusing.add(name.value)
        except Exception:  # missing kernels on this machine: not a mask refusal
            pass
    assert refusing == set(MASKLESS_BACKENDS)


def _fake_backend(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[int]) -> None:
    """Stand in for a CUDA kernel that refuses masks, as diffusers' flash and sage functions do."""
    from diffusers.models import attention_dispatch as dispatch

    def kernel(query: Any, key: Any, value: Any, attn_mask: Any = None, **_: Any) -> Any:
        if attn_mask is not None:
            raise ValueError("`attn_mask` is not supported (fake kernel)")
        calls.append(query.shape[1])
        return dispatch._native_attention(query=query, key=key, value=value)

    enum = dispatch.AttentionBackendName(name)
    monkeypatch.setitem(dispatch._AttentionBackendRegistry._backends, enum, kernel)
    monkeypatch.setattr(dispatch, "_check_attention_backend_requirements", lambda backend: None)
    monkeypatch.setattr("vtrain_offload.speed.attention_problem", lambda mechanism: None)
    monkeypatch.setattr("vtrain_offload.speed.needs_half_precision", lambda mechanism: False)


def test_flash_trains_on_self_attention_only(ltx_offload_config: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _fake_backend(monkeypatch, "flash", calls)
    runner, bundle = _prepare({**ltx_offload_config, "attention_mechanism": "flash", "gradient_checkpointing": True})
    blocks = bundle.model.transformer_blocks
    assert all(str(b.attn1.processor._attention_backend.value) == "flash" for b in blocks)
    assert all(b.attn2.processor._attention_backend is None for b in blocks)  # the masked layers keep sdpa
    out = runner.hooks.compute_loss(bundle, _batch(runner, bundle), runner.config, _state())
    out.loss.backward()
    assert len(calls) == 2 * len(blocks)  # forward + checkpoint recompute of each self-attention
    assert bundle.meta["speed"]["attention"] == ("flash", len(blocks), 2 * len(blocks))


def test_sage_validates_on_self_attention_only(ltx_offload_config: dict[str, Any], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _fake_backend(monkeypatch, "sage", calls)
    runner, bundle = _prepare({**ltx_offload_config, "attention_mechanism": "sageattention",
                               "validation_resolution": "64x64", "validation_num_video_frames": 9,
                               "validation_num_inference_steps": 2, "output_dir": str(tmp_path / "out")})
    artifacts = runner.hooks.validate(bundle, runner.config, 0, {"p": "a red square"})
    assert len(artifacts) == 1 and calls  # sage ran, and no layer handed it a mask
    assert all(b.attn1.processor._attention_backend is None for b in bundle.model.transformer_blocks)

    from diffusers.models.attention_dispatch import attention_backend

    with pytest.raises(ValueError, match="attn_mask"), attention_backend("sage"):  # the global switch fails
        runner.family.validate(bundle, runner.config, 0, {"p": "a red square"})


def _refused(config: dict[str, Any], plugins: list[Any] | None = None) -> str:
    from vtrain.runner import Runner

    with pytest.raises(ConfigError) as caught:
        Runner.from_config(config, plugins=plugins or [])
    return str(caught.value)


def test_gpu_only_combinations_are_refused_at_configure_time(ltx_offload_config: dict[str, Any],
                                                             tinyflow_config: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.runner import Runner

    monkeypatch.setattr("vtrain_offload.speed.attention_problem", lambda mechanism: None)  # as on a CUDA machine
    text = _refused({**tinyflow_config, "attention_mechanism": "flash"})
    assert "refuse an attention mask" in text and "tinyflow family passes one to every attention layer" in text
    text = _refused({**ltx_offload_config, "attention_mechanism": "flash"})  # fp32, no autocast
    assert "bf16/fp16 inputs only" in text and "mixed_precision=bf16" in text
    text = _refused({**ltx_offload_config, "attention_mechanism": "sageattention"})
    assert "validation runs the model in its base_model_default_dtype, fp32" in text
    Runner.from_config({**ltx_offload_config, "attention_mechanism": "flash", "mixed_precision": "bf16"})

    group = {**ltx_offload_config, "enable_group_offload": True, "gradient_checkpointing": True}
    notices = Runner.from_config({**group, "group_offload_use_stream": True}).config.notices  # SimpleTuner's quick-start
    assert any(n.startswith("group_offload_use_stream: accepted, no effect") and "without a stream" in n for n in notices)
    for precision in ("int8-quanto", "nf4-bnb"):
        text = _refused({**group, "base_model_precision": precision})
        assert f"{precision} weights keep their payload and scales in inner tensors" in text
    Runner.from_config({**group, "base_model_precision": "int8-torchao"})


def test_every_block_is_offloaded_again_after_backward(ltx_offload_config: dict[str, Any]) -> None:
    from vtrain_offload import group

    runner, bundle = _prepare({**ltx_offload_config, "enable_group_offload": True, "gradient_checkpointing": True})
    groups = group.groups(bundle.model)
    batch = _batch(runner, bundle)
    loaded_in_backward: list[int] = []

    def track(grad: torch.Tensor) -> torch.Tensor:
        loaded_in_backward.append(sum(g._vtrain_loaded for g in groups))
        return grad

    for _ in range(2):  # twice: the second step starts from the state the first left
        out = runner.hooks.compute_loss(bundle, batch, runner.config, _state())
        out.loss.register_hook(track)
        out.loss.backward()
        assert [g._vtrain_loaded for g in groups] == [False] * len(groups)
    assert loaded_in_backward == [0, 0]

    # the same forward without the plugin's wrapper (checkpoint early stop on) leaves blocks loaded
    out = runner.family.compute_loss(bundle, batch, runner.config, _state())
    out.loss.backward()
    assert any(g._vtrain_loaded for g in groups)


def _inner_devices(tensor: Any, prefix: str) -> dict[str, str]:
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        found: dict[str, str] = {}
        for name in flatten()[0]:
            found.update(_inner_devices(getattr(tensor, name), f"{prefix}.{name}"))
        return found
    return {prefix: tensor.device.type}


def test_torchao_inner_tensors_follow_their_group(ltx_offload_config: dict[str, Any]) -> None:
    """diffusers swaps torchao tensors whole: after the onload transfer (to the meta device, the CPU's
    stand-in for a second device) every inner tensor of every offloaded quantised weight is there."""
    from diffusers.hooks.group_offloading import _is_torchao_tensor

    from vtrain_offload import group

    _runner, bundle = _prepare({**ltx_offload_config, "enable_group_offload": True, "gradient_checkpointing": True,
                                "base_model_precision": "int8-torchao"})
    names = {id(p): n for n, p in bundle.model.named_parameters()}
    quantised = 0
    for g in group.groups(bundle.model):
        g.onload_device = torch.device("meta")
        params, _buffers = group._group_tensors(g)
        for param in params:
            if not _is_torchao_tensor(param):
                continue  # plain tensors: set_data refuses a CPU -> meta move, not a case to check
            assert set(_inner_devices(param, names[id(param)]).values()) == {"cpu"}
            g._transfer_tensor_to_device(param, param.data, None)  # what onload_ does for each tensor
            devices = _inner_devices(param, names[id(param)])
            assert len(devices) >= 2 and set(devices.values()) == {"meta"}, devices
            quantised += 1
    assert quantised == 20  # 2 blocks x 10 Linear layers


def test_encoders_leave_the_accelerator_after_caching_and_validation(tinyflow_config: dict[str, Any],
                                                                    make_runner: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any offload option: a component left off the CPU (the meta device stands in for the GPU) is
    returned once the datasets are built and after a validation; nothing moves when all are on the CPU."""
    from vtrain_offload import plugin

    calls: list[str] = []
    monkeypatch.setattr(plugin, "return_components_to_cpu", lambda bundle: calls.append("released") or [])
    runner = make_runner(tinyflow_config)
    assert not runner.config.enable_model_cpu_offload
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.build_dataset(bundle, runner.config, runner.family)
    runner.hooks.validate(bundle, runner.config, 0, {"p": "a prompt"})
    assert calls == []  # everything already on the CPU
    bundle.components["vae_on_gpu"] = torch.nn.Linear(2, 2, device="meta")
    runner.hooks.build_dataset(bundle, runner.config, runner.family)
    runner.hooks.validate(bundle, runner.config, 0, {"p": "a prompt"})
    assert calls == ["released", "released"]
