"""The readable start-up and end-of-run summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.run import RunContext, RunResult
    from vtrain.training.schedule import RunLength


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _origin(config: object, *keys: str) -> str:
    """`` [family default (x)]`` when one of ``keys`` got a family's recommended value."""
    for key in keys:
        source = config.source(key)  # type: ignore[attr-defined]
        if source.startswith("family default"):
            return f" [{source}]"
    return ""


def print_summary(run: RunContext, length: RunLength, optimizer_name: str, extra: list[str]) -> None:
    from vtrain.training.sharding import world_layout

    config, acc, bundle = run.config, run.accelerator, run.bundle
    assert bundle is not None
    total, trainable = bundle.parameter_counts()
    plugins = ", ".join(f"{p.name} {p.version}".strip() for p in run.plugins)
    effective = config.train_batch_size * config.gradient_accumulation_steps * acc.num_processes
    lines = [
        "vtrain run",
        f"  plugins       {plugins}",
        f"  family        {run.family.name} ({config.model_type}"
        + (f", {config.lora_type} rank {config.lora_rank}" if config.model_type == "lora" else "") + ")",
        f"  parameters    {_count(total)} total, {_count(trainable)} trainable ({100 * trainable / max(total, 1):.2f}%)",
        f"  device        {acc.device} x{acc.num_processes}, mixed precision {config.mixed_precision}, "
        f"gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}",
        f"  world         {world_layout(config, acc.num_processes, str(acc.device))}",
        f"  batch         {config.train_batch_size} x {config.gradient_accumulation_steps} accumulation x "
        f"{acc.num_processes} processes = {effective} samples per update",
        f"  length        {length.total_steps} updates ({length.updates_per_epoch:.1f} per epoch)",
        f"  optimizer     {optimizer_name}, lr {config.learning_rate:g}, schedule {config.lr_scheduler}, "
        f"warm-up {config.lr_warmup_steps}",
    ]
    if config.lr_warmup_steps > length.total_steps:
        lines.append(f"  note          lr_warmup_steps ({config.lr_warmup_steps}) exceeds the run length: "
                     "the learning rate never finishes warming up")
    lines.append(f"  base dtype    {config.base_model_default_dtype} [{config.source('base_model_default_dtype')}]")
    clip = "off" if config.max_grad_norm == 0 else f"{config.grad_clip_method} at {config.max_grad_norm:g}"
    lines.append(f"  clipping      {clip}{_origin(config, 'grad_clip_method', 'max_grad_norm')}")
    shift = ("resolution-dependent (auto)" if config.flow_schedule_auto_shift
             else f"{config.flow_schedule_shift:g}" if config.flow_schedule_shift is not None else "none")
    lines.append(f"  timesteps     {config.flow_sigma_sampling}, shift {shift}"
                 f"{_origin(config, 'flow_schedule_shift', 'flow_schedule_auto_shift')}")
    lines.append(f"  shift         {shift_in_use(run)}")
    for notice in getattr(config, "notices", []):
        lines.append(f"  note          {notice}")
    for line in run.dataset.describe() if hasattr(run.dataset, "describe") else []:
        lines.append(f"  data          {line}")
    for line in extra:
        lines.append(f"  plan          {line}")
    checkpoints = (f"every {config.checkpoint_step_interval} updates" if config.checkpoint_step_interval
                   else "at the end")
    lines.append(f"  output        {run.output_dir} (checkpoints {checkpoints})")
    from vtrain.services.redact import redact_text

    print(redact_text("\n".join(lines)), flush=True)  # plugin lines may quote a setting: never a secret


def shift_in_use(run: RunContext) -> str:
    """The ``schedule_shift`` answer for the first training sample's latents, as the summary shows it."""
    try:
        shape = tuple(run.dataset[0]["latents"].shape)
    except (KeyError, IndexError, TypeError, AttributeError):
        return "unknown (the first sample has no latents)"
    shift = run.hooks.schedule_shift(run.config, shape)
    where = f"for latents {'x'.join(map(str, shape))}"
    if shift is None or shift == 1:
        return f"none (1.0) {where}: training sigmas are used as sampled"
    return f"{shift:g} {where}: sigma -> shift*sigma / (1 + (shift-1)*sigma) on every training sample of this size"


def print_end_summary(result: RunResult) -> None:
    lines = [
        f"done: {result.steps} updates in {result.seconds:.1f}s, final loss "
        + (f"{result.final_loss:.5f}" if result.final_loss is not None else "n/a"),
        f"  output        {result.output_dir}",
    ]
    lines += [f"  model         {path}" for path in result.model_paths]
    if result.checkpoints:
        lines.append(f"  checkpoints   {', '.join(p.name for p in result.checkpoints)}")
    if result.validation:
        lines.append(f"  validation    {len(result.validation)} files under {result.validation[-1].parent}")
    print("\n".join(lines), flush=True)
