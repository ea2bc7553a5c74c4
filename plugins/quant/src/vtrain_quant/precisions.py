"""The quantisation choices users write, which library implements each, and what each needs.

Pure data plus cheap checks: nothing here imports torch or a quantisation library at module level.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """One ``*_precision`` value.

    :param name: what users write (``int8-quanto``).
    :param library: ``quanto``, ``torchao`` or ``bnb``.
    :param module: the import name whose presence the precision needs.
    :param package: the pip requirement that provides it (for the error message).
    :param min_capability: CUDA compute capability the kernels need; ``None`` runs on CPU too.
    :param compile_ok: whether ``torch.compile`` can trace the quantised layers.
    :param trainable: whether gradients flow through the quantised layers (to adapters before them).
    :param needs_cuda_build: whether the CUDA kernels are compiled on first use (optimum-quanto's
        ``quanto_cuda`` extension: nvcc and ninja needed).
    """

    name: str
    library: str
    module: str
    package: str
    min_capability: tuple[int, int] | None = None
    compile_ok: bool = True
    trainable: bool = True
    needs_cuda_build: bool = False


NO_CHANGE = "no_change"
_QUANTO = ("quanto", "optimum.quanto", "optimum-quanto==0.2.7")
_TORCHAO = ("torchao", "torchao", "torchao==0.18.0")
_BNB = ("bnb", "bitsandbytes", "bitsandbytes==0.50.2")

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("int8-quanto", *_QUANTO),
        Precision("int4-quanto", *_QUANTO),
        # on CUDA (capability 8.0+) quanto packs float8 weights for its Marlin kernel, built on first use
        Precision("fp8-quanto", *_QUANTO, needs_cuda_build=True),
        Precision("int8-torchao", *_TORCHAO),
        Precision("fp8-torchao", *_TORCHAO),  # weight-only float8: runs everywhere
        # dynamic float8 activations and weights: torch._scaled_mm has no backward
        Precision("fp8dq-torchao", *_TORCHAO, min_capability=(8, 9), trainable=False),
        # torchao's NF4Tensor: a tensor subclass that moves whole with .to() (group offload can move it)
        Precision("nf4-torchao", *_TORCHAO, compile_ok=False),
        Precision("nf4-bnb", *_BNB, compile_ok=False),
    )
}
CHOICES: tuple[str, ...] = (NO_CHANGE, *PRECISIONS)


def is_installed(module: str) -> bool:
    """Whether ``module`` (dotted) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def cuda_capability() -> tuple[int, int] | None:
    """The compute capability of CUDA device 0, or ``None`` without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(0))  # type: ignore[return-value]


def hardware_problem(precision: Precision) -> str | None:
    """Why this machine cannot run ``precision`` (``None`` when it can)."""
    if precision.min_capability is None:
        return None
    have = cuda_capability()
    need = ".".join(map(str, precision.min_capability))
    if have is None:
        return f"{precision.name} needs a CUDA GPU of compute capability {need} or newer (Ada, Hopper); none is present"
    if have < precision.min_capability:
        return (f"{precision.name} needs compute capability {need} or newer for float8 matrix multiplies; "
                f"this GPU has {have[0]}.{have[1]}")
    return None


def quanto_cuda_build_problem() -> str | None:
    """Why optimum-quanto's CUDA extension cannot be built here (``None`` when it is built already, when
    ninja and nvcc are present, or without a CUDA GPU of capability 8.0+, where quanto does not use it)."""
    capability = cuda_capability()
    if capability is None or capability < (8, 0):
        return None
    spec = importlib.util.find_spec("optimum.quanto")
    if spec is None or not spec.submodule_search_locations:
        return None
    import os

    import torch

    build = os.path.join(list(spec.submodule_search_locations)[0], "library", "extensions", "cuda", "build")
    version_file = os.path.join(build, "pytorch_version.txt")
    if os.path.isfile(version_file):
        with open(version_file, encoding="utf-8") as handle:
            if handle.read().strip() == torch.__version__:
                return None
    missing = [tool for tool, found in (("ninja", _has_ninja()), ("nvcc", _has_nvcc())) if not found]
    if not missing:
        return None
    return (f"fp8-quanto on this GPU compiles optimum-quanto's CUDA kernels (quanto_cuda) when the first layer runs, "
            f"which needs {' and '.join(missing)}: training would stop at the first step")


def _has_ninja() -> bool:
    from torch.utils.cpp_extension import is_ninja_available

    return bool(is_ninja_available())


def _has_nvcc() -> bool:
    import os
    import shutil

    from torch.utils.cpp_extension import CUDA_HOME

    return bool(shutil.which("nvcc")) or bool(CUDA_HOME and os.path.isfile(os.path.join(CUDA_HOME, "bin", "nvcc")))
