"""Run under ``torchrun --nproc_per_node 2`` (gloo, CPU) by ``test_fsdp.py``; writes ``rank<N>.json``.

1. For LoRA and full fine-tuning of tinyflow (and the full one again with activation checkpointing,
   no resharding after the forward and CPU offload of the shards): 3 AdamW updates of an FSDP2-sharded model, each rank on
   its half of a global batch (fixed sigmas and noise), against an unsharded model on the whole batch
   in the same process. Records both losses, the clipped norms, the largest weight difference after
   consolidation and the fraction of the parameters this rank holds (DTensor local shards).
2. ``fsdp_cpu_ram_efficient_loading`` from a saved model folder: which ranks read the weights file,
   and whether the consolidated shards equal the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator

from vtrain.data.base import collate
from vtrain.family import TrainState
from vtrain.runner import Runner
from vtrain.training.sharding import clip_grad_norm, consolidated, local_fraction, shard_model

BASE = {"model_family": "tinyflow", "max_train_steps": 1, "mixed_precision": "no", "base_model_default_dtype": "fp32",
        "lora_rank": 4, "seed": 3, "tinyflow_width": 32, "tinyflow_depth": 2, "grad_clip_method": "norm"}


def build(overrides: dict[str, Any], acc: Any, fsdp: bool) -> tuple[Any, Any]:
    runner = Runner.from_config({**BASE, **overrides, "fsdp_enable": fsdp}, plugins=["vtrain.testing.plugin"],
                                autoload=False)
    torch.manual_seed(3)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, None if fsdp else torch.device("cpu"))
    if fsdp:
        shard_model(bundle, runner.config, runner.family, acc)
    return runner, bundle


def compare(model_type: str, acc: Any, folder: Path, **options: Any) -> dict[str, Any]:
    overrides = {"model_type": model_type, "output_dir": str(folder / model_type)}
    ref_runner, ref = build(overrides, acc, fsdp=False)
    runner, sharded = build({**overrides, **options}, acc, fsdp=True)
    dataset = ref_runner.family.build_dataset(ref_runner.config)
    rank = acc.process_index
    ref_params = dict(ref.trainable_named_parameters())
    params = [p for _, p in sharded.trainable_named_parameters()]
    ref_opt = torch.optim.AdamW(ref_params.values(), lr=1e-2)
    opt = torch.optim.AdamW(params, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    record: dict[str, Any] = {"ref_loss": [], "loss": [], "ref_norm": [], "norm": []}
    for step in range(3):
        batch = collate([dataset[i] for i in (4 * step, 4 * step + 2, 4 * step + 4, 4 * step + 6)])  # one bucket
        batch["sigmas"] = torch.rand(4, generator=generator)
        batch["noise"] = torch.randn(batch["latents"].shape, generator=generator)
        out = ref_runner.hooks.compute_loss(ref, batch, ref_runner.config, TrainState())
        out.loss.backward()
        record["ref_norm"].append(float(torch.nn.utils.clip_grad_norm_(list(ref_params.values()), 0.5)))
        ref_opt.step()
        ref_opt.zero_grad()
        record["ref_loss"].append(float(out.loss))
        half = {k: (v[2 * rank:2 * rank + 2] if torch.is_tensor(v) else v[2 * rank:2 * rank + 2]) for k, v in batch.items()}
        out = runner.hooks.compute_loss(sharded, half, runner.config, TrainState())
        out.loss.backward()
        record["norm"].append(clip_grad_norm(acc, params, 0.5))
        opt.step()
        opt.zero_grad()
        loss = out.loss.detach().clone()
        dist.all_reduce(loss)
        record["loss"].append(float(loss) / 2)
    record["fraction"] = local_fraction(sharded.model)
    record["master_dtypes"] = sorted({str(p.to_local().dtype) for p in params})
    with consolidated(sharded.model) as holder:
        if holder:
            full = {name.replace("._checkpoint_wrapped_module", ""): p for name, p in sharded.model.named_parameters()}
            record["max_weight_diff"] = max(float((full[name.removeprefix("model.")].detach() - p.detach()).abs().max())
                                            for name, p in ref_params.items())
    return record


def efficient_loading(acc: Any, folder: Path) -> dict[str, Any]:
    import safetensors.torch

    from vtrain.testing.tinyflow_model import TinyFlowModel

    pretrained = folder / "pretrained"
    if acc.is_main_process:
        torch.manual_seed(11)
        TinyFlowModel(channels=4, width=32, depth=2, num_classes=4).save_pretrained(pretrained)
    acc.wait_for_everyone()
    reads: list[str] = []
    original = safetensors.torch.load_file

    def recording(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(str(path))
        return original(path, *args, **kwargs)

    safetensors.torch.load_file = recording
    try:
        _runner, bundle = build({"model_type": "full", "output_dir": str(folder / "efficient"),
                                 "pretrained_model_name_or_path": str(pretrained),
                                 "fsdp_cpu_ram_efficient_loading": True}, acc, fsdp=True)
    finally:
        safetensors.torch.load_file = original
    record: dict[str, Any] = {"reads": reads, "fraction": local_fraction(bundle.model)}
    with consolidated(bundle.model) as holder:
        if holder:
            saved = original(str(pretrained / "model.safetensors"))
            record["equal_to_file"] = all(torch.equal(saved[name], p.detach())
                                          for name, p in bundle.model.named_parameters())
    return record


def main(folder: Path) -> None:
    acc = Accelerator(cpu=True, mixed_precision="no")
    results = {"lora": compare("lora", acc, folder), "full": compare("full", acc, folder),
               # the same full fine-tune with every block checkpointed, gathered weights kept after the
               # forward, and the shards, gradients and optimizer state offloaded to the CPU
               "full_options": compare("full", acc, folder, fsdp_activation_checkpointing=True,
                                       fsdp_reshard_after_forward=False, fsdp_offload_params=True),
               # HSDP's 2-D mesh: 2 model copies x 1 shard (gradients all-reduced between the copies)
               "hsdp": compare("lora", acc, folder, fsdp_replicate_degree=2),
               # bf16 policy: gathered in bf16 for compute, fp32 masters stay sharded, fp32 gradient reduction
               "bf16": compare("full", acc, folder, mixed_precision="bf16"),
               "efficient": efficient_loading(acc, folder)}
    (folder / f"rank{acc.process_index}.json").write_text(json.dumps(results))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
