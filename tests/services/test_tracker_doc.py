"""The third-party tracker example in docs/writing-a-tracker.md works as written; services are blockable."""

from __future__ import annotations

import csv
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-tracker.md"


def test_documented_csv_tracker_runs_as_a_plugin_file(tinyflow_config, service_runner, tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    plugin_file = tmp_path / "csv_tracker.py"
    plugin_file.write_text(code)
    config = dict(tinyflow_config, max_train_steps=3, eval_steps_interval=3, validation_prompt="a cube",
                  validation_num_inference_steps=2, report_to="csv", checkpoint_step_interval=3)
    service_runner(config, plugin_files=[plugin_file]).run()
    metrics = Path(config["output_dir"]) / "metrics.csv"
    rows = list(csv.reader(metrics.open()))
    keys = {(int(step), key) for step, key, _ in rows}
    assert {(1, "loss"), (3, "loss/flow"), (2, "lr"), (3, "eval/loss"), (1, "samples_per_second")} <= keys
    assert (3, "media/latents") in keys and (0, "media/latents") in keys
    # a resumed run tells the tracker where it continues from
    service_runner(dict(config, max_train_steps=4, resume_from_checkpoint="latest"), plugin_files=[plugin_file]).run()
    rows = list(csv.reader(metrics.open()))
    assert [3, "resumed", "checkpoint-3"] in [[int(r[0]), r[1], r[2]] for r in rows]
    assert (4, "loss") in {(int(step), key) for step, key, _ in rows}


def test_a_registered_tracker_name_is_accepted_and_others_are_refused(tinyflow_config, service_runner, tmp_path):
    from vtrain.errors import ConfigError

    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    plugin_file = tmp_path / "csv_tracker.py"
    plugin_file.write_text(code)
    config = dict(tinyflow_config, max_train_steps=1)
    service_runner(config, plugin_files=[plugin_file]).run()  # report_to none: the tracker writes nothing
    assert not (Path(config["output_dir"]) / "metrics.csv").exists()
    try:
        service_runner(dict(config, report_to="csv,comet"), plugin_files=[plugin_file])
    except ConfigError as error:
        assert "unknown tracker 'comet'" in str(error) and "csv" in str(error)
    else:
        raise AssertionError("report_to comet was accepted")


def test_services_are_entry_points_that_can_be_blocked(tinyflow_config):
    from importlib import metadata

    from vtrain.runner import Runner

    points = {ep.name: ep.value for ep in metadata.entry_points(group="vtrain") if ep.value.startswith("vtrain.services")}
    assert set(points) == {"optimizers", "ema", "eval_loss", "trackers", "webhooks", "hub", "validation_adapters",
                           "validation_inputs"}
    # only tinyflow and the services autoload here (-p no: for every other entry point)
    others = [ep.name for ep in metadata.entry_points(group="vtrain") if ep.name not in points and ep.name != "tinyflow"]
    runner = Runner.from_config(tinyflow_config, blocked=[*others, "ema"])
    assert "use_ema" not in runner.registry and "report_to" in runner.registry
    assert {o.owner for o in runner.registry if o.name in ("report_to", "webhook_config", "hub_model_id")} == {
        "trackers", "webhooks", "hub"}
