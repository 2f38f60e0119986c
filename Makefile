# Two commands do all set-up (see README): `make demo` and `make test`. Both (re)build .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch + torchvision as one pinned pair: timm (ImageNet backbones) imports torchvision, and on this
# project's machines pip takes exactly this pair from local disk (README: torch choice).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= out/demo

.PHONY: demo test venv browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/ferlab predict --demo --out $(DEMO_OUT) --json $(DEMO_OUT)/predictions.json

# The page's browser test drives Debian's chromium; as root it is installed here when missing, else
# that test is skipped and says why.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -q && apt-get install -y -q chromium) || echo "chromium could not be installed: the browser test will be skipped"; \
	fi

test: venv browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
