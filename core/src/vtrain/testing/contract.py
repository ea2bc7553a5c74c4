"""A contract test suite any model family can run against itself.

Subclass :class:`FamilyContract` in your plugin's tests and provide the ``family_config``
fixture (a config dict that trains your family quickly on tiny models)::

    from vtrain.testing.contract import FamilyContract

    class TestMyFamily(FamilyContract):
        @pytest.fixture
        def family_config(self, tmp_path):
            return {"model_family": "mine", "output_dir": str(tmp_path / "out"), "max_train_steps": 4, ...}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest


class FamilyContract:
    """Checks every promise the hook contract makes about a family."""

    @pytest.fixture
    def family_config(self) -> dict[str, Any]:  # pragma: no cover - subclasses provide it
        raise NotImplementedError("provide a family_config fixture")

    @pytest.fixture
    def runner(self, family_config: dict[str, Any]) -> Any:
        from vtrain.runner import Runner

        return Runner.from_config(family_config)

    def test_family_follows_protocol(self, runner: Any) -> None:
        from vtrain.family import FamilyTraits, ModelFamily

        family = runner.family
        assert isinstance(family, ModelFamily)
        assert isinstance(family.traits, FamilyTraits)
        assert family.traits.frame_factor >= 1 or family.traits.frame_factor == 0
        assert family.traits.spatial_alignment >= 1

    def test_load_prepare_and_loss(self, runner: Any) -> None:
        import torch

        from vtrain.data.base import collate
        from vtrain.family import LossOutput, TrainState

        hooks, config = runner.hooks, runner.config
        bundle = hooks.load_model(config, runner.family)
        hooks.prepare_model(bundle, config, torch.device("cpu"))
        total, trainable = bundle.parameter_counts()
        assert 0 < trainable <= total
        dataset = hooks.build_dataset(bundle, config, runner.family)
        assert len(dataset) > 0
        first_bucket = dataset.bucket_of(0)
        same = [i for i in range(len(dataset)) if dataset.bucket_of(i) == first_bucket][: config.train_batch_size]
        batch = collate([dataset[i] for i in same])
        state = TrainState(max_steps=1, shift_for=lambda shape: hooks.schedule_shift(config, shape))
        out = hooks.compute_loss(bundle, batch, config, state)
        assert isinstance(out, LossOutput)
        assert out.loss.dim() == 0 and math.isfinite(float(out.loss))
        out.loss.backward()
        grads = [p.grad for _, p in bundle.trainable_named_parameters()]
        assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads)

    def test_schedule_shift_is_none_or_positive(self, runner: Any) -> None:
        shift = runner.hooks.schedule_shift(runner.config, (4, 2, 4, 4))
        assert shift is None or shift > 0

    def test_training_run_saves_model(self, runner: Any) -> None:
        result = runner.run()
        assert result.steps == runner.config.max_train_steps
        assert result.final_loss is not None and math.isfinite(result.final_loss)
        assert result.model_paths and all(Path(p).exists() for p in result.model_paths)
        assert (Path(runner.config.output_dir) / "run_info.json").is_file()
