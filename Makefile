# Every entry point a person uses. Each target depends on `bootstrap`, which is idempotent:
# it (re)creates the venv and the editable install only when pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.launchq-installed

.PHONY: bootstrap lint format test test-unit test-integration emulators vertex-emulator clean

bootstrap: $(STAMP) browser

## Debian's chromium and its chromedriver for the dashboard's browser test
## (tests/integration/test_ui_browser.py); installed only when either is missing.
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: bootstrap
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Two workers, each with its own emulators, stand-ins and ports, each taking whole files
## (module fixtures such as a test module's local stack stay in one process): the suite spends
## much of its time waiting on emulators and subprocesses, so two workers on two cores take
## about 4 min of pytest instead of about 7 (docs/performance.md#test-suite). PYTEST_WORKERS=0
## runs it in one process.
PYTEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test-unit: bootstrap
	$(BIN)/pytest tests/unit

test-integration: bootstrap
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile tests/integration

## Both gcloud emulators in the foreground (Ctrl-C stops them and every Java child).
emulators: bootstrap
	$(BIN)/launchq emulators

## The local Vertex AI stand-in in the foreground: make vertex-emulator PORT=8090
PORT ?= 8090
vertex-emulator: bootstrap
	$(BIN)/launchq vertex-emulator --port $(PORT)

## docs/images/*.png from the dashboard's browser test, on a busy local stack (one stack, ~30 s).
.PHONY: screenshots
screenshots: bootstrap
	LAUNCHQ_UI_SCREENSHOTS=docs/images $(BIN)/pytest tests/integration/test_ui_browser.py \
		-k every_state -q -p no:cacheprovider

.PHONY: dev demo

## The whole stack in the foreground on fixed ports (docs/local-dev.md); Ctrl-C stops it all.
dev: bootstrap
	$(BIN)/launchq dev

## The first impression: start the stack on free ports, run the story, check it, tear down.
demo: bootstrap
	$(BIN)/python -m launchq_demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: package terraform-check provider-schema

## Cloud Functions source archives for Terraform: build/functions/{dispatch,sweep}.zip.
## Reproducible (sorted entries, fixed timestamps): two builds of one tree are byte-identical.
package: bootstrap
	$(BIN)/python scripts/package_functions.py --out build/functions

## The Terraform module's offline checks (the google provider is never downloaded): fmt,
## structural tests, checkov (installed on first use into its own venv, $(VENV)/tools/checkov),
## every resource/argument/block name against the provider schema (below), packaging
## reproducibility.
terraform-check: bootstrap
	terraform fmt -check -recursive terraform
	$(BIN)/pytest tests/terraform -m "not integration"

.PHONY: fuzz

## The hostile-message fuzz test at length, with a fresh seed each run (the normal suite runs a
## fixed 300 cases): make fuzz FUZZ_EXAMPLES=5000. Prints how many messages it dispatched.
FUZZ_EXAMPLES ?= 2000
fuzz: bootstrap
	LAUNCHQ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LAUNCHQ_FUZZ_RANDOM=1 \
		$(BIN)/pytest tests/integration/test_dispatch_fuzz.py -s --timeout=7200

.PHONY: bench bench-smoke

## All five benchmarks at full size on a fresh local stack (about 10 minutes): writes
## bench/results/latest.json and the table in docs/performance.md, and prints the table.
bench: bootstrap
	$(BIN)/python -m bench.run

## The same at tiny sizes (about 30 s): prints the table, writes nothing.
bench-smoke: bootstrap
	$(BIN)/python -m bench.run --smoke

## The google provider's schema for tests/terraform/test_provider_schema.py: npm packs the pinned
## @cdktf/provider-google once (31.7 MB, needs npm) into $(VENV)/tools/provider-google-schema and
## checks terraform/ against it. The tests do the same on first use; this only does it up front.
provider-schema: bootstrap
	$(BIN)/python -m tests.terraform.provider_schema
