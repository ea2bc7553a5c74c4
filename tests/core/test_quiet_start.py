"""A normal run's output carries no other library's import-time chatter; quantisation libraries are
imported only when a quantised precision or an 8-bit optimizer is configured."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

QUANT_LIBRARIES = ("torchao", "bitsandbytes", "optimum")


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "VTRAIN_VERBOSE"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=cwd, env={**base, **env}, timeout=300)


def test_import_quietly_keeps_prints_logging_and_raw_writes_out(tmp_path: Path) -> None:
    (tmp_path / "noisy_lib.py").write_text(textwrap.dedent("""
        import logging, os, sys
        print("noisy: stdout")
        logging.getLogger("noisy").warning("noisy: a logging warning")
        os.write(2, b"noisy: raw fd 2 from C code\\n")
    """))
    code = """
        import sys
        sys.path.insert(0, ".")
        from vtrain.quiet import import_quietly
        captured = import_quietly(["noisy_lib"])
        print("after", "noisy_lib" in sys.modules, captured.count("noisy:"))
    """
    quiet = _python(code, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "after True 3\n" and quiet.stderr == ""
    loud = _python(code, tmp_path, VTRAIN_VERBOSE="1")
    assert loud.stderr.count("noisy:") == 3  # shown under the verbose flag


def test_the_ml_stack_imports_print_nothing(tmp_path: Path) -> None:
    proc = _python("""
        from vtrain.quiet import import_quietly
        import_quietly()
        import diffusers, peft, transformers  # already imported: silent
        from diffusers import LTXPipeline
        print("ready")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ready\n"
    assert proc.stderr == "", proc.stderr


def test_plugins_do_not_import_quantisation_libraries_unless_configured(tmp_path: Path) -> None:
    proc = _python("""
        import sys
        from vtrain.runner import load_plugins
        load_plugins()
        print(sorted(m for m in ("torchao", "bitsandbytes", "optimum") if m in sys.modules))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
