# One entry point for humans and CI: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test checks lint typecheck schemas schemas-check openapi rules unit clean tools ops-check

# uv installs the same pinned tree in seconds where pip takes most of a minute, compiled to
# bytecode as pip does (every service process the tests start would otherwise compile its
# libraries again); pip stays in the venv for the tests that build the wheel with it.
UV_VERSION := 0.13.9

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python pip==25.3 -e '.[dev]'
	$(BIN)/python -c 'import site, sys; open(site.getsitepackages()[0] + "/safeguard-repo.pth", "w").write(sys.argv[1])' $(CURDIR)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run

# Four workers on two cores, a module's tests on one worker with its stack. Six measured a
# few per cent faster, inside the spread between runs, with less room for the tests'
# timing margins.
PYTEST_WORKERS ?= 4

# The static checks run beside pytest, at the lowest priority so that they take only the
# time its workers spend waiting (about a quarter of the two cores is idle); their output
# is printed after the tests', and either failing fails the target. Bytecode is written
# (git ignores it) even where the environment says not to: each worker would otherwise
# compile and rewrite every test module again, and each process it starts our sources.
test:
	@$(MAKE) --no-print-directory -j2 $(STAMP) tools
	@nice -n 19 $(MAKE) --no-print-directory checks > $(VENV)/checks.log 2>&1 & checks=$$!; \
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); \
	tests=$$?; wait $$checks; checked=$$?; cat $(VENV)/checks.log; \
	[ $$checked = 0 ] || echo "make test: lint, type or schema checks failed (above)" >&2; \
	[ $$tests = 0 ] && [ $$checked = 0 ]

checks: lint typecheck schemas-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

schemas-check: $(STAMP)
	$(BIN)/python -m schemas.generate --check

# Regenerates services/ingest/openapi.json and services/desk/openapi.json (a test fails
# when either drifts from the code).
openapi: $(STAMP)
	$(BIN)/python -m services.ingest.openapi
	$(BIN)/python -m services.desk.openapi

# Rewrites the derived alert rules from deploy/prometheus/slos.yaml (the service levels'
# rules, every alert's runbook link, the PrometheusRule); a test fails when they drift.
rules: $(STAMP)
	$(BIN)/python -m devtools.alert_rules

unit: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider tests/unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build *.egg-info

# Debian packages the tests need (promtool, chromium, poppler-utils, Pango, Node.js and
# npm), installed in one apt run when missing: see devtools/system-packages.
#
# The desk's sign-in tests run a real OpenID Provider: panva's oidc-provider from npm, on
# Node.js (20.19 or later), pinned by tests/fixtures/oidc/package-lock.json and installed
# with `npm ci`.
OIDC_DIR := tests/fixtures/oidc
OIDC_STAMP := $(OIDC_DIR)/node_modules/.package-lock.json

$(OIDC_STAMP): $(OIDC_DIR)/package-lock.json
	devtools/system-packages
	npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error
	touch $(OIDC_STAMP)

tools: $(OIDC_STAMP)
	@devtools/system-packages

ops-check: $(STAMP) tools
	$(BIN)/pytest -p no:cacheprovider -q tests/ops -m "not e2e"
