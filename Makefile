# `make demo` runs the main job, `make test` runs the tests; both install into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench docs clean

install: $(STAMP)

$(STAMP): requirements-dev.txt core/pyproject.toml plugins/*/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e core -e plugins/ltxvideo -e plugins/ltx2 -e plugins/crepa -e plugins/rollout -e plugins/offload -e plugins/quant -e plugins/serve -e plugins/tread
	@# test-only plugins are never installed (tests load them through fixtures); drop one an older install left
	-$(PIP) uninstall -q -y vtrain-example-plugin 2>/dev/null
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(PY) examples/demo.py

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/bench_core_loop.py
	$(PY) benchmarks/bench_cli_startup.py

docs: install
	$(VENV)/bin/vtrain options --markdown -p no:example > docs/options.md
	$(PY) -m vtrain.docgen hooks > docs/hooks.md
	$(PY) -m vtrain.docgen run-objects > docs/run-objects.md

clean:
	rm -rf $(VENV) output demo
