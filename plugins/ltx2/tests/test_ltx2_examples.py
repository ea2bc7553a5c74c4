"""The shipped LTX-2 recipes validate as they are (from a project folder that holds their dataset folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RECIPES = ("config_t2av_lora.json", "config_32gb.json", "config_int8_group_offload.json", "config_nf4_group_offload.json",
           "config_ic_lora.json")


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
    if name == "config_nf4_group_offload.json":  # the smaller one: an nf4 base streamed block by block from RAM
        assert (config.base_model_precision, config.enable_group_offload) == ("nf4-torchao", True)


def _blocks(language: str) -> list[str]:
    text = (REPO / "docs" / "ltx2.md").read_text(encoding="utf-8")
    parts = text.split(f"```{language}\n")[1:]
    return [part.split("```", 1)[0] for part in parts]


def test_the_docs_examples_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/ltx2.md: its commands, its dataset entry and its summary line are what the code does."""
    import re

    from vtrain.data.spec import parse_backends
    from vtrain.runner import Runner
    from vtrain_ltx2.commands import run_ltx2_command

    shutil.copytree(REPO / "examples" / "ltx2", tmp_path / "examples" / "ltx2")
    for folder in ("my-clips", "targets", "references"):
        (tmp_path / "datasets" / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for line in _blocks("bash")[0].strip().splitlines():
        words = line.split()
        if words[:3] == ["vtrain", "ltx2", "make-tiny"]:
            assert run_ltx2_command(words[2:]) == 0 and (tmp_path / words[3] / "model_index.json").is_file()
        else:
            assert words[:4] == ["vtrain", "run", "--family", "ltx2"]
            assert Runner.from_config(words[5]).config.model_family == "ltx2"
    entry = json.loads(_blocks("json")[0])
    text = {"id": "text", "type": "local", "dataset_type": "text_embeds", "cache_dir": "cache/text"}
    plan = parse_backends([entry, text], None)
    assert plan.media[0].conditioning_downscale == 2 and plan.media[0].conditioning_data_dir is not None
    summary = _blocks("text")[0].strip()
    source = (REPO / "core" / "src" / "vtrain" / "data" / "build.py").read_text()
    assert re.fullmatch(r"sound: \d+ clip\(s\) with sound, \d+ without \(trained video-only\)", summary)
    assert 'f"  sound: {len(samples) - len(silent)} clip(s) with sound{origin}, {len(silent)} without "' in source
