"""SimpleTuner's optimizer names: each is served by its real package (or refused with the reason and
the nearest name), starts from SimpleTuner's defaults, and takes optimizer_config through."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtrain.config import ResolvedConfig
from vtrain.errors import ConfigError
from vtrain.optim import build_optimizer, check_optimizer_name
from vtrain.runner import load_plugins
from vtrain.services.optimizers import UNAVAILABLE

# Every optimizer name SimpleTuner's optimizer table offers (its optimizer_param.py), as published.
SIMPLETUNER_NAMES = [
    "torch-adam", "torch-adamw", "torch-sgd", "torch-radam", "torch-nadam", "torch-rmsprop", "torch-adagrad",
    "torch-adadelta", "torch-adafactor", "torch-adamax", "torch-asgd", "torch-sparseadam", "adamw_bf16",
    "ao-adamw8bit", "ao-adamw4bit", "ao-adamfp8", "ao-adamwfp8", "adamw_schedulefree",
    "adamw_schedulefree+aggressive", "adamw_schedulefree+no_kahan", "optimi-stableadamw", "optimi-adamw",
    "optimi-lion", "optimi-radam", "optimi-ranger", "optimi-adan", "optimi-adam", "optimi-sgd", "soap", "muon",
    "bnb-adagrad", "bnb-adagrad8bit", "bnb-adam", "bnb-adam8bit", "bnb-adamw", "bnb-adamw8bit", "bnb-adamw-paged",
    "bnb-adamw8bit-paged", "bnb-lion", "bnb-lion8bit", "bnb-lion-paged", "bnb-lion8bit-paged", "bnb-ademamix",
    "bnb-ademamix8bit", "bnb-ademamix-paged", "bnb-ademamix8bit-paged", "prodigy", "sdnq-adamw",
    "sdnq-adamw+no_quant", "sdnq-adafactor", "sdnq-came", "sdnq-lion", "sdnq-muon", "sdnq-muon+quantized_matmul",
]
NEEDS_CUDA = {"ao-adamfp8", "ao-adamwfp8"}  # fp8 optimizer state needs fp8-capable GPUs
SPARSE_ONLY = {"torch-sparseadam"}


@pytest.fixture(scope="module")
def registry():
    _host, options, _families, optimizers = load_plugins(blocked=["example"])
    return options, optimizers


def _config(options, **values):
    resolved = {o.name: o.default for o in options}
    resolved.update(values)
    return ResolvedConfig(resolved, {k: "test" for k in values})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_every_simpletuner_name_is_served_or_refused_with_the_nearest(registry):
    _options, optimizers = registry
    for name in SIMPLETUNER_NAMES:
        if name in optimizers:
            continue
        assert name in UNAVAILABLE, f"{name}: neither registered nor explained"
        problem = check_optimizer_name(name, optimizers)
        nearest = UNAVAILABLE[name][1]
        assert problem is not None and nearest in problem.fix and nearest in optimizers


@pytest.mark.parametrize("name", [n for n in SIMPLETUNER_NAMES if n not in UNAVAILABLE])
def test_each_served_name_builds_and_steps(registry, name):
    import torch

    options, optimizers = registry
    if name in NEEDS_CUDA and not _cuda():
        pytest.skip("fp8 optimizer state needs a CUDA GPU")
    weight = torch.nn.Parameter(torch.randn(64, 64))
    lr = 1.0 if name == "prodigy" else 1e-2
    optimizer = build_optimizer([weight], _config(options, optimizer=name, learning_rate=lr), optimizers)
    if name in SPARSE_ONLY:
        return  # SparseAdam only steps on sparse gradients
    if hasattr(optimizer, "train"):
        optimizer.train()
    before = weight.detach().clone()
    for _ in range(2):
        loss = (weight ** 2).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(before, weight.detach()), f"{name} did not move the weights"


def test_simpletuner_defaults_apply_and_explicit_adam_keys_win(registry):
    import torch

    options, optimizers = registry
    param = torch.nn.Parameter(torch.zeros(4))
    opt = build_optimizer([param], _config(options, optimizer="torch-adam"), optimizers)
    assert opt.defaults["weight_decay"] == 0.0 and opt.defaults["eps"] == 1e-8  # SimpleTuner's torch-adam
    opt = build_optimizer([param], _config(options, optimizer="torch-adam", adam_weight_decay=0.3,
                                           adam_beta1=0.8), optimizers)
    assert opt.defaults["weight_decay"] == 0.3 and opt.defaults["betas"] == (0.8, 0.999)


def test_optimizer_config_passes_through(registry):
    import torch

    options, optimizers = registry
    param = torch.nn.Parameter(torch.zeros(4))
    opt = build_optimizer([param], _config(options, optimizer="torch-adamw", optimizer_config='{"amsgrad": true}'),
                          optimizers)
    assert opt.defaults["amsgrad"] is True
    with pytest.raises(ConfigError, match="rejected its arguments"):
        build_optimizer([param], _config(options, optimizer="torch-adamw", optimizer_config="no_such_arg=1"),
                        optimizers)


def test_missing_package_names_it(registry, monkeypatch):
    import importlib

    import torch

    from vtrain.services import optimizer_kwargs

    options, optimizers = registry
    real = importlib.import_module

    def refuse(name, *args, **kwargs):
        if name.startswith("schedulefree"):
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(optimizer_kwargs.importlib, "import_module", refuse)
    with pytest.raises(ConfigError, match="pip install schedulefree"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], _config(options, optimizer="adamw_schedulefree"),
                        optimizers)


def test_unknown_name_suggests_the_nearest(registry):
    _options, optimizers = registry
    problem = check_optimizer_name("torch-adamww", optimizers)
    assert problem is not None and "torch-adamw" in problem.fix


def test_schedule_free_needs_a_constant_schedule(tmp_path: Path):
    from vtrain.runner import Runner

    with pytest.raises(ConfigError, match="schedule-free"):
        Runner.from_config({"model_family": "tinyflow", "optimizer": "adamw_schedulefree", "lr_scheduler": "cosine",
                            "max_train_steps": 2, "output_dir": str(tmp_path)})


def test_docs_table_lists_every_name(registry):
    _options, optimizers = registry
    page = (Path(__file__).parents[2] / "docs" / "optimizers.md").read_text()
    for name in [*optimizers, *UNAVAILABLE]:
        assert f"`{name}`" in page, f"docs/optimizers.md does not list {name}"
