"""The training loop: sample a bucket batch, compute the loss terms, step, checkpoint, validate.

Every optional feature arrives through a hook; this file reads top to bottom.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.checkpoint import (
    CheckpointWriter,
    LoopPosition,
    list_checkpoints,
    load_checkpoint,
    read_fingerprint,
)
from vtrain.data.base import collate, group_by_bucket, plan_epoch
from vtrain.errors import TrainingError
from vtrain.family import TrainState
from vtrain.run import RunResult
from vtrain.services.optimizers import set_optimizer_mode
from vtrain.training.prompts import collect_prompts
from vtrain.training.stopping import CHEAP_CHECKPOINT_BYTES, RunStopped, StopSignals

if TYPE_CHECKING:
    from vtrain.run import RunContext


class TrainingLoop:
    """One run's loop. Built by :class:`vtrain.Runner` after the model and data are prepared."""

    def __init__(self, run: RunContext, optimizer: Any, lr_scheduler: Any, total_steps: int, max_epochs: int | None) -> None:
        self.run = run
        self.config = run.config
        self.acc = run.accelerator
        self.bundle = run.bundle
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.total_steps = total_steps
        self.max_epochs = max_epochs
        self.trainables = dict(self.bundle.trainable_named_parameters())
        self.params = list(self.trainables.values())
        self.extra_params = [p for name, p in self.trainables.items() if not name.startswith("model.")]
        self.buckets = group_by_bucket(run.dataset)
        from vtrain.fingerprint import dataset_fingerprint, run_fingerprint

        self.fingerprint = {**run_fingerprint(self.config), "dataset": dataset_fingerprint(run.dataset)}
        self.sharded = bool(self.config.fsdp_enable)
        if self.sharded:
            from vtrain.checkpoint_sharded import ShardedCheckpointWriter

            self.checkpoints = ShardedCheckpointWriter(run.output_dir, self.config.checkpoints_total_limit, self.acc,
                                                       self.fingerprint)
        else:
            self.checkpoints = CheckpointWriter(run.output_dir, self.config.checkpoints_total_limit, self.acc,
                                                self.fingerprint)
        self.prompts = collect_prompts(self.config)
        self.validation_paths: list[Path] = []
        self.metrics_file: Any = None
        self._postfix_at = 0.0
        self._samples_per_update = (self.config.train_batch_size * self.config.gradient_accumulation_steps
                                    * self.acc.num_processes)
        self.stop = StopSignals(self._where)
        self.state: TrainState | None = None

    # -- the run -----------------------------------------------------------------------------

    def train(self) -> RunResult:
        self.stop.install()
        try:
            return self._train()
        finally:
            self.stop.restore()
            if self.metrics_file is not None and not self.metrics_file.closed:
                self.metrics_file.close()  # also when the run stops on an error: keep what was logged

    def _train(self) -> RunResult:
        config, acc, hooks = self.config, self.acc, self.run.hooks
        started = time.perf_counter()
        self.checkpoints.clean_leftovers()
        # before the restore, so objects plugins register with run.register_stateful are restored too
        hooks.on_run_start(self.run)
        state, resumed_from = self._start_or_resume()
        state.shift_for = lambda shape: hooks.schedule_shift(config, tuple(shape))
        self.run.state = state
        self.state = state
        set_optimizer_mode(self.optimizer, "train")  # schedule-free optimizers train on their y weights
        hooks.on_train_begin(self.run, state.step)
        if acc.is_main_process:
            metrics = self.run.output_dir / "metrics.jsonl"
            _drop_metrics_after(metrics, state.step)  # a killed run logged steps the resume repeats
            # buffered: flushed at checkpoints and at the end; lines lost to a kill are past the last
            # checkpoint, which the resumed run writes again
            self.metrics_file = open(metrics, "a", encoding="utf-8")

        if self.prompts and resumed_from is None and not config.disable_benchmark:
            self._validate(step=0)

        progress = self._progress_bar(initial=state.step)
        last_loss: float | None = None
        accumulated: dict[str, float] = {}
        micro_batches = 0
        step_started = time.perf_counter()
        update_start = (state.epoch, state.batch_in_epoch)
        while state.step < self.total_steps and (self.max_epochs is None or state.epoch < self.max_epochs):
            plan = plan_epoch(self.buckets, config.train_batch_size, config.seed, state.epoch,
                              acc.process_index, acc.num_processes)
            if hasattr(self.run.dataset, "set_epoch"):  # per-epoch caption dropout and dataset draws
                self.run.dataset.set_epoch(state.epoch)
            for batch in self._batches(plan.batches, start=state.batch_in_epoch):
                state.batch_in_epoch += 1
                terms = self._forward_backward(batch, state)
                for name, value in terms.items():
                    accumulated[name] = accumulated.get(name, 0.0) + value
                micro_batches += 1
                if not acc.sync_gradients:
                    if self._stop_now(at_update_end=False):  # abandon the half-accumulated update
                        self.optimizer.zero_grad(set_to_none=True)
                        state.epoch, state.batch_in_epoch = update_start
                        break
                    continue
                grad_norm = self._clip_and_step()
                state.step += 1
                logs = {name: value / micro_batches for name, value in accumulated.items()}
                logs.update(lr=self.lr_scheduler.get_last_lr()[0], step_seconds=time.perf_counter() - step_started,
                            epoch=state.epoch)
                if grad_norm is not None:
                    logs["grad_norm"] = grad_norm
                logs["samples_per_second"] = self._samples_per_update / max(logs["step_seconds"], 1e-9)
                last_loss = logs["loss"]
                accumulated, micro_batches = {}, 0
                hooks.on_step_end(self.run, state.step, logs)  # tryfirst implementations may add metrics
                self._log(state.step, logs, progress)
                if config.checkpoint_step_interval and state.step % config.checkpoint_step_interval == 0:
                    self._checkpoint(state)
                if config.validation_step_interval and state.step % config.validation_step_interval == 0 \
                        and state.step < self.total_steps and self.prompts:
                    self._validate(state.step)
                step_started = time.perf_counter()
                update_start = (state.epoch, state.batch_in_epoch)
                if state.step >= self.total_steps or self._stop_now(at_update_end=True):
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
                update_start = (state.epoch, state.batch_in_epoch)
                if self._stop_now(at_update_end=True):
                    break
                continue
            break
        if progress is not None:
            progress.close()
        if self.stop.requested is not None:
            self._stop_cleanly(state)

        if self.prompts:
            self._validate(state.step)
        if config.checkpoint_step_interval and not (self.run.output_dir / f"checkpoint-{state.step}").exists():
            self._checkpoint(state)
        model_paths: list[Path] = []
        set_optimizer_mode(self.optimizer, "eval")  # a schedule-free optimizer's averaged weights are the result
        if acc.is_main_process or self.sharded:  # sharded: every rank helps consolidate, rank 0 writes
            try:
                model_paths = hooks.save_model(self.bundle, config, self.run.output_dir)
            except Exception as error:
                self._raise_if_out_of_space(error, "the final model", self._trainable_bytes())
                raise
        acc.wait_for_everyone()
        if self.metrics_file is not None:
            self.metrics_file.close()
        return RunResult(
            steps=state.step,
            final_loss=last_loss,
            output_dir=self.run.output_dir,
            model_paths=model_paths,
            checkpoints=[path for _, path in list_checkpoints(self.run.output_dir)],
            validation=self.validation_paths,
            resumed_from=resumed_from,
            seconds=time.perf_counter() - started,
        )

    # -- pieces ------------------------------------------------------------------------------

    def _start_or_resume(self) -> tuple[TrainState, Path | None]:
        config = self.config
        state = TrainState(max_steps=self.total_steps)
        path = self.run.resume_path
        if path is None:
            return state, None
        saved_data = (read_fingerprint(path) or {}).get("dataset")
        if saved_data is not None and saved_data != self.fingerprint["dataset"]:
            self._say(f"note: the dataset changed since {path} was written ({saved_data.get('samples')} samples "
                      f"then, {self.fingerprint['dataset'].get('samples')} now): the data order differs from an "
                      "uninterrupted run")
        from vtrain.checkpoint_sharded import is_sharded_checkpoint, load_sharded_checkpoint

        if is_sharded_checkpoint(path):  # DCP re-shards: also into a run with another world size, or unsharded
            position, rng_restored = load_sharded_checkpoint(path, self.bundle, self.optimizer, self.lr_scheduler,
                                                             self.run.statefuls, self.acc.process_index)
        else:
            position, rng_restored = load_checkpoint(path, self.trainables, self.optimizer, self.lr_scheduler,
                                                     self.run.statefuls, self.acc.process_index)
        if not rng_restored or position.world_size != self.acc.num_processes:
            from vtrain.rng import seed_everything

            seed_everything(config.seed + 7919 * position.step + self.acc.process_index)
            if position.world_size != self.acc.num_processes:
                why = (f"it was written by {position.world_size} processes and this run has "
                       f"{self.acc.num_processes}, so the data order and noise differ")
            else:
                why = f"it holds no RNG state for process {self.acc.process_index}, so the noise differs"
            self._say(f"note: resuming from {path}: {why} from an uninterrupted run")
        state.step, state.epoch, state.batch_in_epoch = position.step, position.epoch, position.batch_in_epoch
        self._say(f"resumed from {path} at step {position.step} (epoch {position.epoch}, batch {position.batch_in_epoch})")
        return state, path

    def _batches(self, batches: list[list[int]], start: int) -> Any:
        dataset = self.run.dataset
        workers = self.config.dataloader_num_workers
        if workers > 0:
            from torch.utils.data import DataLoader

            yield from DataLoader(dataset, batch_sampler=batches[start:], collate_fn=collate, num_workers=workers,
                                  worker_init_fn=_ignore_interrupts)
            return
        for indices in batches[start:]:
            yield collate([dataset[i] for i in indices])

    def _forward_backward(self, batch: dict[str, Any], state: TrainState) -> dict[str, float]:
        acc = self.acc
        batch = {k: (v.to(acc.device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}
        with acc.accumulate(self.bundle.forward_model()):
            if self.sharded and self.config.gradient_accumulation_steps > 1:
                from vtrain.training.sharding import set_gradient_sync

                set_gradient_sync(self.bundle.model, acc.sync_gradients)
            with acc.autocast():
                out = self.run.hooks.compute_loss(self.bundle, batch, self.config, state)
            acc.backward(out.loss)
            # read after the backward pass: a device sync between forward and backward would idle the accelerator
            # (a non-finite loss still stops the run before the optimizer step)
            loss_value = float(out.loss.detach().float().item())
            if not math.isfinite(loss_value):
                terms = {name: float(t.detach().float().item()) for name, t in out.terms.items()}
                raise TrainingError(f"the loss is {loss_value} at step {state.step + 1} "
                                    f"(epoch {state.epoch}, batch {state.batch_in_epoch}); terms: {terms}. "
                                    "Lower learning_rate, enable gradient clipping (max_grad_norm), or check the data")
        values = {"loss": loss_value}
        for name, term in out.terms.items():
            values[f"loss/{name}"] = float(term.detach().float().item())
        values.update({name: float(value) for name, value in out.metrics.items()})  # 0-dim tensors read here
        return values

    def _clip_and_step(self) -> float | None:
        acc, config = self.acc, self.config
        if acc.num_processes > 1:
            for param in self.extra_params:  # plugin-owned trainables are not inside the DDP wrapper
                if param.grad is not None:
                    param.grad.copy_(acc.reduce(param.grad, reduction="mean"))
        # The optimizer is not wrapped by accelerate (its wrapper costs ~1 ms a step in package
        # look-ups); fp16 loss scaling is applied here with accelerate's own GradScaler.
        import torch

        scaler = acc.scaler
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        grad_norm = None
        if config.max_grad_norm > 0:
            if self.sharded:  # global norm across the shards and the plugin-owned gradients
                from vtrain.training.sharding import clip_grad_norm

                grad_norm = clip_grad_norm(acc, self.params, config.max_grad_norm)
            elif config.grad_clip_method == "norm":
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)  # read after the step
            else:
                torch.nn.utils.clip_grad_value_(self.params, config.max_grad_norm)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return None if grad_norm is None else float(grad_norm)

    def _checkpoint(self, state: TrainState) -> None:
        position = LoopPosition(step=state.step, epoch=state.epoch, batch_in_epoch=state.batch_in_epoch,
                                world_size=self.acc.num_processes, seed=self.config.seed)
        try:
            if self.sharded:
                path = self.checkpoints.save_sharded(position, self.bundle, self.optimizer, self.lr_scheduler,
                                                     self.run.statefuls)
            else:
                path = self.checkpoints.save(position, self.trainables, self.optimizer, self.lr_scheduler,
                                             self.run.statefuls)
        except Exception as error:
            self._raise_if_out_of_space(error, f"checkpoint-{state.step}", self._checkpoint_bytes())
            raise
        if self.metrics_file is not None:
            self.metrics_file.flush()
        self.run.hooks.on_checkpoint(self.run, state.step, path)

    # -- stopping on a signal, and a full disk ---------------------------------------------------

    def _stop_now(self, at_update_end: bool) -> bool:
        """Whether to stop here. With several processes every rank must stop at the same update, so the
        flag is shared (at update ends only: a rank never abandons an update the others finish)."""
        if self.acc.num_processes == 1:
            return self.stop.requested is not None
        if not at_update_end:
            return False
        import torch

        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=self.acc.device)
        stop = bool(self.acc.reduce(flag, reduction="sum").item() > 0)
        if stop and self.stop.requested is None:
            self.stop.requested = "SIGTERM"  # another rank was told; this one follows
        return stop

    def _stop_cleanly(self, state: TrainState) -> None:
        """Save what is due or cheap, then end the run with :class:`RunStopped` naming where it stopped."""
        config = self.config
        size = self._trainable_bytes()
        existing = self.run.output_dir / f"checkpoint-{state.step}"
        if state.step == 0:
            saved = "no update had finished, so there is nothing to save"
        elif existing.is_dir() and any(step == state.step for step, _ in list_checkpoints(self.run.output_dir)):
            saved = f"{existing.name} was just written"
        elif config.checkpoint_step_interval or size <= CHEAP_CHECKPOINT_BYTES:
            why = (f"due: checkpoints are on (every {config.checkpoint_step_interval} updates)"
                   if config.checkpoint_step_interval else
                   f"cheap: {_mib(size)} of trainable weights")
            self._checkpoint(state)
            saved = f"wrote checkpoint-{state.step} ({why})"
        else:
            saved = (f"no checkpoint written: checkpoint_step_interval is 0 and the trainable weights are "
                     f"{_mib(size)} (more than {_mib(CHEAP_CHECKPOINT_BYTES)})")
        if self.metrics_file is not None:
            self.metrics_file.flush()
        self.acc.wait_for_everyone()
        raise RunStopped(f"{self.stop.requested} at update {state.step} of {self.total_steps} "
                         f"(epoch {state.epoch}); {saved}\n{self._where()}", self.stop.requested or "SIGTERM")

    def _where(self) -> str:
        step = self.state.step if self.state is not None else 0
        checkpoints = list_checkpoints(self.run.output_dir)
        last = f"{checkpoints[-1][1]} (update {checkpoints[-1][0]})" if checkpoints else "none"
        resume = (f"  resume with:      {self.run.resume_command}" if checkpoints else
                  "  resume:           no checkpoint to resume from; run the same command again to start over")
        return f"  update reached:   {step}\n  last checkpoint:  {last}\n{resume}"

    def _trainable_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.params)

    def _checkpoint_bytes(self) -> int:
        """What a checkpoint takes: the last one's size, or the weights plus Adam's two moments."""
        checkpoints = list_checkpoints(self.run.output_dir)
        if checkpoints:
            from vtrain.disk import folder_bytes

            return folder_bytes(checkpoints[-1][1])
        return 3 * self._trainable_bytes()

    def _raise_if_out_of_space(self, error: BaseException, what: str, needed: int) -> None:
        import shutil

        from vtrain.disk import free_bytes, human, is_out_of_space

        leftovers = list(self.run.output_dir.glob(".checkpoint-*.tmp-*"))
        # torch.save reports a full disk as "basic_ios::clear: iostream error": read the disk itself too
        if not is_out_of_space(error) and free_bytes(self.run.output_dir) >= needed:
            return
        for leftover in leftovers:  # free what the failed write took
            shutil.rmtree(leftover, ignore_errors=True)
        checkpoints = list_checkpoints(self.run.output_dir)
        last = f"{checkpoints[-1][1]} (update {checkpoints[-1][0]}), intact" if checkpoints else "none"
        resume = f"; resume with: {self.run.resume_command}" if checkpoints else ""
        raise TrainingError(
            f"no space left on the device of {self.run.output_dir} while writing {what}: it needs about "
            f"{human(needed)} and {human(free_bytes(self.run.output_dir))} is free. Last good checkpoint: {last}. "
            f"Free some space (or lower checkpoints_total_limit, or choose another output_dir){resume}") from None

    def _validate(self, step: int) -> None:
        acc = self.acc
        artifacts = []
        set_optimizer_mode(self.optimizer, "eval")
        try:
            if self.sharded:  # every rank runs the sampling (block by block gathers); rank 0 keeps the media
                from vtrain.training.sharding import validate_sharded

                artifacts = validate_sharded(self.run, step, self.prompts)
            elif acc.is_main_process:
                artifacts = self.run.hooks.validate(self.bundle, self.config, step, self.prompts)
            if acc.is_main_process:
                self.validation_paths.extend(a.path for a in artifacts)
                self.run.hooks.on_validation(self.run, step, artifacts)
        finally:
            set_optimizer_mode(self.optimizer, "train")
        acc.wait_for_everyone()

    def _log(self, step: int, logs: dict[str, float], progress: Any) -> None:
        if self.metrics_file is not None:
            self.metrics_file.write(json.dumps({"step": step, **logs}) + "\n")
        if progress is not None:
            progress.update(1)
            now = time.monotonic()
            if now - self._postfix_at >= 0.5:  # formatting the postfix every step costs more than the display
                self._postfix_at = now
                progress.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", refresh=False)

    def _progress_bar(self, initial: int) -> Any:
        if not self.acc.is_main_process:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=initial, desc="training", unit="step", dynamic_ncols=True,
                    mininterval=0.5)

    def _say(self, message: str) -> None:
        if self.acc.is_main_process:
            print(message, flush=True)


def _ignore_interrupts(_worker: int) -> None:
    """Data workers leave Ctrl-C to the main process, which stops the run cleanly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keep only the ``metrics.jsonl`` lines of updates up to ``step`` (atomically rewritten)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry_step = json.loads(line).get("step", 0)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
        if entry_step <= step:
            kept.append(line)
    from vtrain.atomic import atomic_write_bytes

    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())
