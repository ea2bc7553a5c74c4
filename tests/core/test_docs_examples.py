"""Every Python example in docs/ runs as written.

- a block with ``@hookimpl`` is a plugin: it is loaded with ``--plugin-file`` semantics into a short
  ``tinyflow`` run (with the keys in ``PLUGIN_KEYS`` set, where its feature needs some);
- a block with pytest tests (``def test_`` or ``FamilyContract``) is run by pytest in a fresh folder,
  outside this repository's conftest, as a plugin author's own test suite would be;
- any other block is executed as a script in an empty folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vtrain.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = {"options.md", "hooks.md", "run-objects.md"}
# keys a plugin example needs to show its effect, by a name it declares
PLUGIN_KEYS = {"shift_floor": {"shift_floor": 3.0}, "l2_on_adapter": {"l2_on_adapter": 0.1},
               "loss_logger_every": {"loss_logger_every": 1}, "csv_tracker": {"report_to": "csv"}}


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        if page.name in GENERATED:
            continue
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)):
            blocks.append((f"{page.relative_to(DOCS)}#{index}", code))
    return blocks


BLOCKS = python_blocks()


def kind(code: str) -> str:
    if "def test_" in code or "FamilyContract" in code:
        return "pytest"
    return "plugin" if "@hookimpl" in code else "script"


def test_the_docs_have_examples_of_every_kind() -> None:
    assert {kind(code) for _, code in BLOCKS} == {"pytest", "plugin", "script"}


@pytest.mark.parametrize("where,code", [b for b in BLOCKS if kind(b[1]) == "plugin"], ids=lambda v: str(v)[:40])
def test_plugin_example_trains(where: str, code: str, tinyflow_config: dict, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "doc_plugin.py"
    plugin.write_text(code, encoding="utf-8")
    keys = {k: v for name, values in PLUGIN_KEYS.items() if name in code for k, v in values.items()}
    config = {**tinyflow_config, "max_train_steps": 2, **keys}
    result = Runner.from_config(config, plugin_files=[plugin]).run()
    assert result.steps == 2, where
    out = capsys.readouterr().out
    if "shift_floor" in code:
        assert "  shift         3 for latents" in out, out
    if "loss_logger_every" in code:
        assert "step 2: loss" in out
    if "l2_on_adapter" in code:
        assert "loss/l2" in (result.output_dir / "metrics.jsonl").read_text()
    if "csv_tracker" in code:
        assert (result.output_dir / "metrics.csv").is_file()


def demo_lora(folder: Path) -> None:
    """What ``make demo`` leaves behind, for examples that load it: the committed base (linked) and a LoRA
    on it (freshly initialised, saved exactly as the demo saves one)."""
    from diffusers import LTXPipeline, LTXVideoTransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = ROOT / "examples" / "ltxvideo" / "demo-base"
    (folder / "examples" / "ltxvideo").mkdir(parents=True)
    if (base / "model_index.json").is_file():
        (folder / "examples" / "ltxvideo" / "demo-base").symlink_to(base)
    else:  # no trained base committed yet: the random tiny model has the same layout
        from vtrain_ltxvideo.tiny import make_pipeline_folder

        base = make_pipeline_folder(folder / "examples" / "ltxvideo" / "demo-base")
    transformer = LTXVideoTransformer3DModel.from_pretrained(base / "transformer")
    transformer.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    LTXPipeline.save_lora_weights(folder / "demo" / "output" / "ltxvideo",
                                  transformer_lora_layers=get_peft_model_state_dict(transformer))


@pytest.mark.parametrize("where,code", [b for b in BLOCKS if kind(b[1]) == "script"], ids=lambda v: str(v)[:40])
def test_script_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "demo/output/ltxvideo" in code:
        demo_lora(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "doc_example"}
    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the docs' own examples
    for module in namespace.get("pytest_plugins", []):  # a conftest.py snippet: the modules it names exist
        __import__(module)


def test_pytest_examples_pass_in_a_fresh_suite(tmp_path: Path) -> None:
    tests = [(where, code) for where, code in BLOCKS if kind(code) == "pytest"]
    assert tests
    for number, (_, code) in enumerate(tests):
        (tmp_path / f"test_doc_example_{number}.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "VTRAIN_PLUGINS"}  # as in a plugin author's environment
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_run_objects_reference_is_current() -> None:
    from vtrain.docgen import run_objects_markdown

    page = (DOCS / "run-objects.md").read_text(encoding="utf-8")
    assert page == run_objects_markdown(), "docs/run-objects.md is stale: run `make docs`"
    assert "(undocumented)" not in page


def test_the_japanese_quick_start_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/ja/quickstart.md" in readme
    text = (DOCS / "ja" / "quickstart.md").read_text(encoding="utf-8")
    for topic in ("make install", "make demo", "multidatabackend.json", "vtrain run", "SimpleTuner"):
        assert topic in text, topic
