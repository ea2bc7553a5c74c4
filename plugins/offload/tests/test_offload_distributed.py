"""Two gloo ranks (torchrun) with group offload and a torchao-quantised base: DDP is built over the
trainable weights only (frozen and offloaded tensors, torchao subclasses and buffers are excluded),
both ranks end with identical adapters, and each rank offloads to disk in its own folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from vtrain.testing.helpers import run_distributed
from vtrain_ltxvideo.testing import tiny_ltx_config

PLUGINS = ("vtrain_ltxvideo.plugin", "vtrain_offload.plugin", "vtrain_quant.plugin")
RECORDER = textwrap.dedent("""
    import hashlib, json, os
    from vtrain import hookimpl
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    _data = SyntheticDataPlugin(count=8, frames=9, is_i2v=False)

    @hookimpl
    def build_dataset(bundle, config, family):
        return _data.build_dataset(bundle=bundle, config=config, family=family)

    @hookimpl
    def on_run_start(run):
        import torch.distributed as dist
        wrapper = run.bundle.runtime_model
        ignored = set(wrapper.parameters_to_ignore)
        frozen = {n for n, p in run.bundle.model.named_parameters() if not p.requires_grad}
        info = {"wrapper": type(wrapper).__name__, "frozen_ignored": frozen <= ignored and bool(frozen),
                "buffers_ignored": {n for n, _ in run.bundle.model.named_buffers()} <= ignored,
                "reduced_all_trainable": all(p.requires_grad for p in wrapper._module_parameters),
                "reduced": len(wrapper._module_parameters),
                "subclasses": sum(type(p).__module__.startswith("torchao") for p in run.bundle.model.parameters())}
        with open(f"{run.output_dir}/ddp-rank{dist.get_rank()}.json", "w") as handle:
            json.dump(info, handle)

    @hookimpl
    def on_run_end(run, result):
        import torch.distributed as dist
        digest = hashlib.sha256()
        for name, param in run.bundle.trainable_named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().cpu().numpy().tobytes())
        with open(f"{run.output_dir}/weights-rank{dist.get_rank()}.txt", "w") as handle:
            handle.write(digest.hexdigest())
""")


def _run(config: dict[str, Any], folder: Path, port: int) -> Path:
    (folder / "recorder.py").write_text(RECORDER)
    proc = run_distributed(config, folder, [folder / "recorder.py"], port=port, plugins=PLUGINS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = Path(config["output_dir"])
    assert (out / "weights-rank0.txt").read_text() == (out / "weights-rank1.txt").read_text()
    return out


def test_ddp_wraps_only_the_trainable_weights(ltx_tiny_dir: Path, tmp_path: Path) -> None:
    """Without the exclusion DDP's construction broadcasts every tensor and fails on torchao's subclasses."""
    config = tiny_ltx_config(ltx_tiny_dir, tmp_path / "out", max_train_steps=2, lora_target="attention",
                             base_model_precision="int8-torchao", enable_group_offload=True,
                             gradient_checkpointing=True)
    out = _run(config, tmp_path, port=29531)
    for rank in (0, 1):
        info = json.loads((out / f"ddp-rank{rank}.json").read_text())
        assert info["wrapper"] == "DistributedDataParallel"
        assert info["frozen_ignored"] and info["buffers_ignored"] and info["reduced_all_trainable"]
        assert info["reduced"] == 2 * 2 * 4 * 2  # blocks x attentions x (q, k, v, out) x (lora_A, lora_B)
        assert info["subclasses"] == 20


def test_each_rank_offloads_to_its_own_folder(ltx_tiny_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "offload"
    config = tiny_ltx_config(ltx_tiny_dir, tmp_path / "out", max_train_steps=2, lora_target="attention",
                             enable_group_offload=True, gradient_checkpointing=True,
                             group_offload_to_disk_path=str(disk))
    _run(config, tmp_path, port=29535)
    folders = sorted(p.name for p in disk.iterdir())
    assert folders == ["rank-0", "rank-1"]
    for folder in folders:
        files = list((disk / folder).glob("group_*.safetensors"))
        assert len(files) >= 2, folder  # every rank kept its own files: none deleted the other's
