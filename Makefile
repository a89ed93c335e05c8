# The commands the README gives. `make demo` and `make test` set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is the CPU wheel; a looser requirement can pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test lint golden bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/blip demo

# Two processes (pytest-xdist); the tests that start a local Ray share one of them (--dist loadgroup).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: setup
	$(PY) -m ruff check blip_core blip_torch blip_tf blip_conversion tests benchmarks scripts

bench: setup
	$(PY) benchmarks/caption_speed.py
