"""``vtrain configure``: piped and scripted sessions, guard rails, non-interactive mode, overwrite and EOF."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vtrain.cli import HELP, main
from vtrain.configure import configure
from vtrain.configure_steps import ASKED_KEYS, question_keys
from vtrain.options import OptionsRegistry


def scripted(answers: dict[str, list[str]], prompts: list[str]) -> Callable[[str], str]:
    """A reader answering by the key a prompt asks for ("keep" for guard rails, "overwrite");
    a key with no answers left gets Enter (its default)."""

    def reader(prompt: str) -> str:
        prompts.append(prompt)
        key = "overwrite" if "Overwrite" in prompt else prompt.split()[0]
        queue = answers.get(key, [])
        return queue.pop(0) if queue else ""

    return reader


def run_scripted(argv: list[str], answers: dict[str, list[str]], cuda: bool = False) -> tuple[int, str, list[str]]:
    out, prompts = io.StringIO(), []
    code = configure(argv, reader=scripted(answers, prompts), out=out, cuda=lambda: cuda)
    return code, out.getvalue(), prompts


def test_piped_session_writes_expected_json_that_trains(tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "config.json"
    lines = ["tinyflow", "", "", "abc", "4", str(tmp_path / "out"), "", "2", "", "12", "", "", "", "",
             "no", "true"]
    stdin = "\n".join(lines) + "\n" * 40  # the rest of the questions keep their defaults
    proc = subprocess.run([sys.executable, "-m", "vtrain", "configure", "--output", str(target)], input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "invalid: expected a whole number, got 'abc'" in proc.stdout  # the bad lora_rank was asked again
    assert "  lora_rank [16]: abc\n" in proc.stdout  # piped answers are echoed, so the transcript reads well
    assert f"train with:  vtrain run --config {target}" in proc.stdout
    data = json.loads(target.read_text())
    assert data == {"model_family": "tinyflow", "lora_rank": 4, "output_dir": str(tmp_path / "out"),
                    "train_batch_size": 2, "max_train_steps": 12, "mixed_precision": "no",
                    "gradient_checkpointing": True}
    from vtrain.runner import Runner

    runner = Runner.from_config(str(target), overrides={"base_model_default_dtype": "fp32", "tinyflow_num_samples": 8})
    assert runner.config.lora_rank == 4 and runner.config.gradient_checkpointing is True
    result = runner.run()
    assert result.steps == 12


def test_piped_eof_aborts_without_a_file(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    proc = subprocess.run([sys.executable, "-m", "vtrain", "configure", "--output", str(target)],
                          input="tinyflow\n\n\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "aborted (end of input); nothing written" in proc.stderr
    assert not target.exists()


def test_guard_rails_warn_refuse_and_reask(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    code, text, prompts = run_scripted(
        ["--family", "tinyflow", "--output", str(target)],
        {"max_train_steps": ["10"], "learning_rate": ["0.01"], "lr_warmup_steps": ["50", "60"],
         "mixed_precision": ["fp16", "no"], "gradient_checkpointing": [""],
         # learning rate 0.01: declined, so the recommended 1e-4 is used; warm-up 50 > 10: "n" asks again,
         # 60 > 10: Enter keeps it; checkpointing off: kept with "y"
         "keep": ["n", "n", "", "y"]})
    assert code == 0, text
    assert "warning: learning_rate 0.01 is above 0.001" in text
    assert "  learning_rate = 0.0001" in text
    assert "warning: lr_warmup_steps (50) is larger than max_train_steps (10)" in text
    assert "refused: fp16 mixed precision needs a CUDA device" in text
    assert "warning: gradient checkpointing is off" in text
    assert sum(p.strip().startswith("learning_rate") for p in prompts) == 1
    assert sum(p.strip().startswith("lr_warmup_steps") for p in prompts) == 2
    assert sum(p.strip().startswith("mixed_precision") for p in prompts) == 2
    assert "  keep this value? (no: use the recommended 0.0001) [y/N]: " in prompts
    assert "  keep this value? (no: answer again) [Y/n]: " in prompts
    data = json.loads(target.read_text())
    assert data == {"model_family": "tinyflow", "max_train_steps": 10, "lr_warmup_steps": 60, "mixed_precision": "no"}


def test_fp16_accepted_where_cuda_exists_and_full_skips_lora_rank(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    code, text, prompts = run_scripted(["--family", "tinyflow", "--output", str(target)],
                                       {"model_type": ["full"], "max_train_steps": ["5"], "mixed_precision": ["fp16"],
                                        "gradient_checkpointing": ["true"]}, cuda=True)
    assert "refused" not in text
    assert not any(p.strip().startswith("lora_rank") for p in prompts)
    assert json.loads(target.read_text())["mixed_precision"] == "fp16"
    assert code in (0, 2)  # on a machine without CUDA the written file fails run-time validation
    if code == 2:
        assert "fp16 mixed precision needs a CUDA device" in text


def test_questions_come_from_the_registry() -> None:
    from vtrain.runner import load_plugins

    _host, registry, _families, _optimizers = load_plugins()
    keys = question_keys(registry, "tinyflow")
    assert keys[: len(ASKED_KEYS) - 1] == [k for k in ASKED_KEYS[1:] if k in registry]
    assert {"tinyflow_width", "tinyflow_num_samples"} <= set(keys)
    assert not any(registry[k].families and "tinyflow" not in registry[k].families for k in keys)
    assert all(registry[k].status != "planned" for k in keys)
    small = OptionsRegistry()
    small.add("model_family", "str", None, "family")
    small.add("learning_rate", "float", 1e-4, "lr")
    small.add("gradient_checkpointing_interval", "int", None, "planned", families=("x",), status="planned")
    small.add("x_width", "int", 3, "x only", families=("x",))
    assert question_keys(small, "x") == ["learning_rate", "x_width"]  # missing keys skipped, planned ones too


def test_non_interactive_writes_short_config_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    target = tmp_path / "x.json"
    code = main(["configure", "--family", "tinyflow", "--output", str(target), "--non-interactive",
                 "--set", "max_train_steps=7", "--set", "mixed_precision=no", "--set", "learning_rate=1e-4",
                 "--set", "optimizer=sgd"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(target.read_text()) == {"model_family": "tinyflow", "max_train_steps": 7,
                                              "mixed_precision": "no", "optimizer": "sgd"}  # 1e-4 is the default
    assert "vtrain configure" in HELP
    code = main(["configure", "--family", "tinyflow", "--output", str(tmp_path / "y.json"), "--defaults",
                 "--set", "learnig_rate=1", "--set", "optimizer=nadam", "--set", "train_batch_size=0"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "y.json").exists()
    assert "did you mean learning_rate" in err and "expected one of adamw" in err and "must be at least 1" in err


def test_non_interactive_refuses_fp16_without_cuda(tmp_path: Path) -> None:
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA device"):
        run_scripted(["--family", "tinyflow", "-o", str(tmp_path / "x.json"), "--non-interactive",
                      "--set", "mixed_precision=fp16", "--set", "max_train_steps=3"], {})
    assert not (tmp_path / "x.json").exists()


def test_missing_dataloader_file_is_only_a_warning(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    missing = str(tmp_path / "multidatabackend.json")
    code, text, _ = run_scripted(["--family", "tinyflow", "-o", str(target), "--non-interactive", "--set",
                                  f"data_backend_config={missing}", "--set", "max_train_steps=3"], {})
    assert code == 0, text
    assert "does not exist yet. vtrain configure does not write the dataloader config" in text
    assert "warning: gradient checkpointing is off" in text  # unset keys are checked at their defaults
    assert "warning: " + missing in text and "apart from the warnings above" in text
    assert json.loads(target.read_text())["data_backend_config"] == missing


def test_other_problems_of_the_written_file_are_reported(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    code, text, _ = run_scripted(["--family", "tinyflow", "-o", str(target), "--non-interactive",
                                  "--set", "lora_type=lycoris", "--set", "max_train_steps=3"], {})
    assert code == 2
    assert "lora_type=lycoris needs lycoris_config" in text and "fix these problems in it" in text


def test_existing_file_is_never_silently_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text('{"keep": true}\n')
    code, text, _ = run_scripted(["--family", "tinyflow", "-o", str(target)],
                                 {"max_train_steps": ["3"], "gradient_checkpointing": ["true"], "overwrite": ["n"]})
    assert code == 1 and target.read_text() == '{"keep": true}\n'
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="does not overwrite"):
        run_scripted(["--family", "tinyflow", "-o", str(target), "--non-interactive", "--set", "max_train_steps=3"], {})
    assert target.read_text() == '{"keep": true}\n'
    code, text, _ = run_scripted(["--family", "tinyflow", "-o", str(target)],
                                 {"max_train_steps": ["3"], "gradient_checkpointing": ["true"], "overwrite": ["y"]})
    assert code == 0 and json.loads(target.read_text())["max_train_steps"] == 3
    code, _, _ = run_scripted(["--family", "tinyflow", "-o", str(target), "--non-interactive", "--force",
                               "--set", "max_train_steps=4"], {})
    assert code == 0 and json.loads(target.read_text())["max_train_steps"] == 4


def test_eof_in_a_scripted_session_writes_nothing(tmp_path: Path) -> None:
    answers = iter(["tinyflow", "", ""])

    def reader(prompt: str) -> str:
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    code = configure(["-o", str(tmp_path / "x.json")], reader=reader, out=io.StringIO(), cuda=lambda: False)
    assert code == 1 and not (tmp_path / "x.json").exists()
