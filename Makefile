# trapdoor: `make run` and `make test` install what is missing, then do their job.
SHELL := /bin/bash
PYTHON = $(shell scripts/find-python.sh)
export PYTHONPATH := $(CURDIR)/trainer:$(PYTHONPATH)

.PHONY: console deps deps-plots deps-test build run demo test test-trainer test-ts lint typecheck catalog codegen bench-throughput bench-fmnist bench-efficacy bench-api bench-gpu

deps:
	@scripts/ensure-deps.sh

# The efficacy study's plots need matplotlib (only there: tests and the service do not).
deps-plots:
	@scripts/ensure-deps.sh python3-matplotlib

# The production build: dist/ (tsc), which bin/trapdoor.js runs when it is newer than src/.
build: deps
	npm run build

# API + worker + embedded Postgres + local object store + the web console; prints the first API key.
run: deps console
	TRAPDOOR_PYTHON=$(PYTHON) node bin/trapdoor.js start

demo: deps
	TRAPDOOR_PYTHON=$(PYTHON) $(PYTHON) bench/fmnist/run.py --preset quick

# The web console (console/, Preact + Vite) into dist/console, which the API serves at /console/.
console: deps
	npx vite build --config console/vite.config.ts --logLevel warn

# Tests also hold ingest's resize to Pillow's (tests/datasets/resize.test.ts); the console's
# browser test drives Debian's chromium (tests/console/console.test.ts).
deps-test:
	@scripts/ensure-deps.sh python3-pil chromium fonts-dejavu-core

test: deps-test
	@$(MAKE) --no-print-directory typecheck lint test-trainer test-ts

test-trainer:
	cd trainer && $(PYTHON) -m pytest -q

# schema/catalog.json: the trainer's catalog (methods, attacks with JSON Schemas, architectures);
# a trainer test fails when it drifts from `describe`.
# The TypeScript client's schema types (clients/typescript/src/generated), from schema/schema.graphql.
codegen:
	npx graphql-codegen --config clients/typescript/codegen.json

catalog:
	$(PYTHON) -m trapdoor_trainer describe > schema/catalog.json.tmp && mv schema/catalog.json.tmp schema/catalog.json

test-ts:
	TRAPDOOR_PYTHON=$(PYTHON) npm test

typecheck:
	npx tsc --noEmit
	npx tsc --noEmit -p console

# Style, and the control plane's layers (.dependency-cruiser.cjs): an upward import or a cycle fails.
lint:
	npx biome check .
	npx depcruise src clients/typescript console/src --config .dependency-cruiser.cjs

bench-throughput: deps
	$(PYTHON) bench/throughput/run.py

bench-fmnist: deps
	$(PYTHON) bench/fmnist/run.py --preset table

# The efficacy grid (cached per cell; rerun to continue where it stopped) -> bench/EFFICACY.md
bench-efficacy: deps-plots
	$(PYTHON) bench/efficacy/run.py --profile cpu --attacks dev,clean,held-out --configs none,paper,isolate,default

bench-api: deps
	node --import tsx bench/api/latency.ts
	node --import tsx bench/api/ingest.ts --size-mb 1024
