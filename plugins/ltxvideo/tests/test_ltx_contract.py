"""The core's family contract suite, run against ltxvideo on the tiny model."""

from __future__ import annotations

from typing import Any

import pytest

from vtrain.testing.contract import FamilyContract
from vtrain_ltxvideo.synthetic import SyntheticDataPlugin


class TestLTXVideoContract(FamilyContract):
    @pytest.fixture
    def family_config(self, ltx_config: dict[str, Any]) -> dict[str, Any]:
        return {**ltx_config, "max_train_steps": 3}

    @pytest.fixture
    def runner(self, family_config: dict[str, Any]) -> Any:
        from vtrain.runner import Runner

        return Runner.from_config(family_config, plugins=[SyntheticDataPlugin(count=4, frames=9)])


def test_traits_and_catalog() -> None:
    from vtrain.catalog import KNOWN_DISTRIBUTIONS
    from vtrain.options import OptionsRegistry
    from vtrain_ltxvideo.family import LTXVideoFamily
    from vtrain_ltxvideo.options import OPTION_KEYS, declare_options

    traits = LTXVideoFamily().traits
    assert (traits.frame_factor, traits.frame_offset, traits.spatial_alignment) == (8, 1, 32)
    assert not traits.supports_masked_loss and traits.default_fps == 25 and traits.text_max_length == 128
    registry = OptionsRegistry()
    declare_options(registry)
    declared = {option.name for option in registry}
    entry = next(d for d in KNOWN_DISTRIBUTIONS if d.distribution == "vtrain-ltxvideo")
    assert declared == set(OPTION_KEYS) == set(entry.keys)
    assert all(registry[name].families == ("ltxvideo",) for name in declared)
