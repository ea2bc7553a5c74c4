"""LTX-Video trains the way the reference trainers do by default: a demo-data run with default settings
conditions about 10% of samples on the first frame and draws sigmas from LTX-Video-Trainer's shifted
logit-normal sampler (checked statistically); validation decoding and distilled-base guidance."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).parents[3]
DEMO_SAMPLES = 8
BATCH = 8
STEPS = 50


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _ks_distance(samples: list[float], cdf: Any) -> float:
    """The Kolmogorov-Smirnov statistic of ``samples`` against a continuous ``cdf``."""
    ordered = sorted(samples)
    n = len(ordered)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(ordered))


def _reference_shift_mean(tokens: int) -> float:
    """LTX-Video-Trainer's shifted logit-normal sampler: sigma = sigmoid(N(m, 1)), m linear in the sequence length
    through (1024 tokens, 0.95) and (4096 tokens, 2.05) (the values of LTX-Video's scheduler config)."""
    return 0.95 + (2.05 - 0.95) / (4096 - 1024) * (tokens - 1024)


def test_demo_run_with_defaults_matches_the_reference(ltx_tiny_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from vtrain.hookspecs import hookimpl
    from vtrain.runner import Runner

    sys.path.insert(0, str(ROOT / "examples" / "ltxvideo"))
    from make_demo_data import make_clips

    make_clips(tmp_path / "clips", DEMO_SAMPLES, 9, 64, 64, fps=25)
    demo = json.loads((ROOT / "examples" / "ltxvideo" / "demo_multidatabackend.json").read_text())
    demo[0].update(instance_data_dir=str(tmp_path / "clips"), cache_dir_vae=str(tmp_path / "cache" / "vae"), repeats=0)
    demo[0]["video"].pop("is_i2v")  # the family's default, as a user's dataset without the key
    demo[1]["cache_dir"] = str(tmp_path / "cache" / "text")
    sigmas: list[float] = []

    class SigmaRecorder:
        @hookimpl
        def on_run_start(self, run: Any) -> None:
            def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
                timestep = kwargs["timestep"].detach().float()
                per_sample = timestep if timestep.dim() == 1 else timestep.amax(dim=1)  # i2v: the noised tokens
                sigmas.extend((per_sample / 1000).tolist())

            run.bundle.model.register_forward_pre_hook(record, with_kwargs=True)

    # default settings, apart from what keeps the test small: the tiny model, its data, the run length,
    # and autocast off (bf16 autocast on a CPU is slow)
    config = {"model_family": "ltxvideo", "pretrained_model_name_or_path": str(ltx_tiny_dir),
              "output_dir": str(tmp_path / "out"), "data_backend_config": demo, "train_batch_size": BATCH,
              "max_train_steps": STEPS, "mixed_precision": "no", "seed": 3}
    runner = Runner.from_config(config, plugins=[SigmaRecorder()])
    runner.run()
    summary = capsys.readouterr().out
    assert "image-to-video: about 10% of samples train as i2v" in summary
    assert "base dtype    fp32 [auto (no accelerator" in summary
    assert "clipping      norm at 1 [family default (ltxvideo)]" in summary
    assert "shift resolution-dependent (auto) [family default (ltxvideo)]" in summary

    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").open()]
    fractions = [row["i2v_fraction"] for row in metrics if "i2v_fraction" in row]
    n = len(fractions) * BATCH
    realised = sum(fractions) / len(fractions)
    assert n == STEPS * BATCH
    assert abs(realised - 0.1) < 3.5 * math.sqrt(0.1 * 0.9 / n), realised  # binomial, 3.5 sigma

    assert len(sigmas) == n
    tokens = 2 * 2 * 2  # 9 frames at 64x64 -> a (2, 2, 2) latent grid, patch size 1
    mean = _reference_shift_mean(tokens)
    def reference_cdf(s: float) -> float:
        return _normal_cdf(math.log(s / (1 - s)) - mean)
    critical = 1.63 / math.sqrt(n)  # KS at the 1% level
    assert _ks_distance(sigmas, reference_cdf) < critical
    # and the previous default, logit-normal(0, 1) without a shift, is rejected by the same test
    assert _ks_distance(sigmas, lambda s: _normal_cdf(math.log(s / (1 - s)))) > critical


def test_reference_sampler_at_768x512x49_has_the_published_median() -> None:
    """The issue's numbers: LTX-Video-Trainer's sampler at 768x512x49 has median sigma 0.82 and 67% above 0.75."""
    tokens = 7 * 16 * 24
    mean = _reference_shift_mean(tokens)
    assert 1 / (1 + math.exp(-mean)) == pytest.approx(0.82, abs=0.01)
    assert 1 - _normal_cdf(math.log(0.75 / 0.25) - mean) == pytest.approx(0.67, abs=0.01)


def test_decode_arguments_follow_the_vae(prepared: Any) -> None:
    from vtrain_ltxvideo.validation import decode_arguments

    runner, bundle = prepared()
    vae = bundle.components["vae"]
    assert decode_arguments(bundle, runner.config) == {}  # the tiny VAE has no timestep conditioning (0.9.0)
    vae.register_to_config(timestep_conditioning=True)
    assert decode_arguments(bundle, runner.config) == {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
    runner, bundle = prepared({"validation_decode_timestep": 0.03})
    bundle.components["vae"].register_to_config(timestep_conditioning=True)
    assert decode_arguments(bundle, runner.config)["decode_timestep"] == 0.03


def test_distilled_bases_validate_at_guidance_one(ltx_tiny_dir: Path, ltx_config: dict[str, Any],
                                                  tmp_path: Path) -> None:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.validation import guidance_scale

    distilled = tmp_path / "LTX-Video-0.9.7-distilled"
    distilled.symlink_to(ltx_tiny_dir, target_is_directory=True)
    assert guidance_scale(Runner.from_config(ltx_config).config) == 3.0
    config = Runner.from_config({**ltx_config, "pretrained_model_name_or_path": str(distilled)}).config
    assert guidance_scale(config) == 1.0
    config = Runner.from_config({**ltx_config, "pretrained_model_name_or_path": str(distilled),
                                 "validation_guidance": 2.5}).config
    assert guidance_scale(config) == 2.5


def test_t2v_mode_and_protect_first_frame(prepared: Any) -> None:
    """ltx_train_mode=t2v makes datasets without video.is_i2v text-to-video; ltx_protect_first_frame
    conditions every i2v sample."""
    from vtrain_ltxvideo.loss import i2v_mask, i2v_probability

    runner, _bundle = prepared({"ltx_train_mode": "t2v"})
    assert runner.family.traits.i2v_default is False
    runner, _bundle = prepared({"ltx_protect_first_frame": True})
    assert runner.family.traits.i2v_default is True and i2v_probability(runner.config) == 1.0
    x0 = torch.zeros(4, 1, 3, 1, 1)
    assert bool(i2v_mask({"is_i2v": torch.ones(4, dtype=torch.bool)}, x0, i2v_probability(runner.config)).all())


def test_resume_with_latent_sampling_is_bit_exact(ltx_config: dict[str, Any], tmp_path: Path) -> None:
    """vae_latent_sampling=sample draws from the run's RNG, which checkpoints restore: 4 updates in one go equal
    2 updates, a checkpoint, and 2 more after a resume."""
    from safetensors.torch import load_file

    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    def run(output: Path, steps: int, resume: bool = False) -> None:
        config = {**ltx_config, "output_dir": str(output), "max_train_steps": steps, "checkpoint_step_interval": 2,
                  "vae_latent_sampling": "sample"}
        if resume:
            config["resume_from_checkpoint"] = "latest"
        Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9)]).run()

    run(tmp_path / "straight", 4)
    run(tmp_path / "split", 2)
    run(tmp_path / "split", 4, resume=True)

    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return load_file(str(next(folder.glob("*.safetensors"))))

    straight, split = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert straight.keys() == split.keys()
    for key in straight:
        assert torch.equal(straight[key], split[key]), key
