"""vtrain-quant: quantised frozen base models (optimum-quanto, torchao, bitsandbytes NF4) in the
``quantize_model`` phase, and bitsandbytes' 8-bit optimizers through the optimizer registry.

The denoiser's Linear layers are quantised except those the family's
``FamilyTraits.quantization_exclusions`` names (norms, embeddings, input/output projections);
text encoders keep their embeddings, norms and output layers. Adapters attach afterwards and save
as ordinary LoRA/LyCORIS files that load on the unquantised model.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl
from vtrain.notices import NoticeOnce
from vtrain_quant.precisions import CHOICES, NO_CHANGE, PRECISIONS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

log = logging.getLogger("vtrain.quant")
EXCLUSIONS_META = "quantization_exclusions"
REPORT_META = "quantization"
# precision key -> the bundle component it applies to ("model" is the denoiser)
TARGETS = {"base_model_precision": "model", "text_encoder_1_precision": "text_encoder",
           "text_encoder_2_precision": "text_encoder_2"}
OPTION_KEYS = (*TARGETS, "quantize_via")


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the precision keys (kept equal to the catalog entry for ``vtrain-quant``)."""
    own = {"category": "quantisation", "choices": CHOICES}
    registry.add("base_model_precision", "str", NO_CHANGE,
                 "Quantise the frozen denoiser's Linear weights: int8/int4/fp8-quanto, int8-torchao, fp8-torchao "
                 "(weight-only float8), nf4-torchao (QLoRA's NF4; works with group offload), nf4-bnb. "
                 "fp8dq-torchao (dynamic float8, compute capability 8.9+) is for the text encoders only: it cannot backpropagate. "
                 "Norms, embeddings and the input/output projections stay in base_model_default_dtype.", **own)
    registry.add("text_encoder_1_precision", "str", NO_CHANGE, "Quantise the first text encoder (same choices).", **own)
    registry.add("text_encoder_2_precision", "str", NO_CHANGE,
                 "Quantise the second text encoder, for families that have one (same choices).", **own)
    registry.add("quantize_via", "str", "accelerator",
                 "Where quantisation runs: accelerator (fast; each part visits the GPU and returns to where it was) "
                 "or cpu (slower, never needs the full-precision part in GPU memory). With enable_group_offload "
                 "the denoiser is always quantised on the CPU.",
                 choices=("cpu", "accelerator"), category="quantisation")


@hookimpl
def register_optimizers(register: Callable[..., None]) -> None:
    """SimpleTuner's ``bnb-*`` (bitsandbytes) and ``ao-*`` (torchao) optimizer names."""
    from vtrain_quant.optimizers import TABLE, make_factory

    for name, entry in TABLE.items():
        register(name, make_factory(name), help=entry[5])


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Missing libraries, hardware that cannot run a precision, and combinations that cannot work."""
    from vtrain_quant.precisions import hardware_problem, is_installed, quanto_cuda_build_problem

    for key in TARGETS:
        precision = PRECISIONS.get(config[key])
        if precision is None:
            continue
        if not is_installed(precision.module):
            problems.add(key, f"{precision.name} needs the {precision.module} package, which is not installed",
                         f"pip install {precision.package}, or choose another precision")
        reason = hardware_problem(precision)
        if reason:
            problems.add(key, reason, "use fp8-torchao (weight-only float8) or int8-quanto, which run on any device")
        if precision.needs_cuda_build:
            reason = quanto_cuda_build_problem()
            if reason:
                problems.add(key, reason, "install ninja and the CUDA toolkit's nvcc (matching torch.version.cuda), "
                             "or use fp8-torchao / int8-quanto")
    base = PRECISIONS.get(config.base_model_precision)
    if base is None:
        return
    if not base.trainable:
        problems.add("base_model_precision", f"{base.name} computes its matmuls with torch._scaled_mm, which has no "
                     "derivative, so no gradient reaches the adapters before its layers",
                     "use fp8-torchao (weight-only float8, same memory) for the denoiser; fp8dq-torchao suits the "
                     "text encoders")
    if config.get("fsdp_enable"):
        problems.add("base_model_precision", f"{base.name} weights are tensor subclasses that FSDP2 cannot split into "
                     "DTensor shards (fully_shard shards plain floating-point parameters)",
                     "use base_model_precision=no_change with FSDP (sharding already divides the weights' memory by "
                     "the number of processes), or quantise without fsdp_enable")
    if config.model_type == "full":
        problems.add("base_model_precision", f"model_type=full trains every weight, but {base.name} freezes them "
                     "in a quantised form that cannot receive updates",
                     "use model_type=lora (LoRA or LyCORIS train on top of the quantised base), or no_change")
    if config.get("torch_compile") and not base.compile_ok:
        problems.add("base_model_precision", f"{base.name} does not work with torch.compile "
                     "(bitsandbytes' 4-bit kernels cannot be traced)",
                     "turn torch_compile off, or use int8-quanto / int8-torchao, which compile (the fastest option)")
    if config.optimizer.startswith("bnb-") and not is_installed("bitsandbytes"):
        problems.add("optimizer", f"{config.optimizer} needs bitsandbytes, which is not installed",
                     "pip install bitsandbytes==0.50.2")


@hookimpl(wrapper=True)
def load_model(config: ResolvedConfig, family: ModelFamily) -> Any:
    """Remember the family's exclusion list on the bundle (read after loading: traits may depend on it)."""
    bundle = yield
    if bundle is not None:
        bundle.meta.setdefault(EXCLUSIONS_META, tuple(family.traits.quantization_exclusions))
    return bundle


@hookimpl(wrapper=True)
def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> Any:
    """LyCORIS adds its delta to the base weight unless it runs in bypass mode (W x + delta(x)). It
    switches bypass on for quanto and bitsandbytes layers itself, but torchao's quantised weights keep
    the plain Linear class, so switch it on here for every LyCORIS module over a torchao weight."""
    result = yield
    switched = 0
    for module in bundle.extra_trainables.values():
        for child in module.modules():
            org = getattr(child, "org_module", None)
            weight = getattr(org[0], "weight", None) if isinstance(org, (list, tuple)) and org else None
            if weight is not None and type(weight).__module__.startswith("torchao") and not child.bypass_mode:
                child.bypass_mode = True
                child.is_quant = True
                switched += 1
    if switched:
        log.info("LyCORIS: bypass mode for %d modules over torchao weights", switched)
    return result


@hookimpl
def quantize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Quantise the denoiser and the text encoders whose precision is not ``no_change``."""
    from vtrain.errors import ConfigError, Problem
    from vtrain_quant.quantize import TEXT_ENCODER_EXCLUSIONS

    report: dict[str, dict[str, Any]] = {}
    for key, target in TARGETS.items():
        precision = config[key]
        if precision == NO_CHANGE:
            continue
        if target == "model":
            module, exclusions = bundle.model, tuple(bundle.meta.get(EXCLUSIONS_META, ()))
        else:
            module = bundle.components.get(target)
            if module is None:
                raise ConfigError([Problem(key, f"the {bundle.family!r} family has no component {target!r} to quantise",
                                           f"remove {key} (or set it to no_change)")])
            exclusions = TEXT_ENCODER_EXCLUSIONS + tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
        report[target] = _quantize_one(module, precision, exclusions, config, target)
    if report:
        bundle.meta[REPORT_META] = report


def quantize_device(config: ResolvedConfig, home: Any, is_denoiser: bool) -> Any:
    """Where a part is quantised: ``home`` (where it lives) or the CUDA device for quantize_via=accelerator.

    With group offload the denoiser stays on the CPU: its full-precision weights would not fit on the
    accelerator at once, which is why group offload was chosen."""
    import torch

    if config.quantize_via != "accelerator":
        return home
    if not torch.cuda.is_available():
        if config.explicitly_set("quantize_via"):
            _notice_once("quantize_via=accelerator: no CUDA device, quantising on the CPU")
        return home
    if is_denoiser and config.get("enable_group_offload"):
        _notice_once("quantize_via=accelerator with enable_group_offload: the denoiser is quantised on the CPU "
                     "(its full-precision weights are not moved to the GPU)")
        return home
    return torch.device("cuda")


def _quantize_one(module: Any, precision: str, exclusions: tuple[str, ...], config: ResolvedConfig,
                  target: str = "model") -> dict[str, Any]:
    import torch

    from vtrain.family import base_dtype_name
    from vtrain_quant.quantize import quantize_module, quantized_bytes

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[base_dtype_name(config)]
    home = _device_of(module)
    device = quantize_device(config, home, is_denoiser=target == "model")
    before = quantized_bytes(module)
    module.to(device)
    skipped: dict[str, str] = {}
    names = quantize_module(module, precision, exclusions, dtype, skipped)
    module.to(home)
    after = quantized_bytes(module)
    log.info("quantised %d Linear layers to %s (%.1f MiB -> %.1f MiB)", len(names), precision,
             before / 2**20, after / 2**20)
    if skipped:
        first = next(iter(skipped.items()))
        print(f"note: {precision}: {len(skipped)} Linear layer(s) kept in full precision because the backend cannot "
              f"quantise them ({first[0]}: {first[1]}" + (f"; and {len(skipped) - 1} more" if len(skipped) > 1 else "")
              + ")", file=sys.stderr, flush=True)
    return {"precision": precision, "layers": len(names), "skipped": len(skipped), "bytes_before": before,
            "bytes_after": after}


def _device_of(module: Any) -> Any:
    import torch

    for param in module.parameters():
        return param.device
    return torch.device("cpu")


_notice_once = NoticeOnce(log)


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    report = (run.bundle.meta.get(REPORT_META) if run.bundle is not None else None) or {}
    return [f"quantised {target}: {r['precision']}, {r['layers']} Linear layers"
            + (f" ({r['skipped']} skipped: the backend cannot quantise them)" if r.get("skipped") else "")
            + f", {r['bytes_before'] / 2**20:.1f} -> {r['bytes_after'] / 2**20:.1f} MiB"
            for target, r in report.items()] or None
