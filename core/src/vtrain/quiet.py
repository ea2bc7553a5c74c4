"""Keep other libraries' import-time chatter out of a normal run's output.

Importing diffusers, transformers or peft imports torchao and bitsandbytes whenever they are
installed (their quantisation back-ends), and those print warnings about optional kernels
(``Failed to load ..._C_mxfp8...so``, ``Failed to load CPU gemm_4bit_forward``, torch ``_pytree``
deprecations) that have nothing to do with a run that quantises nothing. :func:`import_quietly`
imports the heavy stack once with file descriptors 1 and 2 pointed at a temporary file, so
nothing of it reaches the terminal; with ``VTRAIN_VERBOSE=1`` (``vtrain run --verbose``) the
captured text is written out as it was. Later imports of the same modules are cached by Python
and print nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

VERBOSE_ENV = "VTRAIN_VERBOSE"
# The top-level packages import lazily: their model-loading modules are what pull in torchao and
# bitsandbytes (the quantiser back-ends), so those are imported here too.
HEAVY_MODULES = ("torch", "accelerate", "transformers", "transformers.modeling_utils", "diffusers",
                 "diffusers.models.modeling_utils", "peft")
_captured: list[str] = []


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


@contextmanager
def captured_output() -> Iterator[list[str]]:
    """Redirect the process's stdout and stderr (the file descriptors, so C code and logging handlers
    bound to ``sys.stderr`` are caught too) into a temporary file; the yielded list receives the text."""
    text: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text.append(sink.read().decode("utf-8", "replace"))


def import_quietly(modules: Sequence[str] = HEAVY_MODULES) -> str:
    """Import the installed ``modules`` (the first time only) without their output reaching the terminal.

    Returns what they printed; under ``VTRAIN_VERBOSE=1`` it is also written to stderr. An import
    that fails is left alone here: the code that needs the module reports it when it imports it.
    """
    pending = [m for m in modules if m not in sys.modules and _installed(m)]
    if not pending:
        return ""
    with captured_output() as text:
        for name in pending:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - reported where the module is really needed
                pass
    output = "".join(text)
    _captured.append(output)
    if output and verbose():
        sys.stderr.write(output)
        sys.stderr.flush()
    return output


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def captured_so_far() -> str:
    """Everything :func:`import_quietly` kept out of the output in this process."""
    return "".join(_captured)
