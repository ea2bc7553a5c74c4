"""The core's family contract suite, run against ltx2 on the tiny model, plus the catalog entry."""

from __future__ import annotations

from typing import Any

import pytest

from vtrain.testing.contract import FamilyContract
from vtrain_ltx2.synthetic import SyntheticAVPlugin


class TestLTX2Contract(FamilyContract):
    @pytest.fixture
    def family_config(self, ltx2_config: dict[str, Any]) -> dict[str, Any]:
        return {**ltx2_config, "max_train_steps": 2}

    @pytest.fixture
    def runner(self, family_config: dict[str, Any]) -> Any:
        from vtrain.runner import Runner

        return Runner.from_config(family_config, plugins=[SyntheticAVPlugin(count=2, frames=9)])


def test_traits_options_and_catalog() -> None:
    from vtrain.catalog import KNOWN_DISTRIBUTIONS, distribution_for_family, distribution_for_key
    from vtrain.options import OptionsRegistry
    from vtrain_ltx2.family import LTX2Family
    from vtrain_ltx2.options import OPTION_KEYS, declare_options

    traits = LTX2Family().traits
    assert (traits.frame_factor, traits.frame_offset, traits.spatial_alignment) == (8, 1, 32)
    assert (traits.audio_sample_rate, traits.audio_channels, traits.default_fps) == (16000, 2, 24)
    registry = OptionsRegistry()
    declare_options(registry)
    declared = {option.name for option in registry}
    assert declared == set(OPTION_KEYS) and all(name.startswith("ltx2_") for name in declared - {"model_flavour"})
    assert traits.aliases == ("ltxvideo2",) and traits.simpletuner_sections == ("ltxvideo2",)
    assert all(registry[name].families == ("ltx2",) for name in declared)
    assert distribution_for_family("ltx2") == "vtrain-ltx2" == distribution_for_key("ltx2_audio")
    assert any(d.distribution == "vtrain-ltx2" for d in KNOWN_DISTRIBUTIONS)
