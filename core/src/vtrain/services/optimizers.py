"""Optimizers under SimpleTuner's names, registered through ``register_optimizers``.

* ``torch-*``: the ``torch.optim`` class of that name.
* ``adamw_bf16`` and ``optimi-*``: torch-optimi. ``adamw_bf16`` is AdamW with Kahan-compensated
  updates: the rounding error of every update is carried in a buffer, so bf16 weights follow the
  fp32 trajectory. ``optimi-*`` switch Kahan summation on by themselves for low-precision weights.
* ``adamw_schedulefree`` (+ ``+aggressive``, ``+no_kahan``): the ``schedulefree`` package.
* ``prodigy``: the ``prodigy-plus-schedule-free`` package.

Each uses SimpleTuner's default settings for that optimizer; explicitly set ``adam_*`` keys and
``optimizer_config`` override them (see :mod:`vtrain.services.optimizer_kwargs`). The
bitsandbytes (``bnb-*``) and torchao (``ao-*``) optimizers come from the ``vtrain-quant`` plugin.
Schedule-free optimizers are switched to their evaluation weights for validation and saving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vtrain.hookspecs import hookimpl
from vtrain.services.optimizer_kwargs import class_factory

_KAHAN = {"kahan_sum": True}
_ADAM = {"betas": (0.9, 0.999), "weight_decay": 0.0, "eps": 1e-8}

# name -> (module, class, package to install, SimpleTuner's default settings, help)
TABLE: dict[str, tuple[str, str, str, dict[str, Any], str]] = {
    "torch-adam": ("torch.optim", "Adam", "torch", _ADAM, "torch.optim.Adam."),
    "torch-adamw": ("torch.optim", "AdamW", "torch", {**_ADAM, "weight_decay": 1e-2}, "torch.optim.AdamW."),
    "torch-sgd": ("torch.optim", "SGD", "torch", {"momentum": 0.0, "weight_decay": 0.0}, "torch.optim.SGD."),
    "torch-radam": ("torch.optim", "RAdam", "torch", _ADAM, "torch.optim.RAdam."),
    "torch-nadam": ("torch.optim", "NAdam", "torch", {**_ADAM, "momentum_decay": 4e-3}, "torch.optim.NAdam."),
    "torch-rmsprop": ("torch.optim", "RMSprop", "torch", {"weight_decay": 0.0, "eps": 1e-8, "momentum": 0.0},
                      "torch.optim.RMSprop."),
    "torch-adagrad": ("torch.optim", "Adagrad", "torch", {"weight_decay": 0.0, "eps": 1e-10}, "torch.optim.Adagrad."),
    "torch-adadelta": ("torch.optim", "Adadelta", "torch", {"weight_decay": 0.0, "eps": 1e-6},
                       "torch.optim.Adadelta."),
    "torch-adafactor": ("torch.optim", "Adafactor", "torch", {"eps": (None, 1e-3), "weight_decay": 0.0},
                        "torch.optim.Adafactor."),
    "torch-adamax": ("torch.optim", "Adamax", "torch", _ADAM, "torch.optim.Adamax."),
    "torch-asgd": ("torch.optim", "ASGD", "torch", {"weight_decay": 0.0}, "torch.optim.ASGD."),
    "torch-sparseadam": ("torch.optim", "SparseAdam", "torch", {"betas": (0.9, 0.999), "eps": 1e-8},
                         "torch.optim.SparseAdam (sparse gradients only)."),
    "adamw_bf16": ("optimi", "AdamW", "torch-optimi",
                   {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-6, "kahan_sum": True},
                   "AdamW with Kahan summation (torch-optimi): bf16 weights stay accurate. Recommended."),
    "optimi-stableadamw": ("optimi", "StableAdamW", "torch-optimi",
                           {"betas": (0.9, 0.99), "weight_decay": 1e-2, "eps": 1e-6, **_KAHAN},
                           "torch-optimi StableAdamW (AdamW with AdaFactor-style update clipping)."),
    "optimi-adamw": ("optimi", "AdamW", "torch-optimi", {"betas": (0.9, 0.99), "weight_decay": 0.0, "eps": 1e-6, **_KAHAN},
                     "torch-optimi AdamW (Kahan summation automatic for bf16/fp16 weights)."),
    "optimi-lion": ("optimi", "Lion", "torch-optimi", {"betas": (0.9, 0.99), "weight_decay": 0.0, **_KAHAN},
                    "torch-optimi Lion (use a learning rate 3-10x below AdamW's)."),
    "optimi-radam": ("optimi", "RAdam", "torch-optimi", {"betas": (0.9, 0.99), "weight_decay": 0.0, "eps": 1e-6, "decouple_wd": True, **_KAHAN},
                     "torch-optimi RAdam."),
    "optimi-ranger": ("optimi", "Ranger", "torch-optimi", {"betas": (0.9, 0.99), "weight_decay": 0.0, "eps": 1e-6, "decouple_wd": True,
                                                         **_KAHAN},
                      "torch-optimi Ranger (RAdam with Lookahead)."),
    "optimi-adan": ("optimi", "Adan", "torch-optimi", {"betas": (0.98, 0.92, 0.999), "weight_decay": 2e-2,
                                                       "eps": 1e-6, **_KAHAN},
                    "torch-optimi Adan (three betas: set them through optimizer_config)."),
    "optimi-adam": ("optimi", "Adam", "torch-optimi", {"betas": (0.9, 0.99), "weight_decay": 0.0, "eps": 1e-6, **_KAHAN},
                    "torch-optimi Adam."),
    "optimi-sgd": ("optimi", "SGD", "torch-optimi", {"momentum": 0.0, "weight_decay": 0.0, **_KAHAN},
                   "torch-optimi SGD."),
    "adamw_schedulefree": ("schedulefree", "AdamWScheduleFree", "schedulefree",
                           {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8},
                           "Schedule-free AdamW (schedulefree package; no Kahan summation, see the differences page)."),
    "adamw_schedulefree+aggressive": ("schedulefree", "AdamWScheduleFree", "schedulefree",
                                      {"betas": (0.9, 0.999), "weight_decay": 1e-3, "eps": 1e-6},
                                      "Schedule-free AdamW with SimpleTuner's 'aggressive' settings."),
    "adamw_schedulefree+no_kahan": ("schedulefree", "AdamWScheduleFree", "schedulefree",
                                    {"betas": (0.9, 0.999), "weight_decay": 1e-3, "eps": 1e-6},
                                    "Schedule-free AdamW without Kahan summation."),
    "prodigy": ("prodigyplus.prodigy_plus_schedulefree", "ProdigyPlusScheduleFree", "prodigy-plus-schedule-free",
                {"betas": (0.9, 0.99), "weight_decay": 0.0, "eps": 1e-8, "d0": 1e-6, "d_coef": 1,
                 "use_bias_correction": False, "split_groups": True, "factored": True, "use_stableadamw": True,
                 "stochastic_rounding": True},
                "Prodigy + schedule-free (prodigy-plus-schedule-free): learns its own step size; use learning_rate 1.0."),
}

#: Optimizers that replace the learning-rate schedule (schedule-free); only constant schedules make sense with them.
SCHEDULE_FREE = ("adamw_schedulefree", "adamw_schedulefree+aggressive", "adamw_schedulefree+no_kahan", "prodigy")

#: SimpleTuner names vtrain cannot serve, why, and the nearest vtrain name.
UNAVAILABLE: dict[str, tuple[str, str]] = {
    "soap": ("SimpleTuner ships its own SOAP implementation; no installable package provides it", "adamw_bf16"),
    "muon": ("SimpleTuner's MuonClip is its own implementation (torch.optim.Muon takes 2-D weights only)",
             "optimi-adamw"),
    "sdnq-adamw": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation, which vtrain does not have",
                   "ao-adamw8bit"),
    "sdnq-adamw+no_quant": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "adamw_bf16"),
    "sdnq-adafactor": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "torch-adafactor"),
    "sdnq-came": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "torch-adafactor"),
    "sdnq-lion": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "optimi-lion"),
    "sdnq-muon": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "optimi-adamw"),
    "sdnq-muon+quantized_matmul": ("the SDNQ optimizers belong to SimpleTuner's SDNQ quantisation", "optimi-adamw"),
}


def set_optimizer_mode(optimizer: Any, mode: str) -> None:
    """Switch a schedule-free optimizer to its ``train`` or ``eval`` weights (others have no modes)."""
    switch = getattr(optimizer, mode, None) if hasattr(optimizer, "eval") and hasattr(optimizer, "train") else None
    if callable(switch):
        switch()


def make_factory(name: str) -> Callable[[Any, Any, dict[str, Any]], Any]:
    """The registry factory ``(params, config, extra) -> optimizer`` for ``name`` of :data:`TABLE`."""
    module, class_name, package, defaults, _help = TABLE[name]
    return class_factory(name, module, class_name, package, defaults)


@hookimpl
def register_optimizers(register: Callable[..., None]) -> None:
    """Register the ``torch-*``, ``adamw_bf16``, ``optimi-*``, schedule-free and ``prodigy`` optimizers."""
    for name, entry in TABLE.items():
        register(name, make_factory(name), help=entry[4])
