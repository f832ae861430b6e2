# Two commands on a fresh machine: `make run` (local stack + simulated fleet), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Machines that set PYTHONDONTWRITEBYTECODE make every process (each xdist worker, each CLI or `chalice local`
# subprocess) recompile the project and re-rewrite every test module's asserts: ~20 % of `make test`'s CPU.
# The caches land in __pycache__/, which git ignores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run run-under-load run-fleet test suite typecheck-quiet test-e2e package test-race install lint typecheck bench soak stack-up stack-down clean browser

$(STAMP): requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip<26.3'  # chalice 1.x declares pip<26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# The project itself, editable, with the `cli` extra: installs the `edge-billing` console script.
	$(BIN)/pip install --quiet --no-build-isolation -e '.[cli]'
	touch $(STAMP)

install: $(STAMP)

# The browser test (tests/e2e/test_status_page.py) and `make run`'s screenshot of /ops/status: Playwright for Python
# drives Debian's chromium (installed here when missing; never a browser Playwright downloads), and axe-core from
# npm, vendored into .local/vendor, checks the page's accessibility. CI (.ci/run) runs this before `make test-e2e`.
AXE_VERSION := 4.14.1
AXE := .local/vendor/axe-core-$(AXE_VERSION)/axe.min.js
browser: $(STAMP) $(AXE)
	@test -x /usr/bin/chromium || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
	@/usr/bin/chromium --version

$(AXE):
	mkdir -p $(dir $(AXE))
	cd $(dir $(AXE)) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
		tar xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js && rm axe-core-$(AXE_VERSION).tgz

# Tests in parallel, with branch coverage; the core and the services must stay >= 90 %. One worker more than
# cores: about a sixth of the suite's time is spent waiting (subprocesses, sockets, Stripe's retry back-off), and
# idle workers steal queued tests. The local-stack runs (real processes, wall time) and the packaged template's
# tests are `make test-e2e`; CI runs both.
WORKERS ?= $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) + 1 )))
test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	@# mypy runs beside the suite, not before it: cold (a fresh clone) it takes ~10 s of one core,
	@# about as long as the suite leaves a core idle. make -j2 waits for both and fails if either does.
	@$(MAKE) --no-print-directory -j2 typecheck-quiet suite
	@$(BIN)/python -m tests.coverage_report out/coverage.json --floor 90

suite: $(STAMP)
	@# On a fresh clone each worker would compile the project and rewrite every test module's asserts itself
	@# (~1.5 CPU-s a worker); one collection first leaves those caches for all (beside mypy).
	@$(BIN)/python -m pytest --collect-only -q -m "not slow and not package" >/dev/null 2>&1 || true
	@mkdir -p out
	@# PYTHONWARNINGS: SlipCover cannot measure branches in pytest's rewritten test modules; it measures none of
	@# them here (--source), so its warning that it cannot is noise.
	PYTHONWARNINGS='ignore:Unable to activate pytest branch coverage' \
		$(BIN)/python -m slipcover --branch --source chalicelib,cellkit --json --out out/coverage.json \
		-m pytest -n $(WORKERS) --dist worksteal -m "not slow and not package"

# The local stack end to end, one run at a time, unloaded (10 s buckets in wall time): `make run`'s whole cutover,
# shorter; the fleet-only run; the app restart that `cutover arm --stage local` uses. And the deployable template's
# tests (`-m package`: `chalice package --stage prod` once, then cfn-lint, IAM, queues, alarms, locked routes).
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m "slow or package" -p no:randomly

# The threaded webhook race, many times over (moto serialized per request): RACE_REPEAT=200 make test-race
test-race: $(STAMP)
	RACE_REPEAT=$${RACE_REPEAT:-200} $(BIN)/python -m pytest tests/integration/routes/test_webhook_route.py -k concurrent

LINTED := app.py chalicelib cellkit tests bench stripe_emulator sim infra
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy

# The fuzz suite (tests/fuzz: every route, the cell kit's forwarder, the cutover CLI) with 30x the CI
# examples, and at least 10,000 per cell-side route, forwarder and CLI, on every core (the workers' tallies
# summed); prints how many ran per route. The properties that parse, verify and answer run on the in-memory
# adapters; where a hostile body becomes a DynamoDB item (ingest, orgs, webhooks, stored reports), on moto.
# Then the seeded simulation with SIM_SCENARIOS in all (2,000 by default, spread over its modules): it
# prints how many scenarios ran per module and the faults injected by kind (also out/simulation-summary.json).
soak: $(STAMP)
	FUZZ_SCALE=$${FUZZ_SCALE:-30} $(BIN)/python -m pytest tests/fuzz -p no:logging -q -n auto --dist worksteal
	SIM_SCENARIOS=$${SIM_SCENARIOS:-2000} $(BIN)/python -m pytest tests/simulation -p no:logging -q -n auto

typecheck: $(STAMP)
	$(BIN)/mypy

# mypy's answer on a line of its own, not in the middle of the suite's progress dots.
typecheck-quiet: $(STAMP)
	@out=$$($(BIN)/mypy 2>&1); status=$$?; printf '\nmypy: %s\n' "$$out"; exit $$status

# The main job: a whole cutover from the cells to the edge, locally (out/cutover-report.json and a chart).
run: $(STAMP) browser
	$(BIN)/python -m sim.cutover

# `make run` three times and `make test-e2e` while one busy-loop process per core competes for the CPU; reports
# exit codes, wall and CPU seconds (out/under-load/summary.json). RUNS=n, BUSY=n to change.
run-under-load: $(STAMP)
	$(BIN)/python -m sim.under_load --runs $${RUNS:-3} --busy $${BUSY:-$$(getconf _NPROCESSORS_ONLN)}

# The earlier fleet-only run: ticks through ingest, rollup and send, reconciled with the fleet's ledger.
run-fleet: $(STAMP)
	$(BIN)/python -m sim.run

stack-up: $(STAMP)
	$(BIN)/python -m sim.stack up

stack-down: $(STAMP)
	$(BIN)/python -m sim.stack down

# One CloudFormation template with everything (docs/deploy.md): Chalice's, with infra/template.json and
# infra/api.json (API Gateway's own errors as {"error": ...}) merged in. STAGE=prod make package
package: $(STAMP)
	mkdir -p out
	$(BIN)/python -m infra.merge --stage $${STAGE:-dev} out/merge-template.json
	$(BIN)/chalice package --stage $${STAGE:-dev} --merge-template out/merge-template.json out/package

bench: $(STAMP)
	mkdir -p bench/results
	bench/ingest > bench/results/ingest.json
	bench/credits > bench/results/credits.json
	bench/rollup > bench/results/rollup.json
	bench/cellspool > bench/results/cellspool.json
	bench/cellfleet > bench/results/cellfleet.json
	bench/capacity_model > bench/results/capacity_model.json
	bench/parity > bench/results/parity.json
	bench/send > bench/results/send.json

clean:
	rm -rf $(VENV) .local
