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

    def test_velocity_predictor_keeps_its_promises(self, runner: Any) -> None:
        """For families offering :class:`vtrain.family.VelocityPredictor` or its multi-stream form (skipped
        otherwise): inputs drawn by
        ``draw_flow_inputs`` train exactly like the loss's own draws, ``noisy_latents`` equal to the analytic
        input and a ``loss_weight`` of ones change nothing, and ``predict_velocity`` is the loss's prediction."""
        import torch

        from vtrain.data.base import collate
        from vtrain.family import MultiStreamVelocityPredictor, TrainState, VelocityPredictor
        from vtrain.flow_matching import noisy_latents

        family, hooks, config = runner.family, runner.hooks, runner.config
        if isinstance(family, MultiStreamVelocityPredictor):
            self._check_multi_stream_velocity(runner)
            return
        if not isinstance(family, VelocityPredictor):
            pytest.skip(f"the {family.name!r} family does not offer VelocityPredictor")
        bundle = hooks.load_model(config, family)
        hooks.prepare_model(bundle, config, torch.device("cpu"))
        dataset = hooks.build_dataset(bundle, config, family)
        bucket = dataset.bucket_of(0)
        batch = collate([dataset[i] for i in range(len(dataset)) if dataset.bucket_of(i) == bucket][:2])
        state = TrainState(max_steps=1, shift_for=lambda shape: hooks.schedule_shift(config, shape))

        def loss(extra: dict[str, Any]) -> Any:
            torch.manual_seed(0)
            return family.compute_loss(bundle, {**batch, **extra}, config, state)

        own = loss({})
        torch.manual_seed(0)
        drawn = family.draw_flow_inputs(bundle, dict(batch), config, state)
        assert drawn["sigmas"].shape == (batch["latents"].shape[0],)
        assert drawn["noise"].shape == batch["latents"].shape
        given = loss(drawn)
        assert torch.equal(own.loss, given.loss)
        x0 = drawn.get("latents", batch["latents"]).float()  # a family may draw the clean latents too
        x_t = noisy_latents(x0, drawn["noise"], drawn["sigmas"])
        assert torch.equal(loss({**drawn, "noisy_latents": x_t}).loss, own.loss)
        assert torch.equal(loss({**drawn, "loss_weight": torch.ones_like(x_t)}).loss, own.loss)
        assert own.prediction is not None and own.prediction.shape == batch["latents"].shape
        full = {**batch, **drawn}
        mask = family.fixed_condition_mask(bundle, full)
        if mask is not None:
            assert torch.broadcast_shapes(mask.shape, x_t.shape) == x_t.shape
        with torch.no_grad():
            velocity = family.predict_velocity(bundle, full, x_t, drawn["sigmas"])
        assert velocity.shape == x_t.shape and velocity.dtype == torch.float32
        torch.testing.assert_close(velocity, own.prediction.detach(), rtol=1e-4, atol=1e-5)

    @staticmethod
    def _check_multi_stream_velocity(runner: Any) -> None:
        """The same promises for :class:`vtrain.family.MultiStreamVelocityPredictor`, stream by stream."""
        import torch

        from vtrain.data.base import collate
        from vtrain.family import TrainState
        from vtrain.flow_matching import noisy_latents

        family, hooks, config = runner.family, runner.hooks, runner.config
        bundle = hooks.load_model(config, family)
        hooks.prepare_model(bundle, config, torch.device("cpu"))
        dataset = hooks.build_dataset(bundle, config, family)
        bucket = dataset.bucket_of(0)
        batch = collate([dataset[i] for i in range(len(dataset)) if dataset.bucket_of(i) == bucket][:2])
        state = TrainState(max_steps=1, shift_for=lambda shape: hooks.schedule_shift(config, shape))

        def loss(extra: dict[str, Any]) -> Any:
            torch.manual_seed(0)
            return family.compute_loss(bundle, {**batch, **extra}, config, state)

        streams = family.latent_streams(bundle, batch, config)
        assert streams and len({s.name for s in streams}) == len(streams)
        own = loss({})
        torch.manual_seed(0)
        drawn = family.draw_flow_inputs(bundle, dict(batch), config, state)
        size = batch[streams[0].latents].shape[0]
        assert drawn["sigmas"].shape == (size,)
        for stream in streams:
            assert drawn[stream.noise].shape == batch[stream.latents].shape, stream.name
        assert torch.equal(loss(drawn).loss, own.loss)
        x_t = {s.name: noisy_latents(drawn.get(s.latents, batch[s.latents]).float(), drawn[s.noise], drawn["sigmas"])
               for s in streams}
        assert torch.equal(loss({**drawn, **{s.noisy_latents: x_t[s.name] for s in streams}}).loss, own.loss)
        ones = {s.loss_weight: torch.ones_like(x_t[s.name]) for s in streams}
        assert torch.equal(loss({**drawn, **ones}).loss, own.loss)
        assert own.prediction is not None and set(own.predictions) == {s.name for s in streams}
        for stream in streams:
            assert own.predictions[stream.name].shape == batch[stream.latents].shape, stream.name
        full = {**batch, **drawn}
        for name, mask in family.stream_condition_masks(bundle, full, config).items():
            assert torch.broadcast_shapes(mask.shape, x_t[name].shape) == x_t[name].shape, name
        with torch.no_grad():
            velocities = family.predict_stream_velocities(bundle, full, config, x_t, drawn["sigmas"])
        assert set(velocities) == {s.name for s in streams}
        for name, velocity in velocities.items():
            assert velocity.shape == x_t[name].shape and velocity.dtype == torch.float32, name
            torch.testing.assert_close(velocity, own.predictions[name].detach(), rtol=1e-4, atol=1e-5)

    def test_token_routing_keeps_its_promises(self, runner: Any) -> None:
        """For families offering :class:`vtrain.family.TokenRouting` (skipped otherwise): routing every token
        through every block changes nothing, and routing half of them runs with the blocks seeing half."""
        import torch

        from vtrain.data.base import collate
        from vtrain.family import TokenRouting, TrainState

        family, hooks, config = runner.family, runner.hooks, runner.config
        if not isinstance(family, TokenRouting):
            pytest.skip(f"the {family.name!r} family does not offer TokenRouting")
        bundle = hooks.load_model(config, family)
        hooks.prepare_model(bundle, config, torch.device("cpu"))
        dataset = hooks.build_dataset(bundle, config, family)
        bucket = dataset.bucket_of(0)
        batch = collate([dataset[i] for i in range(len(dataset)) if dataset.bucket_of(i) == bucket][:2])
        state = TrainState(max_steps=1, shift_for=lambda shape: hooks.schedule_shift(config, shape))
        blocks = list(family.token_routing_blocks(bundle))
        assert blocks

        def loss() -> Any:
            torch.manual_seed(0)
            return family.compute_loss(bundle, dict(batch), config, state).loss

        def routed(keep: Any) -> tuple[Any, list[tuple[int, int]]]:
            pending: dict[int, Any] = {}
            seen: list[tuple[int, int]] = []

            def before(block: Any, args: Any, kwargs: Any) -> Any:
                tokens = family.block_tokens(block, args, kwargs)
                count = tokens.shape[1]
                index = keep(count).to(tokens.device)[None].expand(tokens.shape[0], -1)

                def take(tensor: Any, dim: int) -> Any:
                    dim %= tensor.dim()
                    if tensor.shape[dim] != count:
                        return tensor
                    tensor = tensor.expand(index.shape[0], *tensor.shape[1:])
                    view = [index.shape[0] if d == 0 else index.shape[1] if d == dim else 1 for d in range(tensor.dim())]
                    sizes = [index.shape[1] if d == dim else s for d, s in enumerate(tensor.shape)]
                    return tensor.gather(dim, index.reshape(view).expand(sizes))

                pending[id(block)] = (tokens, index)
                seen.append((count, index.shape[1]))
                return family.subset_block_inputs(block, args, kwargs, take)

            def after(block: Any, _args: Any, _kwargs: Any, output: Any) -> Any:
                tokens, index = pending.pop(id(block))
                return family.replace_block_tokens(
                    block, output, lambda kept: tokens.scatter(1, index[:, :, None].expand(-1, -1, kept.shape[-1]), kept))

            handles = [h for block in blocks for h in (block.register_forward_pre_hook(before, with_kwargs=True),
                                                        block.register_forward_hook(after, with_kwargs=True))]
            try:
                return loss(), seen
            finally:
                for handle in handles:
                    handle.remove()

        plain = loss()
        every, seen = routed(lambda count: torch.arange(count))
        assert torch.equal(every, plain)
        assert len(seen) == len(blocks)
        half, seen = routed(lambda count: torch.arange(0, count, 2))
        assert math.isfinite(float(half))
        assert all(kept == (count + 1) // 2 for count, kept in seen) and seen[0][0] > 1

    def test_schedule_shift_is_none_or_positive(self, runner: Any) -> None:
        shift = runner.hooks.schedule_shift(runner.config, (4, 2, 4, 4))
        assert shift is None or shift > 0

    def test_training_run_saves_model(self, runner: Any) -> None:
        result = runner.run()
        assert result.steps == runner.config.max_train_steps
        assert result.final_loss is not None and math.isfinite(result.final_loss)
        assert result.model_paths and all(Path(p).exists() for p in result.model_paths)
        assert (Path(runner.config.output_dir) / "run_info.json").is_file()
