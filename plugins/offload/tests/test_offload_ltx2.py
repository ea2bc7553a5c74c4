"""Group offload and model CPU offload with the LTX-2 family (audio + video) on the tiny model: the hooks move the
frozen block weights of both streams' blocks (never the adapters, never the parts outside the blocks), seeded
runs train exactly like the plain run, a whole run with disk offload validates (mp4 with sound) and saves a LoRA
LTX2Pipeline loads, and int8-torchao weights move whole with their group."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("vtrain_ltx2")

from vtrain_ltx2.synthetic import SyntheticAVPlugin  # noqa: E402
from vtrain_ltx2.testing import tiny_ltx2_config  # noqa: E402


def _prepare(config: dict[str, Any]) -> tuple[Any, Any]:
    from vtrain.testing.helpers import prepare_bundle

    return prepare_bundle(config, seed=3)  # the same LoRA initialisation in every run


def _train(runner: Any, bundle: Any, steps: int) -> list[float]:
    from vtrain.testing.helpers import train_steps

    dataset = SyntheticAVPlugin(count=4, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                 family=runner.family)
    return train_steps(runner, bundle, [dataset[i] for i in range(len(dataset))], steps, lr=3e-3)


def _base(tiny: Path, out: Path, **extra: Any) -> dict[str, Any]:
    return tiny_ltx2_config(tiny, out / "out", gradient_checkpointing=True, ltx2_lora_targets="all", **extra)


@pytest.fixture(scope="module")
def plain_losses(ltx2_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path_factory.mktemp("plain")))
    return _train(runner, bundle, 6)


@pytest.mark.parametrize("settings", [
    {"enable_group_offload": True},
    {"enable_group_offload": True, "group_offload_to_disk_path": "DISK"},
    {"enable_group_offload": True, "group_offload_blocks_per_group": 2, "group_offload_to_disk_path": "DISK"},
    {"enable_group_offload": True, "group_offload_type": "leaf_level", "group_offload_to_disk_path": "DISK"},
    {"enable_model_cpu_offload": True},
], ids=["block-ram", "block-disk", "two-blocks-disk", "leaf-disk", "model-cpu-offload"])
def test_offload_trains_ltx2_like_the_plain_run(settings: dict[str, Any], ltx2_tiny_dir: Path, tmp_path: Path,
                                                plain_losses: list[float]) -> None:
    from vtrain_offload import group

    settings = {k: (str(tmp_path / "offload") if v == "DISK" else v) for k, v in settings.items()}
    runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path, **settings))
    model = bundle.model
    base = model.transformer_blocks[0].audio_attn1.to_q.base_layer.weight
    base_ptr = base.data_ptr()
    if settings.get("enable_group_offload"):
        moving = group.offloaded_ids(model)
        block_weights = {id(p) for n, p in model.named_parameters()
                         if n.startswith("transformer_blocks.") and "lora_" not in n}
        assert moving == block_weights | {id(b) for b in model.transformer_blocks.buffers()}
        # the audio stream's and the cross-modal layers' weights move with their block
        assert id(base) in moving and id(model.transformer_blocks[1].video_to_audio_attn.to_k.base_layer.weight) in moving
        trainables = [p for _, p in bundle.trainable_named_parameters()]
        assert trainables and not any(id(p) in moving for p in trainables)
        for outside in (model.proj_in, model.audio_proj_in, model.proj_out, model.audio_proj_out):
            assert all(id(p) not in moving for p in outside.parameters())
    lora = model.transformer_blocks[0].attn1.to_q.lora_A["default"].weight
    lora_ptr = lora.data_ptr()
    losses = _train(runner, bundle, 6)
    assert all(math.isfinite(v) for v in losses)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-4, atol=1e-5)
    assert lora.data_ptr() == lora_ptr  # adapters stay where the optimizer holds them
    disk = settings.get("group_offload_to_disk_path")
    if disk:
        assert len(list(Path(disk).glob("group_*.safetensors"))) >= 2
        assert base.data_ptr() != base_ptr  # the frozen weight was reloaded from disk by the hooks
    if settings.get("enable_model_cpu_offload"):
        assert all(p.device.type == "cpu" for c in bundle.components.values() if isinstance(c, torch.nn.Module)
                   for p in c.parameters())


def test_ltx2_run_with_group_offload_validates_and_saves_a_portable_lora(ltx2_tiny_dir: Path, tmp_path: Path) -> None:
    import av
    from diffusers import LTX2Pipeline
    from safetensors.torch import load_file

    from vtrain.runner import Runner

    config = _base(ltx2_tiny_dir, tmp_path, enable_group_offload=True, group_offload_to_disk_path=str(tmp_path / "off"),
                   max_train_steps=4, learning_rate=2e-2, validation_step_interval=4,
                   validation_prompt="a blue circle", validation_resolution="64x64", validation_num_video_frames=9,
                   validation_num_inference_steps=2, disable_benchmark=True)
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=4, frames=9)]).run()
    out = Path(config["output_dir"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert len(rows) == 4 and all(math.isfinite(r["loss"]) and "loss/audio_flow" in r for r in rows)
    [video] = result.validation
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames in (0, 9) and len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == 9
    saved = load_file(str(out / "pytorch_lora_weights.safetensors"))
    pipeline = LTX2Pipeline.from_pretrained(config["pretrained_model_name_or_path"])
    pipeline.load_lora_weights(str(out))
    loaded = dict(pipeline.transformer.named_parameters())
    assert len(saved) > 0 and any(torch.count_nonzero(v) for k, v in saved.items() if "lora_B" in k)
    assert any("lora_B" in name for name in loaded)


def test_ltx2_int8_torchao_weights_move_whole_with_their_group(ltx2_tiny_dir: Path, tmp_path: Path) -> None:
    """diffusers swaps torchao tensors whole: after the onload transfer (to the meta device, the CPU's stand-in for
    a second device) every inner tensor of every offloaded quantised weight of both streams is there."""
    from diffusers.hooks.group_offloading import _is_torchao_tensor

    from vtrain_offload import group

    _runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path, enable_group_offload=True,
                                     base_model_precision="int8-torchao"))
    names = {id(p): n for n, p in bundle.model.named_parameters()}
    moved: set[str] = set()
    for g in group.groups(bundle.model):
        g.onload_device = torch.device("meta")
        params, _buffers = group._group_tensors(g)
        for param in params:
            if not _is_torchao_tensor(param):
                continue
            inner = [getattr(param, name) for name in param.__tensor_flatten__()[0]]
            assert {t.device.type for t in inner} == {"cpu"}
            g._transfer_tensor_to_device(param, param.data, None)  # what onload_ does for each tensor
            inner = [getattr(param, name) for name in param.__tensor_flatten__()[0]]
            assert len(inner) >= 2 and {t.device.type for t in inner} == {"meta"}
            moved.add(names[id(param)].split(".")[2])
    assert {"attn1", "audio_attn1", "audio_to_video_attn", "video_to_audio_attn", "ff", "audio_ff"} <= moved


def _copy_whole(tensor: Any) -> Any:
    """A new tensor subclass object holding copies of ``tensor``'s inner tensors (a transfer's result, on the CPU)."""
    names, context = tensor.__tensor_flatten__()
    return type(tensor).__tensor_unflatten__({name: getattr(tensor, name).clone() for name in names}, context,
                                             tensor.size(), tensor.stride())


def test_nf4_torchao_base_with_group_offload_trains_like_nf4_without_it(ltx2_tiny_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """torchao's NF4Tensor keeps its payload and double-quantised scales in inner tensors, which diffusers'
    ``param.data = ...`` would leave behind; the groups move those weights whole (swap_tensors). On the CPU each
    move is made a real swap of copies, in the forward pass and in the checkpointed backward pass, and the run
    matches the nf4 run without offload."""
    from torchao.quantization import NF4Tensor

    from vtrain_offload import group

    nf4 = {"base_model_precision": "nf4-torchao"}
    runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path / "plain", **nf4))
    assert isinstance(bundle.model.transformer_blocks[0].audio_attn1.to_q.base_layer.weight, NF4Tensor)
    expected = _train(runner, bundle, 4)

    swaps: list[str] = []

    def copy_and_swap(tensors: list[Any], device: Any) -> None:
        for tensor in tensors:
            torch.utils.swap_tensors(tensor, _copy_whole(tensor).to(device))
            swaps.append(str(device))

    monkeypatch.setattr(group, "move_whole", copy_and_swap)
    runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path / "offload", enable_group_offload=True, **nf4))
    model = bundle.model
    whole = [t for g in group.groups(model) for t in g._vtrain_whole]
    nf4_block_weights = [p for n, p in model.named_parameters() if n.startswith("transformer_blocks.")
                         and isinstance(p, NF4Tensor)]
    assert whole and {id(t) for t in whole} == {id(p) for p in nf4_block_weights}
    assert {id(t) for t in whole} <= group.offloaded_ids(model)  # never made resident
    losses = _train(runner, bundle, 4)
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)
    per_pass = 2 * len(whole)  # each weight loaded and offloaded once per forward, and again in the backward
    assert len(swaps) >= 4 * 2 * per_pass, len(swaps)


def test_nf4_torchao_weights_follow_their_group_to_another_device(ltx2_tiny_dir: Path, tmp_path: Path) -> None:
    """The group's onload_ moves each NF4 weight's inner tensors to the onload device (the meta device, the CPU's
    stand-in for a second device), the Python objects staying the module's (NF4 with its block sizes, not a
    dequantised copy)."""
    from torchao.quantization import NF4Tensor

    from vtrain_offload import group

    _runner, bundle = _prepare(_base(ltx2_tiny_dir, tmp_path, enable_group_offload=True,
                                     base_model_precision="nf4-torchao"))
    weight = bundle.model.transformer_blocks[0].attn1.to_q.base_layer.weight
    checked = 0
    for g in group.groups(bundle.model):
        if not g._vtrain_whole:
            continue
        g.parameters, g.buffers = [], []  # the plain tensors: a CPU -> meta .data assignment is refused
        g.onload_device = torch.device("meta")
        g.onload_()
        for tensor in g._vtrain_whole:
            assert isinstance(tensor, NF4Tensor) and tensor.block_size == 64
            assert {getattr(tensor, n).device.type for n in tensor.__tensor_flatten__()[0]} == {"meta"}
            checked += 1
    assert checked == sum(isinstance(p, NF4Tensor) for p in bundle.model.transformer_blocks.parameters()) > 0
    assert bundle.model.transformer_blocks[0].attn1.to_q.base_layer.weight is weight and weight.device.type == "meta"


def test_an_nf4_weight_outside_the_blocks_is_made_resident_whole() -> None:
    """keep_resident puts a quantised weight outside the blocks (a family whose exclusions leave one) on the
    accelerator with all its inner tensors (the meta device stands in for it), not only its outer wrapper."""
    from torchao.quantization import NF4Tensor, to_nf4

    from vtrain_offload import group

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(512, 128, bias=False)
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(128, 128, bias=False)])

    model = Toy().requires_grad_(False)
    model.proj.weight = torch.nn.Parameter(to_nf4(model.proj.weight.data), requires_grad=False)
    group.apply(model, torch.device("cpu"), "block_level", 1, False, None)
    offloaded, resident = group.keep_resident(model, torch.device("meta"))
    weight = model.proj.weight
    assert (offloaded, resident) == (1, 1) and isinstance(weight, NF4Tensor)
    assert {getattr(weight, n).device.type for n in weight.__tensor_flatten__()[0]} == {"meta"}
