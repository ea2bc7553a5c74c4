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
    """

    name: str
    library: str
    module: str
    package: str
    min_capability: tuple[int, int] | None = None
    compile_ok: bool = True


NO_CHANGE = "no_change"
_QUANTO = ("quanto", "optimum.quanto", "optimum-quanto==0.2.7")
_TORCHAO = ("torchao", "torchao", "torchao==0.18.0")
_BNB = ("bnb", "bitsandbytes", "bitsandbytes==0.50.2")

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("int8-quanto", *_QUANTO),
        Precision("int4-quanto", *_QUANTO),
        Precision("fp8-quanto", *_QUANTO),
        Precision("int8-torchao", *_TORCHAO),
        Precision("fp8-torchao", *_TORCHAO),  # weight-only float8: runs everywhere
        Precision("fp8dq-torchao", *_TORCHAO, min_capability=(8, 9)),  # dynamic float8 activations and weights
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
