"""``model_flavour``: which LTX-2 variant a config means, and where its weights are.

SimpleTuner's flavours (facts: names, default hub repos, combined-file names) pick the variant. LTX-2.0 ships
as combined single-file checkpoints (transformer, video VAE, audio VAE, vocoder in one ``.safetensors``),
one per flavour (``dev``, ``dev-fp8``, ``dev-fp4``); LTX-2.3 also has them; the diffusers repos carry the
configs, the Gemma text encoder, the connectors, the tokenizer and the scheduler.

:func:`resolve` turns ``pretrained_model_name_or_path`` + ``model_flavour`` into a :class:`Source`:

- a diffusers folder, or a hub repo with ``model_index.json`` (unless the flavour names a weight variant the
  diffusers layout does not hold, ``dev-fp8``): every part from it, as without a flavour;
- a local ``.safetensors`` file, or a folder holding the flavour's combined file: transformer and both VAEs
  from that file, everything else from the flavour's hub repo (through huggingface_hub's cache);
- a hub repo holding the flavour's combined file: the file through huggingface_hub (its cache when offline),
  the rest from the same repo;
- unset: the flavour's hub repo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig


@dataclass(frozen=True)
class Flavour:
    """One SimpleTuner flavour of ``ltxvideo2``."""

    name: str
    version: str  # "2.0", "2.3" or "2.5": the layout the weights must have
    repo: str  # SimpleTuner's hub repo for the flavour (configs and the parts a combined file lacks)
    combined_file: str | None  # the combined checkpoint's file name in Lightricks' release, if there is one
    needs_combined: bool = False  # the diffusers layout of the repo holds other weights (a quantised variant)
    refusal: str = ""  # why vtrain cannot load it ("" when it can)


FLAVOURS: dict[str, Flavour] = {f.name: f for f in (
    Flavour("dev", "2.0", "Lightricks/LTX-2", "ltx-2-19b-dev.safetensors"),
    Flavour("dev-fp8", "2.0", "Lightricks/LTX-2", "ltx-2-19b-dev-fp8.safetensors", needs_combined=True),
    Flavour("dev-fp4", "2.0", "Lightricks/LTX-2", "ltx-2-19b-dev-fp4.safetensors", needs_combined=True,
            refusal="its transformer is stored in NVFP4 (packed 4-bit floats with block scales), which only "
                    "Blackwell GPU kernels compute with; neither diffusers nor vtrain's quant plugin can load or "
                    "dequantise it"),
    Flavour("2.3-dev", "2.3", "dg845/LTX-2.3-Diffusers", "ltx-2.3-22b-dev.safetensors"),
    Flavour("2.3-distilled", "2.3", "dg845/LTX-2.3-Distilled-Diffusers", "ltx-2.3-22b-distilled.safetensors"),
    Flavour("2.5-dev", "2.5", "Lightricks/LTX-2.5", None),
    Flavour("2.5-distilled", "2.5", "Lightricks/LTX-2.5", None),
)}
SYNONYMS = {"2": "dev", "2.0": "dev", "2.5": "2.5-dev"}  # SimpleTuner reads these as the flavour named
DEFAULT = "dev"
CHOICES = (*FLAVOURS, *SYNONYMS)
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")


@dataclass(frozen=True)
class Source:
    """Where a run's parts come from: ``base`` (a diffusers folder or hub id) for configs and every part, except
    the transformer and both VAEs when ``checkpoint`` (a local combined file) is set."""

    base: str
    checkpoint: str | None
    flavour: Flavour


def flavour_of(config: ResolvedConfig) -> Flavour:
    """The run's flavour (``dev`` when ``model_flavour`` is unset), SimpleTuner's synonyms resolved."""
    name = str(config.get("model_flavour") or DEFAULT).strip().lower()
    return FLAVOURS[SYNONYMS.get(name, name)]


def _error(message: str, fix: str) -> Exception:
    from vtrain.errors import ConfigError, Problem

    return ConfigError([Problem("pretrained_model_name_or_path", message, fix)])


def is_diffusers_folder(path: Path) -> bool:
    """Whether ``path`` holds a diffusers pipeline layout (``model_index.json`` or ``transformer/config.json``)."""
    return (path / "model_index.json").is_file() or (path / "transformer" / "config.json").is_file()


def hub_file(repo: str, filename: str) -> str | None:
    """The local path of ``filename`` in the hub repo ``repo`` (downloaded, or from the cache when offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo, filename)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None


def cached_folder(repo: str) -> str:
    """The local snapshot folder of the hub repo ``repo`` when huggingface_hub's cache holds its diffusers layout,
    else ``repo`` itself. Local folders are read file by file, so parts of the layout a library probes for but
    the repo does not have (a ``config.json`` beside the tokenizer) are not looked up on the hub."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return repo
    return folder if is_diffusers_folder(Path(folder)) else repo


def resolve(config: ResolvedConfig) -> Source:
    """See the module docstring. Raises :class:`~vtrain.errors.ConfigError` saying what is missing."""
    flavour = flavour_of(config)
    if flavour.refusal:
        raise _error(f"model_flavour {flavour.name}: vtrain cannot load it: {flavour.refusal}",
                     "use model_flavour dev and quantise with base_model_precision (int8-torchao, fp8-torchao)")
    given = str(config.pretrained_model_name_or_path or flavour.repo)
    path = Path(given)
    if path.is_dir():
        if is_diffusers_folder(path) and not flavour.needs_combined:
            return Source(given, None, flavour)
        if flavour.combined_file and (path / flavour.combined_file).is_file():
            return Source(cached_folder(flavour.repo), str(path / flavour.combined_file), flavour)
        if flavour.needs_combined:
            raise _error(f"model_flavour {flavour.name} is stored only in its combined checkpoint "
                         f"({flavour.combined_file}), which {given} does not hold (its diffusers weights are "
                         "another variant)", f"put {flavour.combined_file} in the folder or point "
                         "pretrained_model_name_or_path at it, or set model_flavour to dev")
        raise _error(f"{given} is neither a diffusers LTX-2 folder nor holds the {flavour.name} flavour's combined "
                     f"checkpoint ({flavour.combined_file or 'none is published'})",
                     "point it at a diffusers folder (model_index.json), a combined .safetensors file, or a hub repo")
    if path.is_file() or given.endswith(SINGLE_FILE_SUFFIXES):
        if not path.is_file():
            raise _error(f"{given}: file not found", "check the path of the combined checkpoint")
        if flavour.combined_file is None:
            raise _error(f"model_flavour {flavour.name} has no combined single-file checkpoint (LTX-2.5 is published "
                         "as separate files)", f"point pretrained_model_name_or_path at a diffusers LTX-2.5 folder or "
                         f"repo ({flavour.repo}), or set model_flavour to the variant the file holds")
        return Source(cached_folder(flavour.repo), given, flavour)
    if not flavour.needs_combined and hub_file(given, "model_index.json"):
        return Source(cached_folder(given), None, flavour)
    checkpoint = hub_file(given, flavour.combined_file) if flavour.combined_file else None
    if checkpoint:
        return Source(cached_folder(given), checkpoint, flavour)
    wanted = f"{flavour.combined_file} or model_index.json" if not flavour.needs_combined else flavour.combined_file
    raise _error(f"{given}: not a local folder or file, and the hub repo's {wanted} is neither in the "
                 "huggingface_hub cache nor downloadable", "download the model once with network access (or "
                 "huggingface-cli download), or point pretrained_model_name_or_path at a local folder or file")


def check_version(flavour: Flavour, layout_variant: str, source: Source) -> None:
    """The loaded weights must have the layout the flavour names (2.3 and 2.5 share one)."""
    expected = "2.0" if flavour.version == "2.0" else "2.3"
    if layout_variant != expected:
        raise _error(f"model_flavour {flavour.name} means an LTX-{flavour.version} model, but the weights from "
                     f"{source.checkpoint or source.base} have the LTX-{layout_variant} layout",
                     "set model_flavour to the variant you load, or point pretrained_model_name_or_path at it")


def describe(source: Source) -> str:
    """One line for the start-up summary: the flavour and where its parts come from."""
    where = f"combined checkpoint {source.checkpoint}, the rest from {source.base}" if source.checkpoint \
        else source.base
    return f"flavour {source.flavour.name} (LTX-{source.flavour.version}): {where}"
