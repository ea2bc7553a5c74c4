"""vtrain-rollout: scheduled sampling (rollout) with optional ReflexFlow, as a ``compute_loss`` wrapper.

For a share of the batch the model first denoises, with its current weights and no gradient, from a
noisier sigma_src down to the training sigma, and trains on that self-generated input instead of the
analytic one (exposure bias). The plugin knows no model family: it needs
:class:`vtrain.family.VelocityPredictor` (or :class:`~vtrain.family.MultiStreamVelocityPredictor`, whose streams
are rolled out together: :mod:`vtrain_rollout.streams`), and refuses the configuration when the family lacks both.

Hooks, in run order:

- ``add_options`` / ``validate_config``: the ``scheduled_sampling_*`` keys (SimpleTuner's names);
- ``load_model`` (wrapper): remembers the family and the settings in ``bundle.meta["rollout"]``;
- ``compute_loss`` (wrapper, ``tryfirst``: the outermost, so the rollout forwards happen before any inner
  wrapper such as CREPA starts observing the training forward): draws the step's inputs through the family,
  rolls out, hands ``noisy_latents`` (and ReflexFlow's ``loss_weight``) to the family's loss, then adds
  the ``reflexflow_adr`` term and logs ``rollout_fraction``, ``rollout_mean_k``, ``rollout_seconds``;
- ``describe_run``: the start-up summary line with the expected cost.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from vtrain.hookspecs import hookimpl

CATEGORY = "rollout"
META_KEY = "rollout"


@hookimpl
def add_options(registry: Any) -> None:
    from vtrain_rollout.settings import SAMPLERS, STRATEGIES

    common = {"category": CATEGORY}
    registry.add("scheduled_sampling_max_step_offset", "int", 0,
                 "Longest rollout in solver steps; each rolled-out sample draws k uniformly in 0..this and starts "
                 "k training timesteps noisier than its training sigma. 0: rollout off.", minimum=0, **common)
    registry.add("scheduled_sampling_probability", "float", 0.0,
                 "Share of batch items rolled out (when scheduled_sampling_ramp_steps is 0).",
                 minimum=0.0, maximum=1.0, **common)
    registry.add("scheduled_sampling_ramp_steps", "int", 0,
                 "Ramp the rollout probability linearly from scheduled_sampling_prob_start to "
                 "scheduled_sampling_prob_end over this many global steps (then hold it). 0: no ramp.",
                 minimum=0, **common)
    registry.add("scheduled_sampling_prob_start", "float", None,
                 "Rollout probability at step 0 of the ramp (unset: 0.0).", minimum=0.0, maximum=1.0, **common)
    registry.add("scheduled_sampling_prob_end", "float", None,
                 "Rollout probability reached at scheduled_sampling_ramp_steps (unset: 0.5).",
                 minimum=0.0, maximum=1.0, **common)
    registry.add("scheduled_sampling_start_step", "int", 0,
                 "The ramp holds scheduled_sampling_prob_start until this global step, then starts rising.",
                 minimum=0, **common)
    registry.add("scheduled_sampling_ramp_shape", "str", "linear",
                 "Curve of the ramp: linear, or cosine (slow start and end: 0.5 - 0.5 cos(pi progress)).",
                 choices=("linear", "cosine"), **common)
    registry.add("scheduled_sampling_strategy", "str", "uniform",
                 "How a rolled-out sample's k is drawn in 0..scheduled_sampling_max_step_offset: uniform, "
                 "biased_early (round(u^2 max): mostly short rollouts) or biased_late (round((1-u^2) max): mostly long).",
                 choices=STRATEGIES, **common)
    registry.add("scheduled_sampling_order", "int", 2,
                 "Solver order of the unipc (any order) and dpm (1 to 3) samplers; euler and rk4 have a fixed order.",
                 minimum=1, **common)
    registry.add("scheduled_sampling_sampler", "str", "unipc",
                 "Solver of the rollout: unipc, euler, dpm (diffusers' flow-matching schedulers) or rk4 "
                 "(4 model evaluations per step).", choices=SAMPLERS, **common)
    registry.add("scheduled_sampling_reflexflow", "bool", None,
                 "ReflexFlow on rolled-out samples: exposure-bias-weighted loss and the anti-drift term "
                 "(unset: on whenever rollout is on).", **common)
    registry.add("scheduled_sampling_reflexflow_alpha", "float", 1.0,
                 "ReflexFlow frequency compensation: how much more elements with a larger exposure bias weigh.",
                 minimum=0.0, **common)
    registry.add("scheduled_sampling_reflexflow_beta1", "float", 10.0,
                 "ReflexFlow weight of the anti-drift (direction) term.", minimum=0.0, **common)
    registry.add("scheduled_sampling_reflexflow_beta2", "float", 1.0,
                 "ReflexFlow scale of the frequency-compensated loss of rolled-out samples.", minimum=0.0, **common)


@hookimpl
def validate_config(config: Any, family: Any, problems: Any) -> None:
    from vtrain_rollout.settings import RolloutSettings
    from vtrain_rollout.streams import offers_velocity

    settings = RolloutSettings.from_config(config)
    if settings.enabled and not offers_velocity(family):
        missing = [name for name in ("draw_flow_inputs", "fixed_condition_mask", "predict_velocity")
                   if not callable(getattr(family, name, None))]
        problems.add("scheduled_sampling_max_step_offset",
                     f"rollout (plugin rollout) needs the model family to offer {', '.join(missing)} "
                     f"(vtrain.family.VelocityPredictor, or MultiStreamVelocityPredictor for several latent "
                     f"streams), and the {family.name!r} family does not",
                     f"set scheduled_sampling_max_step_offset=0, or use a family that predicts velocities "
                     f"(model_family={family.name})")
    if config.scheduled_sampling_ramp_steps > 0 and config.scheduled_sampling_probability > 0:
        problems.add("scheduled_sampling_probability",
                     "is not used while scheduled_sampling_ramp_steps > 0 (the ramp sets the probability)",
                     "remove scheduled_sampling_probability and set scheduled_sampling_prob_start/_prob_end, "
                     "or set scheduled_sampling_ramp_steps to 0")
    if config.scheduled_sampling_ramp_steps == 0:
        for key in ("scheduled_sampling_prob_start", "scheduled_sampling_prob_end"):
            if getattr(config, key) is not None:
                problems.add(key, "is only used by the ramp, and scheduled_sampling_ramp_steps is 0",
                             f"set scheduled_sampling_ramp_steps > 0, or remove {key} "
                             "(scheduled_sampling_probability sets a constant probability)")
    if config.scheduled_sampling_sampler == "dpm" and config.scheduled_sampling_order > 3:
        problems.add("scheduled_sampling_order", f"the dpm solver has orders 1 to 3, got {config.scheduled_sampling_order}",
                     "use an order of at most 3, or scheduled_sampling_sampler unipc")
    if config.scheduled_sampling_ramp_steps == 0:
        for key, default in (("scheduled_sampling_start_step", 0), ("scheduled_sampling_ramp_shape", "linear")):
            if getattr(config, key) != default:
                problems.add(key, "shapes the ramp, and scheduled_sampling_ramp_steps is 0",
                             f"set scheduled_sampling_ramp_steps > 0, or remove {key}")
    if config.scheduled_sampling_reflexflow and config.scheduled_sampling_max_step_offset <= 0:
        problems.add("scheduled_sampling_reflexflow", "acts on rolled-out samples, and rollout is off "
                     "(scheduled_sampling_max_step_offset is 0)",
                     "set scheduled_sampling_max_step_offset > 0, or remove scheduled_sampling_reflexflow")


@hookimpl(wrapper=True)
def load_model(config: Any, family: Any) -> Generator[None, Any, Any]:
    bundle = yield
    if bundle is not None:
        from vtrain_rollout.settings import RolloutSettings

        settings = RolloutSettings.from_config(config)
        if settings.enabled:
            from vtrain_rollout.runtime import RolloutRuntime

            bundle.meta[META_KEY] = RolloutRuntime(family=family, settings=settings)
    return bundle


@hookimpl(wrapper=True, tryfirst=True)
def compute_loss(bundle: Any, batch: dict[str, Any], config: Any, state: Any) -> Generator[None, Any, Any]:
    runtime = bundle.meta.get(META_KEY)
    if runtime is None or batch.get("sigmas") is not None:  # fixed sigmas: an evaluation scores the model as is
        return (yield)
    import torch

    if not torch.is_grad_enabled():
        return (yield)
    probability = runtime.settings.probability_at(state.step if state is not None else 0)
    if probability <= 0:
        return (yield)
    original = dict(batch)
    runtime.prepare(bundle, batch, config, state, probability)
    try:
        out = yield
    finally:  # the caller's batch as it was
        batch.clear()
        batch.update(original)
    runtime.finish(out, config)
    return out


@hookimpl
def describe_run(run: Any) -> list[str] | None:
    from vtrain_rollout.settings import RolloutSettings

    settings = RolloutSettings.from_config(run.config)
    if not settings.enabled:
        return None
    from vtrain_rollout.runtime import describe

    return [describe(settings, run.bundle)]
