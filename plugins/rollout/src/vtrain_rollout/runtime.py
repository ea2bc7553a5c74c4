"""One run's rollout: the family's capability, the settings, and the work of one ``compute_loss`` call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vtrain_rollout.samplers import EVALUATIONS_PER_STEP
from vtrain_rollout.settings import RolloutSettings
from vtrain_rollout.streams import StreamView

if TYPE_CHECKING:
    from vtrain.family import LossOutput, ModelBundle

DEFAULT_TRAIN_TIMESTEPS = 1000


def train_timesteps(bundle: ModelBundle | None) -> int:
    """The noise scheduler's ``num_train_timesteps`` (one rollout step is one of them), else 1000."""
    config = getattr(getattr(bundle, "noise_scheduler", None), "config", None)
    value = config.get("num_train_timesteps") if hasattr(config, "get") else None
    return int(value or DEFAULT_TRAIN_TIMESTEPS)


@dataclass
class RolloutRuntime:
    """Built by the plugin's ``load_model`` wrapper; ``prepare`` / ``finish`` bracket the family's loss."""

    family: Any
    settings: RolloutSettings
    pending: dict[str, Any] = field(default_factory=dict)

    def prepare(self, bundle: ModelBundle, batch: dict[str, Any], config: Any, state: Any,
                probability: float) -> None:
        """Draw the inputs, roll out, and put the keys the family's loss honours into ``batch``."""
        import torch

        from vtrain_rollout.reflexflow import compensation_weight
        from vtrain_rollout.rollout import draw_steps, roll_out

        started = time.perf_counter()
        settings, family = self.settings, self.family
        inputs = family.draw_flow_inputs(bundle, batch, config, state)
        batch.update(inputs)
        view = StreamView.of(family, bundle, batch, config)
        x0 = view.clean(batch)
        sigmas, noise = inputs["sigmas"], view.noise(inputs)
        steps = draw_steps(x0.shape[0], probability, settings.max_step_offset, x0.device, settings.strategy)
        mask = view.condition_mask(bundle, batch)
        result = roll_out(lambda sub, x, at: view.predict(bundle, sub, x, at), batch, x0, noise, sigmas,
                          steps, settings.sampler, train_timesteps(bundle), mask, settings.order)
        rolled = result.rolled
        self.pending = {"rolled": rolled, "steps": result.steps, "view": view}
        if bool(rolled.any()):
            view.put(batch, "noisy_latents", result.noisy_latents)
            if settings.reflexflow:
                from vtrain.flow_matching import noisy_latents

                analytic = noisy_latents(x0, noise, sigmas)
                view.put(batch, "loss_weight", compensation_weight(result.noisy_latents, analytic, rolled, mask,
                                                                   settings.alpha, settings.beta2))
                self.pending.update(x_hat=result.noisy_latents, x0=x0, sigmas=sigmas, mask=mask,
                                    exposure=exposure_bias(result.noisy_latents, analytic, rolled, mask))
        if x0.device.type == "cuda":
            torch.cuda.synchronize(x0.device)  # the rollout's kernels, not the training forward's
        self.pending["seconds"] = time.perf_counter() - started

    def finish(self, out: LossOutput, config: Any) -> None:
        """Add the anti-drift term and the metrics of the call ``prepare`` began."""
        pending, self.pending = self.pending, {}
        rolled, steps = pending["rolled"], pending["steps"]
        if "x_hat" in pending and self.settings.beta1 > 0:
            prediction = pending["view"].prediction(out)
            if prediction is None:
                raise RuntimeError(f"rollout: the {self.family.name!r} family's compute_loss returned no prediction; "
                                   "a VelocityPredictor family sets LossOutput.prediction (a multi-stream one "
                                   "LossOutput.predictions; ReflexFlow needs it)")
            from vtrain_rollout.reflexflow import anti_drift

            term = anti_drift(prediction, pending["x_hat"], pending["x0"], pending["sigmas"], rolled,
                              pending["mask"])
            out.add_term("reflexflow_adr", self.settings.beta1 * term)
        if "exposure" in pending:
            out.metrics["reflexflow_exposure"] = pending["exposure"]
        count = int(rolled.sum())
        out.metrics["rollout_fraction"] = count / max(int(rolled.numel()), 1)
        out.metrics["rollout_mean_k"] = float(steps[rolled].float().mean()) if count else 0.0
        # the loop averages metrics over the micro-batches of an update: scaled, this is the update's total
        out.metrics["rollout_seconds"] = pending["seconds"] * max(int(config.gradient_accumulation_steps), 1)


def exposure_bias(x_hat: Any, x_t: Any, rolled: Any, mask: Any) -> float:
    """Mean |x_hat - x_t| over the rolled-out samples' free elements (fixed conditions left out)."""
    free = (1 - mask).expand_as(x_hat) if mask is not None else x_hat.new_ones(x_hat.shape)
    free = free[rolled]
    return float(((x_hat - x_t)[rolled].abs() * free).sum() / free.sum().clamp_min(1))


def describe(settings: RolloutSettings, bundle: ModelBundle | None) -> str:
    """The start-up summary line: what rollout does and its expected cost in extra forwards."""
    evaluations = EVALUATIONS_PER_STEP[settings.sampler]
    if settings.ramp_steps > 0:
        probability = f"probability {settings.prob_start:g} -> {settings.prob_end:g} over {settings.ramp_steps} steps"
        top = max(settings.prob_start, settings.prob_end)
    else:
        probability = f"probability {settings.probability:g}"
        top = settings.probability
    expected = top * settings.max_step_offset / 2 * evaluations
    reflex = (f"ReflexFlow alpha {settings.alpha:g}, beta1 {settings.beta1:g}, beta2 {settings.beta2:g}"
              if settings.reflexflow else "ReflexFlow off")
    return (f"Rollout (scheduled sampling): k in 0..{settings.max_step_offset} {settings.sampler} steps "
            f"(1/{train_timesteps(bundle)} sigma each), {probability}; {reflex}; cost: about {expected:.2g} extra "
            f"no-grad forwards per sample (at most {settings.max_step_offset * evaluations} batched forwards "
            "per micro-batch)")
