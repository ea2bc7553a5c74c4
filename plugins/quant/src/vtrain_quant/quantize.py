"""Quantising the frozen Linear layers of a module in place with optimum-quanto, torchao or bitsandbytes.

Only ``torch.nn.Linear`` layers are quantised, and only those whose name matches none of the
exclusion patterns (norms, embeddings and the input/output projections keep full precision).
Adapters attach afterwards: peft wraps quanto's ``QLinear``, torchao's quantised ``Linear`` and
bitsandbytes' ``Linear4bit`` as base layers, and LyCORIS runs them in bypass mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any

from vtrain_quant.precisions import PRECISIONS

if TYPE_CHECKING:
    import torch

# Never quantised in a text encoder, whatever the family says: embeddings, norms, output heads.
TEXT_ENCODER_EXCLUSIONS = ("*embed*", "*norm*", "*layer_norm*", "lm_head", "*.wo")


def is_excluded(name: str, patterns: Iterable[str]) -> bool:
    """Whether module ``name`` matches a pattern, or sits below a module a pattern names."""
    for pattern in patterns:
        if fnmatch(name, pattern) or fnmatch(name, pattern + ".*") or name.startswith(pattern + "."):
            return True
    return False


def quantizable_linears(module: torch.nn.Module, exclusions: Iterable[str]) -> list[str]:
    """Names of the frozen ``nn.Linear`` layers of ``module`` that are not excluded."""
    import torch

    patterns = tuple(exclusions)
    names = []
    for name, child in module.named_modules():
        if type(child) is not torch.nn.Linear or not name:
            continue
        if is_excluded(name, patterns) or any(p.requires_grad for p in child.parameters()):
            continue
        names.append(name)
    return names


# bitsandbytes quantises the flattened weight in blocks of this many values (its default for 4-bit)
BNB_BLOCKSIZE = 64
# torchao's NF4Tensor: 64-value blocks (as bitsandbytes), their scales quantised again in blocks of up to 256
NF4_BLOCK_SIZE = 64
NF4_SCALER_BLOCK_SIZE = 256
# bitsandbytes' CPU kernels repack 4-bit weights in groups of 32 output rows (and pairs of inputs)
BNB_CPU_ROWS = 32
FLOAT8_MULTIPLE = 16  # torch._scaled_mm needs both matrix sides a multiple of 16


def unsupported_reason(precision: str, in_features: int, out_features: int) -> str | None:
    """Why the backend of ``precision`` cannot quantise a Linear of this shape (``None`` when it can).

    Each backend's rule comes from where its kernels fail: bitsandbytes on weights that do not fill
    whole blocks (``shape '[32, 0]'``) and, on the CPU, on rows not grouped by 32; float8 matrix
    multiplies on sides that are not multiples of 16.
    """
    library = PRECISIONS[precision].library
    if library == "bnb":
        if (in_features * out_features) % BNB_BLOCKSIZE:
            return f"its {out_features}x{in_features} weight does not fill whole {BNB_BLOCKSIZE}-value blocks"
        if out_features % BNB_CPU_ROWS or in_features % 2:
            return f"bitsandbytes needs out_features a multiple of {BNB_CPU_ROWS} and an even in_features " \
                   f"(it has {out_features} and {in_features})"
    if precision == "nf4-torchao" and (in_features * out_features) % NF4_BLOCK_SIZE:
        return f"its {out_features}x{in_features} weight does not fill whole {NF4_BLOCK_SIZE}-value blocks"
    if precision == "fp8dq-torchao" and (in_features % FLOAT8_MULTIPLE or out_features % FLOAT8_MULTIPLE):
        return f"float8 matrix multiplies need both sides a multiple of {FLOAT8_MULTIPLE} " \
               f"(it is {out_features}x{in_features})"
    if precision == "int4-quanto" and in_features < 2:
        return "int4 packs two values per byte along the input side"
    return None


def quantize_module(module: torch.nn.Module, precision: str, exclusions: Iterable[str],
                    compute_dtype: torch.dtype, skipped: dict[str, str] | None = None) -> list[str]:
    """Quantise ``module``'s eligible Linear layers to ``precision`` in place; return their names.

    Layers the backend cannot quantise (see :func:`unsupported_reason`) keep full precision; their
    names and reasons go into ``skipped``.
    """
    names = []
    for name in quantizable_linears(module, exclusions):
        layer = module.get_submodule(name)
        reason = unsupported_reason(precision, layer.in_features, layer.out_features)
        if reason is None:
            names.append(name)
        elif skipped is not None:
            skipped[name] = reason
    if not names:
        return names
    library = PRECISIONS[precision].library
    if library == "quanto":
        _quanto(module, precision, names)
    elif precision == "nf4-torchao":
        _torchao_nf4(module, names)
    elif library == "torchao":
        _torchao(module, precision, names)
    elif library == "bnb":
        _bnb_nf4(module, names, compute_dtype)
    else:  # pragma: no cover - the table and this dispatch are edited together
        raise ValueError(f"unknown quantisation library {library!r}")
    module.requires_grad_(False)
    return names


def _quanto(module: torch.nn.Module, precision: str, names: list[str]) -> None:
    from optimum.quanto import freeze, qfloat8, qint4, qint8, quantize

    weights = {"int8-quanto": qint8, "int4-quanto": qint4, "fp8-quanto": qfloat8}[precision]
    quantize(module, weights=weights, include=names)
    freeze(module)  # replace the float weights by their quantised form (the memory saving)
    for name in names:
        module.get_submodule(name).register_forward_pre_hook(_cpu_activations_in_weight_dtype)


def _cpu_activations_in_weight_dtype(layer: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """On the CPU, give a quanto layer its inputs in its weights' dtype.

    Under bf16 autocast an fp32 base's quanto layers receive bf16 activations, and quanto's CPU kernel
    for bf16 inputs (``torch._weight_int8pack_mm``) then refuses the fp32 scales. CUDA's kernel mixes
    dtypes itself, so only CPU inputs are cast.
    """
    import torch

    inputs = args[0] if args else None
    if (isinstance(inputs, torch.Tensor) and inputs.device.type == "cpu" and inputs.is_floating_point()
            and inputs.dtype != layer.weight.dtype):
        return (inputs.to(layer.weight.dtype), *args[1:])
    return None


def _torchao(module: torch.nn.Module, precision: str, names: list[str]) -> None:
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )

    config = {"int8-torchao": Int8WeightOnlyConfig, "fp8-torchao": Float8WeightOnlyConfig,
              "fp8dq-torchao": Float8DynamicActivationFloat8WeightConfig}[precision]()
    wanted = set(names)
    quantize_(module, config, filter_fn=lambda _child, fqn: fqn in wanted)


def _torchao_nf4(module: torch.nn.Module, names: list[str]) -> None:
    """Replace each Linear's weight by torchao's ``NF4Tensor`` (QLoRA's NF4 with double-quantised scales; the
    Linear class stays, ``F.linear`` dequantises on the fly and passes gradients to the input). The scales are
    quantised in blocks of 256 block scales, or the largest power of two dividing the block count when it has
    fewer (small layers)."""
    import math

    import torch
    from torchao.quantization import to_nf4

    for name in names:
        layer = module.get_submodule(name)
        weight = layer.weight.data
        blocks = weight.numel() // NF4_BLOCK_SIZE
        scaler_block = math.gcd(NF4_SCALER_BLOCK_SIZE, blocks)
        layer.weight = torch.nn.Parameter(to_nf4(weight, NF4_BLOCK_SIZE, scaler_block), requires_grad=False)


def _bnb_nf4(module: torch.nn.Module, names: list[str], compute_dtype: torch.dtype) -> None:
    """Swap each Linear for a bitsandbytes ``Linear4bit`` holding NF4 weights (works on CPU and CUDA,
    unlike diffusers' bitsandbytes loader, which refuses a machine without a GPU)."""
    import bitsandbytes as bnb
    import torch

    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        old = getattr(parent, leaf)
        device = old.weight.device
        new = bnb.nn.Linear4bit(old.in_features, old.out_features, bias=old.bias is not None,
                                compute_dtype=compute_dtype, quant_type="nf4", quant_storage=torch.uint8,
                                device="meta")
        new.weight = bnb.nn.Params4bit(old.weight.data.to("cpu"), requires_grad=False, quant_type="nf4",
                                       quant_storage=torch.uint8)
        if old.bias is not None:
            new.bias = torch.nn.Parameter(old.bias.data.to(compute_dtype), requires_grad=False)
        setattr(parent, leaf, new.to(device))  # Params4bit quantises when it is moved to a device


def quantized_bytes(module: torch.nn.Module) -> int:
    """Bytes held by ``module``'s parameters and buffers as stored (quantised tensors count their payload)."""
    total = 0
    seen: set[int] = set()
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += _tensor_bytes(tensor)
    return total


def _tensor_bytes(tensor: Any) -> int:
    inner = getattr(tensor, "__tensor_flatten__", None)
    if inner is not None and type(tensor).__name__ not in ("Parameter", "Tensor"):
        names, _ = inner()
        return sum(_tensor_bytes(getattr(tensor, n)) for n in names)
    return tensor.numel() * tensor.element_size()
