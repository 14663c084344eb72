# Two commands do everything on a fresh machine:
#   make study   -> create .venv, install, run the whole study (dvc repro, profile from params.yaml)
#   make test    -> create .venv, install, run the test suite
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The study's environment is the lock, not pyproject.toml's ranges (those are for library users).
LOCK   ?= requirements/cpu.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
# Where `make lock` finds the CPU build of torch that the lock pins (torch==2.13.0+cpu).
TORCH_CPU_SOURCE ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
LOCK_TARGET := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header

.PHONY: install sysdeps test study lint bench lock clean-venv

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys, platform; ok = sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64"; \
	  ok or sys.exit(f"$(LOCK) is for CPython 3.11 on Linux x86_64, this is {platform.python_version()} on {platform.machine()}: \
	  use PYTHON=python3.11, or install the ranges with `pip install -e .[study,dev]` (not byte-reproducible, see README)")'
	@$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK) 2>&1 | grep -v "^WARNING: Location" ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "error: pip could not install the locked environment $(LOCK). It pins \
	torch==2.13.0+cpu (PyTorch's CPU wheel): where pip does not find it, run \
	PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make install; a hash mismatch means a package \
	changed upstream: regenerate the lock with make lock (README: Environment)." >&2; exit 1; }
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m ipykernel install --sys-prefix --name rho --display-name "rho (Python 3.11)" >/dev/null
	$(BIN)/python -m pip check
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

# The stages run through a fork server (rho.study.server): torch and transformers are imported once,
# not once per stage; the outputs are the same bytes (tests/test_study_smoke.py checks it). A stage
# that finds no server runs in its own process, as `dvc repro` alone does.
study: $(STAMP)
	@PATH="$(abspath $(BIN)):$$PATH"; export PATH; \
	python -m rho.study serve --idle-timeout 1800 & srv=$$!; \
	trap 'kill $$srv 2>/dev/null' EXIT INT TERM; \
	RHO_STUDY_SERVER=default dvc repro

lint: $(STAMP)
	$(BIN)/ruff check rho tests benchmarks
	$(BIN)/ruff format --check rho tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --device cpu --out benchmarks/results/cpu.md

# Re-resolve both locks from pyproject.toml (latest releases within its ranges); commit the result.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra study --extra dev $(LOCK_TARGET) \
	  --override requirements/torch-cpu.txt $(TORCH_CPU_SOURCE) -o requirements/cpu.lock
	$(BIN)/uv pip compile pyproject.toml --extra study --extra dev --extra gpu $(LOCK_TARGET) -o requirements/gpu.lock

clean-venv:
	rm -rf $(VENV)
