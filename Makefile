# Two commands do everything on a fresh machine:
#   make study   -> create .venv, install, run the whole study (dvc repro, profile from params.yaml)
#   make test    -> create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install sysdeps test study lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch first (on these machines it lies on disk); a later range that it
	# satisfies then installs nothing more, so no CUDA build is pulled.
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[study,dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium renders the token-selection page in one test (Debian package, root only).
sysdeps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the HTML rendering test"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and cannot install it: the HTML rendering test will be skipped"; fi; }

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q -ra

study: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

lint: $(STAMP)
	$(BIN)/ruff check rho tests benchmarks
	$(BIN)/ruff format --check rho tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --device cpu --out benchmarks/results/cpu.md

clean-venv:
	rm -rf $(VENV)
