# gcleaner build entry points. `make test` and `make run` do all their own setup.
SHELL := /bin/bash
.DEFAULT_GOAL := build

PYTHON ?= python3
VENV := $(CURDIR)/.venv
TORCH_VERSION := 2.13.0
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
PYG_STAMP := $(VENV)/.pyg
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_STAMP := $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
PYTEST_VERSION := 9.2.0
HATCHLING_VERSION := 1.33.0
CLIENT_TEST_STAMP := $(VENV)/.client-test-$(PYTEST_VERSION)-$(HATCHLING_VERSION)
MOTO_VERSION := 5.2.5
MOTO_STAMP := $(VENV)/.moto-$(MOTO_VERSION)

# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: setup build test run demo sample bench bench-api bench-scan zoo postgres clean-venv

# Headless Chromium (Debian's package) for the test that opens report.html in a browser.
setup: $(TORCH_STAMP) $(SCHEMATHESIS_STAMP) $(CLIENT_TEST_STAMP) $(MOTO_STAMP)
	@test -x /usr/bin/chromium || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(TORCH_STAMP):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	@touch $@

# The API fuzzer of the contract run (tests/contract/schemathesis.sh).
$(SCHEMATHESIS_STAMP): $(TORCH_STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "schemathesis==$(SCHEMATHESIS_VERSION)"
	@touch $@

# The Python client's test run (tests/client/run.sh): pytest, and hatchling to build the client
# without fetching a build backend on every run.
$(CLIENT_TEST_STAMP): $(TORCH_STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pytest==$(PYTEST_VERSION)" "hatchling==$(HATCHLING_VERSION)"
	@touch $@

# The S3-compatible server of the storage and API tests (tests/api/s3_server.rs starts
# `moto_server` on loopback): a pure-Python wheel, where building Garage or MinIO from source
# would take too long on CI's two cores.
$(MOTO_STAMP): $(TORCH_STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "moto[server]==$(MOTO_VERSION)"
	@touch $@

# Python packages used only by the interop tests and the PyG benchmark.
$(PYG_STAMP): $(TORCH_STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch_geometric safetensors numpy
	@touch $@

build: setup
	cargo build --release --locked

# The service tests need PostgreSQL on 127.0.0.1:5432 (trust auth); start the system cluster
# when it is not running.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

test: setup $(PYG_STAMP) postgres
	cargo fmt --all -- --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	cargo build --release --locked
	cargo test --release --locked --workspace
	tests/contract/schemathesis.sh
	tests/client/run.sh

SAMPLE := $(CURDIR)/.run/sample

# A backdoored model and a clean sample, generated here (no files from outside the repository):
# synthetic graphs, a Sub-BA backdoor planted into a GIN, and the defender's clean sample.
sample: build
	@test -f $(SAMPLE)/attack/model.safetensors || { \
	  target/release/gcleaner synth --graphs 600 --seed 1 --out $(SAMPLE)/synthetic.json && \
	  target/release/gcleaner attack --data $(SAMPLE)/synthetic.json --attack subgraph --arch gin \
	    --epochs 40 --target-label 0 --trigger-ratio 0.25 --injection-ratio 0.15 --defender-fraction 0.1 \
	    --out $(SAMPLE)/attack; }

# The main job: PostgreSQL (a private cluster unless GCLEANER_DATABASE_URL is set), migrations,
# a token, and `gcleaner serve` on 127.0.0.1:8080 with one worker; prints the curl commands.
run: sample
	SAMPLE_MODEL=$(SAMPLE)/attack/model.safetensors SAMPLE_DATA=$(SAMPLE)/attack/defender_clean.json \
	  scripts/run-local.sh

# The research CLI end to end on the generated sample: purify it and report the true ASR.
demo: sample
	target/release/gcleaner purify --model $(SAMPLE)/attack/model.safetensors \
	  --data $(SAMPLE)/attack/defender_clean.json --attack $(SAMPLE)/attack --out $(SAMPLE)/purified

bench: build $(PYG_STAMP)
	bench/gin_epoch.sh
	bench/unlearn_epoch.sh

# The model zoo (hours on 2 cores; resumable): every shared dataset's backdoored and
# never-backdoored GIN models purified with the defaults, and the zoo and verdict tables.
zoo: build
	bench/zoo.sh $(DATASETS)

bench-api: build
	cargo build --release --locked --tests
	bench/api.sh

# Scan jobs of an AIDS GIN drained by 1 and by 2 worker processes: jobs/min, latency, peak RSS.
bench-scan: build
	bench/scan_throughput.sh $(SCAN_JOBS)

clean-venv:
	rm -rf $(VENV)
