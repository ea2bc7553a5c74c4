"""docs/tread.md: every JSON example is accepted as written and fits the LTX-Video 2B block count."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vtrain.runner import Runner
from vtrain_tread.settings import parse, resolve

ROOT = Path(__file__).resolve().parents[3]
LTX_VIDEO_BLOCKS = 28


def test_documented_configs_are_accepted_as_written(tread_ltx_config: dict[str, Any]) -> None:
    blocks = [json.loads(block) for block in
              re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "tread.md").read_text(), flags=re.S)]
    assert len(blocks) >= 2
    for block in blocks:
        runner = Runner.from_config({**tread_ltx_config, **block})
        routes = resolve(parse(runner.config.tread_config), LTX_VIDEO_BLOCKS)
        assert len(routes) == len(block["tread_config"]["routes"])
