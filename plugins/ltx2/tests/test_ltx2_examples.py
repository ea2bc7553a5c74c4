"""The shipped LTX-2 recipes validate as they are (from a project folder that holds their dataset folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RECIPES = ("config_t2av_lora.json", "config_32gb.json", "config_nf4_group_offload.json", "config_ic_lora.json")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vtrain.runner import Runner

    shutil.copytree(REPO / "examples" / "ltx2", tmp_path / "examples" / "ltx2")
    for folder in ("my-clips", "targets", "references"):
        (tmp_path / "datasets" / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = Runner.from_config(f"examples/ltx2/{name}").config
    assert config.model_family == "ltx2" and config.gradient_checkpointing is True
    datasets = json.loads(Path(config.data_backend_config).read_text())
    if config.ltx2_ic_lora:
        assert all(d.get("conditioning_data_dir") for d in datasets if d.get("dataset_type") == "video")
    if name == "config_32gb.json":  # the reference trainer's 32 GB setup: int8 base, 8-bit optimizer, rank 16
        assert (config.base_model_precision, config.optimizer, config.lora_rank) == ("int8-quanto", "bnb-adamw8bit", 16)
