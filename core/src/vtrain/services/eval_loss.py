"""Evaluation loss (F7): held-out samples scored at fixed timesteps with fixed noise.

Every ``eval_steps_interval`` updates, each of ``num_eval_samples`` held-out samples is scored at
``eval_timesteps`` evenly spaced sigmas with noise drawn from a generator seeded by the sample's
position alone. The numbers therefore compare across runs, seeds and resumes, and the training
random streams are never touched. The samples come from the dataset's own ``eval_dataset``
(where the data layer provides one) or are held out of the training dataset.

The family's ``compute_loss`` honours the optional batch keys ``sigmas`` and ``noise`` (see the
hook's docstring); the scores are added to the step's logs as ``eval/loss`` and ``eval/<term>``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl
from vtrain.rng import preserved_rng
from vtrain.services import _state

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "eval_loss"
NOISE_SEED = 20240101  # fixed: evaluation noise must not depend on the training seed


class HeldOutSplit:
    """A dataset view without the held-out samples (follows :class:`vtrain.data.base.TrainDataset`)."""

    def __init__(self, dataset: Any, held_out: list[int]) -> None:
        self.dataset = dataset
        self.held_out = held_out
        # a dataset with repeats holds each sample at several indices: leave out every copy
        identity = getattr(dataset, "sample_of", lambda index: index)
        excluded = {identity(i) for i in held_out}
        if hasattr(dataset, "exclude_samples"):  # datasets that re-deal samples per epoch must skip them too
            dataset.exclude_samples(excluded)
        self.indices = [i for i in range(len(dataset)) if identity(i) not in excluded]

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch (per-epoch caption dropout and dataset draws) to the wrapped dataset."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[self.indices[index]]

    def bucket_of(self, index: int) -> Hashable:
        return self.dataset.bucket_of(self.indices[index])

    def describe(self) -> list[str]:
        lines = list(self.dataset.describe()) if hasattr(self.dataset, "describe") else []
        return lines + [f"{len(self.held_out)} samples held out for the evaluation loss (eval_steps_interval)"]


def _first_copies(dataset: Any) -> list[int]:
    """The first index of each distinct sample (``dataset.sample_of`` where defined, else every index)."""
    identity = getattr(dataset, "sample_of", None)
    if identity is None:
        return list(range(len(dataset)))
    seen: dict[Hashable, int] = {}
    for index in range(len(dataset)):
        seen.setdefault(identity(index), index)
    return sorted(seen.values())


def pick_held_out(size: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(size)`` (deterministic, independent of the seed)."""
    count = min(count, size)
    return sorted({(k * size) // count for k in range(count)})


class EvalSet:
    """The evaluation samples and how to score them."""

    def __init__(self, samples: list[dict[str, Any]], timesteps: int) -> None:
        self.samples = samples
        self.sigmas = [(k + 0.5) / timesteps for k in range(timesteps)]

    def batches(self) -> Iterator[dict[str, Any]]:
        """One batch per sample: the sample repeated at every fixed sigma, with its fixed noise."""
        import torch

        from vtrain.data.base import collate

        for position, sample in enumerate(self.samples):
            if "latents" not in sample:
                from vtrain.errors import ConfigError, Problem

                raise ConfigError([Problem("eval_steps_interval", "evaluation samples carry no 'latents' to add noise to",
                                           "use a dataset whose samples are encoded latents (cached), or turn the "
                                           "evaluation loss off")])
            batch = collate([sample] * len(self.sigmas))
            generator = torch.Generator().manual_seed(NOISE_SEED + position)
            batch["noise"] = torch.randn(batch["latents"].shape, generator=generator, dtype=torch.float32)
            batch["sigmas"] = torch.tensor(self.sigmas, dtype=torch.float32)
            yield batch


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the evaluation keys."""
    cat = {"category": "evaluation"}
    registry.add("eval_steps_interval", "int", 0,
                 "Score the held-out samples every N updates at fixed timesteps and noise (0: off).", minimum=0, **cat)
    registry.add("num_eval_samples", "int", 4,
                 "Samples held out of the training data for the evaluation loss (when no eval dataset exists).",
                 minimum=1, **cat)
    registry.add("eval_timesteps", "int", 8, "Evenly spaced sigmas each evaluation sample is scored at.", minimum=1, **cat)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    if not config.eval_steps_interval:
        for key in ("num_eval_samples", "eval_timesteps"):
            if config.explicitly_set(key):
                problems.add(key, "has no effect because eval_steps_interval is 0", "set eval_steps_interval, or remove the key")


@hookimpl(wrapper=True)
def build_dataset(bundle: ModelBundle, config: ResolvedConfig) -> Any:
    """Hold evaluation samples out of the training data (or take the dataset's ``eval_dataset``)."""
    dataset = yield
    if not config.eval_steps_interval or dataset is None:
        return dataset
    eval_source = getattr(dataset, "eval_dataset", None)
    if eval_source is not None and len(eval_source) > 0:
        samples = [eval_source[i] for i in range(len(eval_source))]
        training = dataset
    else:
        firsts = _first_copies(dataset)  # one index per distinct sample (repeats give several)
        if len(firsts) <= config.num_eval_samples:
            from vtrain.errors import ConfigError, Problem

            raise ConfigError([Problem("num_eval_samples",
                                       f"holding out {config.num_eval_samples} samples leaves none of the "
                                       f"{len(firsts)} distinct samples to train on", "lower num_eval_samples or add data")])
        held_out = [firsts[i] for i in pick_held_out(len(firsts), config.num_eval_samples)]
        samples = [dataset[i] for i in held_out]
        training = HeldOutSplit(dataset, held_out)
    _state.attach(bundle, NAME, EvalSet(samples, config.eval_timesteps))
    return training


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    eval_set = _state.lookup(run.bundle, NAME)
    if eval_set is None:
        return None
    return [f"evaluation loss every {run.config.eval_steps_interval} updates: {len(eval_set.samples)} samples x "
            f"{len(eval_set.sigmas)} fixed sigmas, fixed noise"]


@hookimpl(tryfirst=True)
def on_step_end(run: RunContext, step: int, logs: dict[str, float]) -> None:
    """Add ``eval/loss`` (and one value per loss term) to the logs of every N-th update."""
    interval = run.config.eval_steps_interval
    eval_set = _state.lookup(run.bundle, NAME)
    if not interval or eval_set is None or step % interval:
        return
    logs.update(evaluate(run, eval_set))


def evaluate(run: RunContext, eval_set: EvalSet) -> dict[str, float]:
    """Score every evaluation batch; the training RNG streams and the model's mode are left as they were."""
    import torch

    bundle, config, acc = run.bundle, run.config, run.accelerator
    assert bundle is not None and run.state is not None
    model = bundle.model
    was_training = model.training
    totals: dict[str, float] = {}
    count = 0
    with preserved_rng(), torch.no_grad():
        model.eval()
        try:
            for batch in eval_set.batches():
                batch = {k: (v.to(acc.device) if hasattr(v, "to") else v) for k, v in batch.items()}
                with acc.autocast():
                    out = run.hooks.compute_loss(bundle, batch, config, run.state)
                totals["eval/loss"] = totals.get("eval/loss", 0.0) + float(out.loss.float())
                for name, term in out.terms.items():
                    totals[f"eval/{name}"] = totals.get(f"eval/{name}", 0.0) + float(term.float())
                count += 1
        finally:
            model.train(was_training)
    return {name: value / max(count, 1) for name, value in totals.items()}
