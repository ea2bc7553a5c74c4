"""The model card (``README.md``) written beside the trained adapter and pushed to the hub.

It holds hub metadata (base model, tags), the validation prompts with their media, the training
settings that matter for reproduction, and a diffusers usage snippet. A family may supply its own
snippet with an optional ``model_card_usage(config, repo_id) -> str`` method. Secrets never appear:
settings go through :mod:`vtrain.services.redact` and only the keys listed here are shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig

MEDIA_SUFFIXES = (".mp4", ".gif", ".webm", ".png", ".jpg", ".jpeg", ".webp")
SETTINGS = (
    "model_family", "model_type", "lora_type", "lora_rank", "lora_alpha", "lora_dropout", "base_model_precision",
    "base_model_default_dtype", "mixed_precision", "optimizer", "learning_rate", "lr_scheduler", "lr_warmup_steps",
    "train_batch_size", "gradient_accumulation_steps", "max_train_steps", "max_grad_norm", "grad_clip_method",
    "flow_schedule_shift", "flow_schedule_auto_shift", "caption_dropout_probability", "use_ema", "ema_decay",
    "ema_update_interval", "seed", "resolution", "resolution_type", "validation_guidance",
    "validation_num_inference_steps", "validation_resolution",
)


def usage_snippet(config: ResolvedConfig, family: Any, repo_id: str, prompt: str) -> str:
    """Python code that loads the result with diffusers (the family's own, if it supplies one)."""
    custom = getattr(family, "model_card_usage", None)
    if callable(custom):
        return str(custom(config, repo_id))
    base = config.pretrained_model_name_or_path or "<base model>"
    width, height = (str(config.validation_resolution[0]).split("x") + ["512"])[:2] if config.validation_resolution \
        else ("768", "512")
    lines = [
        "import torch",
        "from diffusers import DiffusionPipeline",
        "from diffusers.utils import export_to_video",
        "",
        f"pipe = DiffusionPipeline.from_pretrained({base!r}, torch_dtype=torch.bfloat16)",
    ]
    if config.model_type == "lora":
        lines.append(f"pipe.load_lora_weights({repo_id!r})")
    lines += [
        'pipe.to("cuda")',
        f"video = pipe(prompt={prompt!r}, negative_prompt={config.validation_negative_prompt!r},",
        f"             width={int(width)}, height={int(height)}, guidance_scale={config.validation_guidance},",
        f"             num_inference_steps={config.validation_num_inference_steps}).frames[0]",
        f'export_to_video(video, "output.mp4", fps={getattr(family.traits, "default_fps", 24)})',
    ]
    return "\n".join(lines)


def render(config: ResolvedConfig, family: Any, repo_id: str, steps: int, prompts: Mapping[str, str],
           media: Sequence[Path], output_dir: Path) -> str:
    """The card's markdown. ``media`` are files under ``output_dir``, linked by relative path."""
    from vtrain.services.redact import redact_config, redact_text

    settings = redact_config({key: config[key] for key in SETTINGS if key in config})
    base = config.pretrained_model_name_or_path
    tags = ["vtrain", family.name, "diffusers", "text-to-video"]
    if config.model_type == "lora":
        tags += ["lora", "diffusers-training"]
    front = ["---", "library_name: diffusers", "pipeline_tag: text-to-video"]
    if base:
        front.append(f"base_model: {json.dumps(base)}")
    front.append("tags:")
    front += [f"- {tag}" for tag in dict.fromkeys(tags)]
    front.append("---")
    what = "LoRA adapter" if config.model_type == "lora" else "fine-tuned model"
    body = [
        f"# {repo_id}",
        "",
        f"A {what} for `{base or 'the base model'}` ({family.name} family), trained with vtrain for {steps} updates.",
        "",
        "## Validation prompts",
        "",
    ]
    for nickname, prompt in prompts.items():
        body.append(f"- **{nickname}**: {prompt}")
    if not prompts:
        body.append("(none)")
    if media:
        body += ["", "## Validation media", ""]
        for path in media:
            rel = path.relative_to(output_dir).as_posix()
            if path.suffix.lower() in (".mp4", ".webm"):
                body.append(f'- [{path.name}]({rel})<br><video src="{rel}" controls loop muted width="384"></video>')
            else:
                body.append(f"- ![{path.name}]({rel})")
    body += ["", "## Training settings", "", "| setting | value |", "|---|---|"]
    body += [f"| {key} | {json.dumps(value) if not isinstance(value, str) else value} |" for key, value in settings.items()]
    first_prompt = next(iter(prompts.values()), "a video")
    body += ["", "## Usage", "", "```python", usage_snippet(config, family, repo_id, first_prompt), "```", ""]
    return redact_text("\n".join(front + body))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
