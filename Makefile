# Two commands do all set-up (see README): `make demo` and `make test`. Both (re)build .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of PyTorch; on this project's machines pip takes it from local disk (README: torch choice).
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= out/demo

.PHONY: demo test venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/ferlab predict --demo --out $(DEMO_OUT) --json $(DEMO_OUT)/predictions.json

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
