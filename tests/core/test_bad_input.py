"""Bad input is refused at validation, with the key, the limit and the fix: never later, never a traceback.

Everything here goes through the real readers (config files on disk, the command line, the dataset
list) and, for the disk, through real read-only and full file systems.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vtrain.config import ConfigLayer, resolve_config
from vtrain.data.spec import parse_backends
from vtrain.errors import ConfigError
from vtrain.runner import Runner, load_plugins


def _problems(config: dict, **kwargs: Any) -> list[str]:
    try:
        Runner.from_config(config, blocked=["example"], **kwargs)
    except ConfigError as error:
        return [f"{p.where}: {p.message} | {p.fix}" for p in error.problems]
    return []


def _cli(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    from vtrain.cli import main

    code = main([*args, "-p", "no:example"])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


# -- numbers -------------------------------------------------------------------------------------

def test_every_numeric_key_refuses_non_finite_values() -> None:
    _host, registry, families, _o = load_plugins(blocked=["example"])
    numeric = [o for o in registry if o.kind in ("int", "float")]
    assert len(numeric) > 30
    for option in numeric:
        for bad in ("nan", "inf", "-inf", float("nan"), float("inf")):
            with pytest.raises(ConfigError) as caught:
                resolve_config(registry, [ConfigLayer("config.json", {"model_family": "tinyflow", option.name: bad})],
                               families)
            (problem,) = caught.value.problems
            assert problem.where == f"config.json: {option.name}", problem
            assert "finite" in problem.message, (option.name, bad, problem.message)


def _dataset(tmp_path: Path, **extra: Any) -> list[dict[str, Any]]:
    (tmp_path / "videos").mkdir(exist_ok=True)
    video = {"num_frames": 17, "min_frames": 17}
    video.update(extra.pop("video", {}))
    entry = {"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(tmp_path / "videos"),
             "cache_dir_vae": str(tmp_path / "cache"), "resolution": 64, "caption_strategy": "textfile",
             "video": video, **extra}
    return [entry, {"id": "text", "type": "local", "dataset_type": "text_embeds", "cache_dir": str(tmp_path / "t")}]


def _dataset_problems(backends: list[dict[str, Any]]) -> list[str]:
    from vtrain.config import ResolvedConfig

    try:
        parse_backends(backends, ResolvedConfig({"resolution": None}))
    except ConfigError as error:
        return [f"{p.where}: {p.message}" for p in error.problems]
    return []


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("repeats", "inf", "repeats: expected a finite whole number"),
    ("repeats", 1e12, "repeats: must be at most 100000"),
    ("probability", "nan", "probability: expected a finite number"),
    ("resolution", 1e6, "resolution: 1e+06 pixels is beyond any machine's memory; the limit for resolution_type "
                        "pixel_area is 16384"),
    ("instance_prompt", "a" * 1_000_000, "instance_prompt: is 1000000 characters long; the limit is 20000"),
    ("vae_batch_size", 10**9, "vae_batch_size: must be at most 1024"),
])
def test_dataset_numbers_and_sizes_are_bounded_by_key(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    problems = _dataset_problems(_dataset(tmp_path, **{key: value}))
    assert len(problems) == 1 and expected in problems[0], problems


def test_absurd_top_level_sizes_are_refused_with_the_limit(tinyflow_config: dict) -> None:
    tinyflow_config.update(lora_rank=10**9, train_batch_size=10**7, validation_resolution="100000x100000",
                           validation_prompt="x" * 10_000_000, gradient_accumulation_steps=10**12)
    text = "\n".join(_problems(tinyflow_config))
    assert "lora_rank: must be at most 4096" in text and "at most 4096 (default 16)" in text
    assert "train_batch_size: must be at most 1024" in text
    assert "gradient_accumulation_steps: must be at most 100000" in text
    assert "validation_prompt: is 10000000 characters long; the limit is 20000" in text
    # each value is refused alone; the resolution check comes with the second pass
    tinyflow_config.update(lora_rank=4, train_batch_size=2, validation_prompt="a cube", gradient_accumulation_steps=1)
    text = "\n".join(_problems(tinyflow_config))
    assert "validation_resolution: '100000x100000': each side must be between 1 and 16384 pixels" in text


def test_long_prompt_in_the_prompt_library_is_refused(tinyflow_config: dict, tmp_path: Path) -> None:
    library = tmp_path / "prompts.json"
    library.write_text(json.dumps({"ok": "a cube", "huge": "y" * 50_000}))
    text = "\n".join(_problems({**tinyflow_config, "user_prompt_library": str(library)}))
    assert "huge: the prompt is 50000 characters long; the limit is 20000" in text


# -- the command line ----------------------------------------------------------------------------

def test_flag_without_value_is_an_error_unless_boolean(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_family": "tinyflow", "max_train_steps": 2, "output_dir": str(tmp_path / "o")}))
    for argv in (["--output_dir"], ["--output_dir", "--seed", "5"]):
        proc = _cli(capsys, "config", "show", "--config", str(path), *argv)
        assert proc.returncode == 2, proc.stdout
        assert "command line: output_dir: given without a value" in proc.stderr
        assert "only true/false keys may be given as a bare flag" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (Path.cwd() / "true").exists()
    proc = _cli(capsys, "config", "show", "--config", str(path), "--gradient_checkpointing", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gradient_checkpointing"] == {"value": True, "source": "command line"}


def test_same_key_twice_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_family": "tinyflow", "learning_rate": 1e-4, "--learning_rate": 5e-4}')
    proc = _cli(capsys, "config", "validate", str(path))
    assert proc.returncode == 2
    assert f"{path}: learning_rate: set twice in one place, as 'learning_rate' and as '--learning_rate'" in proc.stderr
    path.write_text('{"model_family": "tinyflow", "seed": 1, "seed": 2}')
    proc = _cli(capsys, "config", "validate", str(path))
    assert proc.returncode == 2 and f"{path}: seed: the key is written twice in one object" in proc.stderr
    path.write_text('{"model_family": "tinyflow", "max_train_steps": 2}')
    proc = _cli(capsys, "config", "validate", str(path), "--seed", "1", "--seed=2")
    assert proc.returncode == 2 and "command line: seed: given twice (as --seed and as --seed)" in proc.stderr
    proc = _cli(capsys, "config", "validate", str(path), "--learning-rate", "1", "--learning_rate", "2")
    assert proc.returncode == 2 and "given twice (as --learning-rate and as --learning_rate)" in proc.stderr


# -- datasets ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "key"), [
    ({"video": {"num_frames": "many", "min_frames": 9}}, "video.num_frames"),
    ({"crop": True, "crop_aspect": "random", "crop_aspect_buckets": "wide"}, "crop_aspect_buckets"),
    ({"caption_strategy": "instanceprompt", "instance_prompt": {"a": 1}}, "instance_prompt"),
    ({"video": {"min_frames": 17, "max_frames": "lots"}}, "video.max_frames"),
])
def test_an_invalid_dataset_value_gives_exactly_one_error(tmp_path: Path, extra: dict, key: str) -> None:
    problems = _dataset_problems(_dataset(tmp_path, **extra))
    assert len(problems) == 1 and f".{key}: expected" in problems[0], problems


def test_dataset_and_top_level_values_share_one_coercion(tmp_path: Path, tinyflow_config: dict) -> None:
    from vtrain.config import ResolvedConfig

    plan = parse_backends(_dataset(tmp_path, crop=1, disable_bucket_pruning="on", repeats="3",
                                   probability="0.5"), ResolvedConfig({"resolution": None}))
    (media,) = plan.media
    assert media.crop is True and media.disable_bucket_pruning is True and media.repeats == 3
    assert media.probability == 0.5
    config = Runner.from_config({**tinyflow_config, "disable_bucket_pruning": 1, "seed": "3"},
                                blocked=["example"]).config
    assert config.disable_bucket_pruning is True and config.seed == 3
    assert _dataset_problems(_dataset(tmp_path, crop=2)) == _dataset_problems(_dataset(tmp_path, crop=2))
    assert "crop: expected true or false, got 2" in _dataset_problems(_dataset(tmp_path, crop=2))[0]


# -- JSON files ----------------------------------------------------------------------------------

def test_byte_order_mark_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"model_family": "tinyflow", "max_train_steps": 2,
                                                    "output_dir": str(tmp_path / "o")}).encode())
    proc = _cli(capsys, "config", "validate", str(path))
    assert proc.returncode == 0, proc.stderr
    backends = tmp_path / "backends.json"
    backends.write_bytes(b"\xef\xbb\xbf" + json.dumps(_dataset(tmp_path)).encode())
    from vtrain.config import ResolvedConfig

    assert parse_backends(str(backends), ResolvedConfig({"resolution": None})).media[0].id == "clips"
    library = tmp_path / "prompts.json"
    library.write_bytes(b"\xef\xbb\xbf" + json.dumps({"cube": "a red cube"}).encode())
    from vtrain.training.prompts import collect_prompts

    config = Runner.from_config({"model_family": "tinyflow", "max_train_steps": 1, "output_dir": str(tmp_path / "o"),
                                 "user_prompt_library": str(library)}, blocked=["example"]).config
    assert collect_prompts(config) == {"cube": "a red cube"}


@pytest.mark.parametrize(("content", "hint"), [
    ('{\n  // the family\n  "model_family": "tinyflow"\n}', "JSON has no comments"),
    ('{"model_family": "tinyflow", /* lr */ "seed": 1}', "JSON has no comments"),
    ('{"model_family": "tinyflow", "seed": 1,}', "the trailing comma after the last item"),
    ('[1, 2,]', "the trailing comma after the last item"),
    ("{'model_family': 'tinyflow'}", "double quotes"),
    ('{"model_family": "tinyflow"}\n{"seed": 1}', "more than one JSON value"),
    ('{"model_family": "tinyflow" "seed": 1}', "a comma is missing"),
    ("", "the file is empty"),
])
def test_json_errors_get_the_hint_that_matches(tmp_path: Path, capsys: pytest.CaptureFixture, content: str,
                                               hint: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    proc = _cli(capsys, "config", "validate", str(path))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    fix = next(line for line in proc.stderr.splitlines() if line.strip().startswith("fix:"))
    assert hint in fix, proc.stderr
    assert ("trailing comma" in proc.stderr) == ("trailing comma" in hint)


# -- the output folder ---------------------------------------------------------------------------

def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def test_read_only_output_folder_is_refused_at_validation(tinyflow_config: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    text = "\n".join(_problems({**tinyflow_config, "output_dir": str(blocker / "run")}))
    assert "output_dir: the run cannot write its output" in text and "is a file, not a folder" in text
    mount = tmp_path / "ro"
    if not _mount_tmpfs(mount, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**tinyflow_config, "output_dir": str(mount / "run")}))
        proc = _cli(capsys, "config", "validate", str(path))
        assert proc.returncode == 2, proc.stdout
        assert f"{path}: output_dir: the run cannot write its output: cannot create files in {mount}" in proc.stderr
        assert "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        _unmount(mount)


class FillDiskAfterFirstCheckpoint:
    """Fills the output folder's file system once the first checkpoint is written (a real ENOSPC)."""

    name = "fill-disk"

    def __init__(self) -> None:
        self.filled = False

    from vtrain.hookspecs import hookimpl

    @hookimpl
    def on_checkpoint(self, run: Any, step: int, path: Path) -> None:
        if self.filled:
            return
        self.filled = True
        chunk = b"\0" * 4096
        try:
            with open(Path(path).parent / "filler.bin", "wb") as filler:
                while True:
                    filler.write(chunk)
                    filler.flush()
        except OSError:
            pass  # the file system is full


def test_out_of_space_during_a_checkpoint_is_one_message(tinyflow_config: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    mount = tmp_path / "small"
    if not _mount_tmpfs(mount, "size=4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        output = mount / "run"
        filler = FillDiskAfterFirstCheckpoint()
        runner = Runner.from_config({**tinyflow_config, "output_dir": str(output), "max_train_steps": 6,
                                     "checkpoint_step_interval": 2}, plugins=[filler], blocked=["example"])
        from vtrain.errors import TrainingError

        with pytest.raises(TrainingError) as caught:
            runner.run()
        message = str(caught.value)
        assert f"no space left on the device of {output} while writing checkpoint-4" in message
        assert "it needs about" in message and "is free" in message
        assert f"Last good checkpoint: {output / 'checkpoint-2'} (update 2), intact" in message
        assert caught.value.exit_code == 3
        assert not list(output.glob(".checkpoint-*"))  # the half-written one is removed at once
        assert (output / "checkpoint-2" / "state.json").is_file()
    finally:
        _unmount(mount)


def test_non_finite_numbers_in_cli_overrides_never_reach_torch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_family": "tinyflow", "max_train_steps": 2, "output_dir": str(tmp_path / "o")}))
    proc = _cli(capsys, "config", "validate", str(path), "--learning_rate", "nan", "--max_grad_norm", "inf")
    assert proc.returncode == 2 and "learning_rate: expected a finite number, got 'nan'" in proc.stderr
    assert "max_grad_norm: expected a finite number, got 'inf'" in proc.stderr
    assert math.isnan(float("nan"))  # the strings above are what float() would have accepted


def test_non_finite_numbers_inside_optimizer_config_are_refused(tinyflow_config: dict) -> None:
    for value in ('{"eps": NaN}', '{"betas": [0.9, Infinity]}'):
        text = "\n".join(_problems({**tinyflow_config, "optimizer_config": value}))
        assert "optimizer_config: " in text and "numbers must be finite" in text, (value, text)


def test_caption_files_beyond_the_prompt_limit_are_skipped_with_the_reason(tmp_path: Path) -> None:
    from vtrain.config import ResolvedConfig
    from vtrain.data.scan import read_caption

    (backend,) = parse_backends(_dataset(tmp_path), ResolvedConfig({"resolution": None})).media
    clip = tmp_path / "videos" / "a.mp4"
    clip.with_suffix(".txt").write_text("a cat " * 10_000)
    caption, reason = read_caption(clip, backend)
    assert caption is None and reason == "caption file a.txt has 59999 characters; the limit is 20000"
    clip.with_suffix(".txt").write_bytes(b"\xef\xbb\xbfa red cube")
    assert read_caption(clip, backend) == ("a red cube", None)
