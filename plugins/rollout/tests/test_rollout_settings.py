"""The rollout probability over the run, and the configurations refused at start-up (with the key and the fix)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from vtrain.errors import ConfigError
from vtrain.hookspecs import hookimpl
from vtrain_rollout.settings import RolloutSettings

ROOT = Path(__file__).resolve().parents[3]


def test_ramp_reaches_prob_end_exactly_at_ramp_steps() -> None:
    settings = RolloutSettings(max_step_offset=5, ramp_steps=7, prob_start=0.1, prob_end=0.7)
    values = [settings.probability_at(step) for step in range(10)]
    assert values[0] == 0.1
    assert values[7] == 0.7 and values[8] == 0.7 and values[9] == 0.7  # exactly, and held
    assert values[3] == pytest.approx(0.1 + 0.6 * 3 / 7)
    assert all(a < b for a, b in zip(values[:7], values[1:8]))  # linear rise
    assert RolloutSettings(max_step_offset=5, ramp_steps=3, prob_start=0.3, prob_end=0.0).probability_at(3) == 0.0


def test_enabled_needs_an_offset_and_a_probability() -> None:
    assert not RolloutSettings(max_step_offset=0, probability=1.0).enabled
    assert not RolloutSettings(max_step_offset=4, probability=0.0).enabled
    assert RolloutSettings(max_step_offset=4, probability=0.2).enabled
    assert RolloutSettings(max_step_offset=4, ramp_steps=10).enabled  # the ramp ends at 0.5 by default
    assert RolloutSettings(max_step_offset=0, probability=1.0).probability_at(3) == 0.0


def test_defaults_follow_simpletuner(tinyflow_config: dict, make_runner: Any) -> None:
    settings = RolloutSettings.from_config(make_runner(tinyflow_config).config)
    assert (settings.max_step_offset, settings.probability, settings.ramp_steps) == (0, 0.0, 0)
    assert (settings.prob_start, settings.prob_end, settings.sampler) == (0.0, 0.5, "unipc")
    assert (settings.reflexflow, settings.alpha, settings.beta1, settings.beta2) == (True, 1.0, 10.0, 1.0)


class _NoVelocityFamily:
    """tinyflow's model and loss without the VelocityPredictor methods."""

    name = "novelocity"

    def __init__(self) -> None:
        from vtrain.testing.tinyflow import TinyFlowFamily

        self._inner = TinyFlowFamily()
        self.traits = self._inner.traits

    def __getattr__(self, name: str) -> Any:
        if name in ("draw_flow_inputs", "fixed_condition_mask", "predict_velocity"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class _NoVelocityPlugin:
    name = "novelocity-plugin"

    @hookimpl
    def register_families(self, register: Any) -> None:
        register(_NoVelocityFamily())


def test_family_without_velocity_prediction_is_refused_naming_both(tinyflow_config: dict, make_runner: Any) -> None:
    config = {**{k: v for k, v in tinyflow_config.items() if not k.startswith("tinyflow_")},
              "model_family": "novelocity", "scheduled_sampling_max_step_offset": 4,
              "scheduled_sampling_probability": 0.5}
    with pytest.raises(ConfigError) as error:
        make_runner(config, plugins=[_NoVelocityPlugin()])
    text = str(error.value)
    assert "scheduled_sampling_max_step_offset" in text and "plugin rollout" in text and "'novelocity'" in text
    assert "VelocityPredictor" in text and "predict_velocity" in text
    make_runner({**config, "scheduled_sampling_probability": 0.0}, plugins=[_NoVelocityPlugin()])  # off: accepted
    make_runner({**tinyflow_config, **{k: v for k, v in config.items() if k.startswith("scheduled_")}})  # tinyflow offers it


@pytest.mark.parametrize(("extra", "key"), [
    ({"scheduled_sampling_ramp_steps": 10, "scheduled_sampling_probability": 0.3}, "scheduled_sampling_probability"),
    ({"scheduled_sampling_prob_end": 0.3}, "scheduled_sampling_prob_end"),
    ({"scheduled_sampling_prob_start": 0.1}, "scheduled_sampling_prob_start"),
    ({"scheduled_sampling_reflexflow": True}, "scheduled_sampling_reflexflow"),
    ({"scheduled_sampling_sampler": "heun"}, "scheduled_sampling_sampler"),
    ({"scheduled_sampling_probability": 1.5}, "scheduled_sampling_probability"),
])
def test_keys_that_would_change_nothing_or_are_invalid_are_refused(extra: dict, key: str, tinyflow_config: dict,
                                                                   make_runner: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        make_runner({**tinyflow_config, **extra})


def _json_blocks(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)]


@pytest.mark.parametrize("page", ["docs/rollout.md", "plugins/rollout/README.md"])
def test_documented_configs_are_accepted_as_written(page: str, ltx_tiny_dir: Path, tmp_path: Path) -> None:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.testing import tiny_ltx_config

    blocks = _json_blocks(ROOT / page)
    assert blocks
    for block in blocks:
        runner = Runner.from_config({**tiny_ltx_config(ltx_tiny_dir, tmp_path / "out"), **block})
        settings = RolloutSettings.from_config(runner.config)
        assert settings.enabled and settings.max_step_offset == block["scheduled_sampling_max_step_offset"]


def test_documented_defaults_are_the_registry_defaults(make_runner: Any, tinyflow_config: dict) -> None:
    config = make_runner(tinyflow_config).config
    rows = re.findall(r"^\| `(scheduled_sampling_[a-z0-9_]+)` \| ([^|]+) \|", (ROOT / "docs/rollout.md").read_text(),
                      flags=re.M)
    assert len(rows) >= 7
    for key, default in rows:
        value = getattr(config, key)
        written = default.split()[0].strip("`")
        if value is None:  # unset keys document what unset means
            continue
        assert str(value).lower() == written.lower() or (written == "0" and value == 0), (key, default)


def test_simpletuners_ramp_start_and_cosine_shape() -> None:
    """scheduled_sampling_start_step holds prob_start until that step; ramp_shape cosine eases in and out."""
    import math

    linear = RolloutSettings(max_step_offset=5, ramp_steps=4, prob_start=0.1, prob_end=0.5, start_step=3)
    assert [linear.probability_at(s) for s in (0, 3)] == [0.1, 0.1]
    assert linear.probability_at(5) == pytest.approx(0.1 + 0.4 * 2 / 4) and linear.probability_at(7) == 0.5
    cosine = RolloutSettings(max_step_offset=5, ramp_steps=4, prob_start=0.1, prob_end=0.5, ramp_shape="cosine")
    assert cosine.probability_at(1) == pytest.approx(0.1 + 0.4 * (0.5 - 0.5 * math.cos(math.pi / 4)))
    assert cosine.probability_at(2) == pytest.approx(0.3) and cosine.probability_at(4) == 0.5


def test_simpletuners_offset_strategies() -> None:
    import torch

    from vtrain_rollout.rollout import draw_steps

    torch.manual_seed(0)
    draws = {name: draw_steps(4000, 1.0, 8, "cpu", name).float() for name in ("uniform", "biased_early", "biased_late")}
    assert all(int(d.min()) >= 0 and int(d.max()) <= 8 for d in draws.values())
    assert draws["biased_early"].mean() < draws["uniform"].mean() < draws["biased_late"].mean()
    assert abs(float(draws["biased_early"].mean()) - 8 / 3) < 0.2  # E[round(u^2 * 8)] ~ 8/3


def test_simpletuners_rollout_keys_are_read(tinyflow_config: dict, make_runner: Any) -> None:
    from vtrain_rollout.samplers import make_scheduler

    config = make_runner({**tinyflow_config, "scheduled_sampling_max_step_offset": 4, "scheduled_sampling_ramp_steps": 5,
                          "scheduled_sampling_start_step": 2, "scheduled_sampling_ramp_shape": "cosine",
                          "scheduled_sampling_strategy": "biased_late", "scheduled_sampling_order": 3}).config
    settings = RolloutSettings.from_config(config)
    assert (settings.start_step, settings.ramp_shape, settings.strategy, settings.order) == (2, "cosine", "biased_late", 3)
    assert make_scheduler("unipc", 1000, 3).config.solver_order == 3
    with pytest.raises(ConfigError, match="dpm solver has orders 1 to 3"):
        make_runner({**tinyflow_config, "scheduled_sampling_sampler": "dpm", "scheduled_sampling_order": 4})
    with pytest.raises(ConfigError, match="scheduled_sampling_start_step: shapes the ramp"):
        make_runner({**tinyflow_config, "scheduled_sampling_start_step": 3})
