"""Validation inputs from the data (SimpleTuner's ``validation_using_datasets`` and ``eval_dataset_id``).

``eval_dataset_id`` names a dataset of ``data_backend_config`` that is held out: cached like the others,
never trained on, and the source of the evaluation-loss samples and of validation inputs. With
``validation_using_datasets`` the family's validation takes its conditioning (for a video family: the
first frame, image-to-video) from samples of that dataset, or of the training data when no dataset is
named; the family says it can (``traits.dataset_validation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vtrain.hookspecs import hookimpl

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

SAMPLES_KEY = "validation_samples"
MAX_INPUTS = 1  # one conditioning sample per validation, the first of its dataset (the same at every validation)


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare SimpleTuner's dataset-validation keys."""
    val = {"category": "validation"}
    registry.add("validation_using_datasets", "bool", False,
                 "Condition validation on a dataset sample (image-to-video from its first frame) instead of text alone.",
                 **val)
    registry.add("eval_dataset_id", "str", None,
                 "A dataset of data_backend_config held out from training: the source of validation inputs and "
                 "evaluation-loss samples.", **val)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """The family must take its validation conditioning from samples."""
    if config.validation_using_datasets and not family.traits.dataset_validation:
        problems.add("validation_using_datasets", f"the {family.name!r} family cannot condition validation on dataset "
                     "samples", "remove validation_using_datasets")
    if config.eval_dataset_id and not config.get("data_backend_config"):
        problems.add("eval_dataset_id", "names a dataset of data_backend_config, and this run has none",
                     "set data_backend_config, or remove eval_dataset_id")


@hookimpl
def on_run_start(run: RunContext) -> None:
    """Put the conditioning samples on the bundle for the family's ``validate``."""
    if not run.config.validation_using_datasets or run.bundle is None or run.dataset is None:
        return
    source = getattr(run.dataset, "eval_dataset", None) or run.dataset
    count = min(MAX_INPUTS, len(source))
    run.bundle.meta[SAMPLES_KEY] = [source[index] for index in range(count)]
