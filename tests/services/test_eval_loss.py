"""Evaluation loss: fixed timesteps and noise on held-out samples; never disturbs training; resumes exactly."""

from __future__ import annotations

import pytest
from services.conftest import read_metrics

from vtrain.hookspecs import hookimpl


def _eval_rows(output_dir):
    return {row["step"]: row for row in read_metrics(output_dir) if "eval/loss" in row}


def test_eval_loss_is_logged_and_leaves_training_untouched(tinyflow_config, service_runner, tmp_path):
    base = dict(tinyflow_config, max_train_steps=8, num_eval_samples=4, eval_timesteps=4)
    with_eval = dict(base, output_dir=str(tmp_path / "eval"), eval_steps_interval=4)
    without = dict(base, output_dir=str(tmp_path / "plain"), eval_steps_interval=100)  # same split, never scored
    runner = service_runner(with_eval)
    runner.run()
    service_runner(without).run()
    rows = _eval_rows(tmp_path / "eval")
    assert sorted(rows) == [4, 8]
    assert {"eval/loss", "eval/flow"} <= set(rows[4])
    assert rows[8]["eval/loss"] != rows[4]["eval/loss"]
    train_a = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "eval")]
    train_b = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "plain")]
    assert train_a == train_b  # scoring used no training randomness
    assert not _eval_rows(tmp_path / "plain")


def test_held_out_samples_are_not_trained_on(tinyflow_config, service_runner):
    seen: set[str] = set()

    class Spy:
        name = "spy"

        @hookimpl(tryfirst=True)
        def compute_loss(self, batch):
            if "sigmas" not in batch:
                seen.update(batch["id"])

    config = dict(tinyflow_config, max_train_steps=12, eval_steps_interval=6, num_eval_samples=4)
    runner = service_runner(config, plugins=(Spy(),))
    runner.run()
    from vtrain.services.eval_loss import pick_held_out

    held_out = {f"sample-{i:04d}" for i in pick_held_out(16, 4)}
    assert len(held_out) == 4
    assert seen and not (seen & held_out)


class Crash:
    name = "crash"

    @hookimpl
    def on_checkpoint(self, step):
        if step == 6:
            raise RuntimeError("simulated crash")


def test_eval_loss_is_identical_after_a_resume(tinyflow_config, service_runner, tmp_path):
    common = dict(tinyflow_config, max_train_steps=8, checkpoint_step_interval=3, eval_steps_interval=4)
    service_runner(dict(common, output_dir=str(tmp_path / "straight"))).run()
    broken = dict(common, output_dir=str(tmp_path / "broken"))
    with pytest.raises(RuntimeError):
        service_runner(broken, plugins=(Crash(),)).run()
    service_runner(dict(broken, resume_from_checkpoint="latest")).run()
    straight, resumed = _eval_rows(tmp_path / "straight"), _eval_rows(tmp_path / "broken")
    assert straight[8]["eval/loss"] == resumed[8]["eval/loss"]
    assert straight[4]["eval/loss"] == resumed[4]["eval/loss"]


def test_too_few_samples_for_the_split(tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    config = dict(tinyflow_config, tinyflow_num_samples=4, eval_steps_interval=2, num_eval_samples=4)
    with pytest.raises(ConfigError, match="num_eval_samples"):
        service_runner(config).run()


class _Repeated:
    """Three samples, each at three indices (repeats 2), with per-epoch reads."""

    def __init__(self) -> None:
        self.slots = [0, 1, 2] * 3
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index):
        return {"id": self.slots[index], "epoch": self.epoch}

    def bucket_of(self, index):
        return "b"

    def sample_of(self, index):
        return self.slots[index]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def describe(self):
        return []


def test_held_out_split_leaves_out_every_repeat_and_follows_the_epoch():
    from types import SimpleNamespace

    from vtrain.services import _state
    from vtrain.services.eval_loss import build_dataset

    config = SimpleNamespace(eval_steps_interval=2, num_eval_samples=1, eval_timesteps=2)
    bundle = SimpleNamespace(meta={})
    wrapper = build_dataset(bundle, config)
    next(wrapper)
    with pytest.raises(StopIteration) as done:
        wrapper.send(_Repeated())
    split = done.value.value
    held = {sample["id"] for sample in _state.lookup(bundle, "eval_loss").samples}
    assert len(held) == 1
    assert len(split) == 6 and not ({split[i]["id"] for i in range(len(split))} & held)
    split.set_epoch(3)
    assert split[0]["epoch"] == 3  # caption dropout and dataset draws move on each epoch
