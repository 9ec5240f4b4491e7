# gcleaner build entry points. `make test` and `make run` do all their own setup.
SHELL := /bin/bash
.DEFAULT_GOAL := build

PYTHON ?= python3
VENV := $(CURDIR)/.venv
TORCH_VERSION := 2.13.0
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
PYG_STAMP := $(VENV)/.pyg

# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: setup build test run bench clean-venv

setup: $(TORCH_STAMP)

$(TORCH_STAMP):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	@touch $@

# Python packages used only by the interop tests and the PyG benchmark.
$(PYG_STAMP): $(TORCH_STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch_geometric safetensors numpy
	@touch $@

build: setup
	cargo build --release --locked

test: setup $(PYG_STAMP)
	cargo build --release --locked
	cargo test --release --locked --workspace

DEMO := $(CURDIR)/.run/demo

# End-to-end demo on a generated dataset: train a GIN, report its accuracy.
run: build
	target/release/gcleaner synth --graphs 600 --seed 1 --out $(DEMO)/synthetic.json
	target/release/gcleaner train --data $(DEMO)/synthetic.json --arch gin --epochs 40 --out $(DEMO)/gin
	target/release/gcleaner eval --model $(DEMO)/gin/model.safetensors --data $(DEMO)/synthetic.json

bench: build $(PYG_STAMP)
	bench/gin_epoch.sh

clean-venv:
	rm -rf $(VENV)
