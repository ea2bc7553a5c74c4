"""Collecting validation prompts: the main prompt, the user's library, the built-in library."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig

BUILTIN_PROMPT_LIBRARY: dict[str, str] = {
    "street_night": "a rainy city street at night, neon signs reflecting in puddles, people walking with umbrellas",
    "ocean_waves": "slow waves rolling onto a sandy beach at sunset, the camera gliding along the shoreline",
    "forest_path": "a sunlit path through a dense green forest, leaves moving gently in the wind",
    "portrait": "a close-up portrait of an elderly man smiling, soft window light, shallow depth of field",
    "kitchen": "a cook chopping vegetables on a wooden board in a bright kitchen, steam rising from a pot",
    "cartoon_cat": "a cartoon cat chasing a red ball across a living-room floor, bold outlines, flat colours",
    "mountain_drive": "a car driving along a winding mountain road covered in snow, aerial view",
    "abstract": "swirling abstract shapes of ink in water, blue and gold, macro shot",
}


def safe_nickname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "prompt"


def collect_prompts(config: ResolvedConfig) -> dict[str, str]:
    """nickname -> prompt, in a stable order; nicknames are safe as file names.

    Empty when ``validation_disable`` is set; with ``validation_disable_unconditional`` false and any
    prompt, the empty prompt is rendered too under the nickname ``unconditional``.
    """
    prompts: dict[str, str] = {}
    if config.get("validation_disable", False):
        return prompts
    if config.validation_prompt:
        prompts["validation"] = config.validation_prompt
    if config.user_prompt_library:
        from vtrain.config import read_json_file

        library = read_json_file(Path(config.user_prompt_library), what="user_prompt_library")  # a BOM is fine
        for nickname, prompt in library.items():
            prompts[safe_nickname(nickname)] = prompt
    if config.validation_prompt_library:
        prompts.update(BUILTIN_PROMPT_LIBRARY)
    if prompts and not config.get("validation_disable_unconditional", True):
        prompts["unconditional"] = ""
    return prompts
