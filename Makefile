# One entry point for humans and CI: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck schemas schemas-check openapi rules unit clean tools ops-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'import site, sys; open(site.getsitepackages()[0] + "/safeguard-repo.pth", "w").write(sys.argv[1])' $(CURDIR)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run

# Four workers on two cores: most tests wait on real processes (a broker, services, a
# browser) rather than compute; a module's tests stay on one worker with its stack.
PYTEST_WORKERS ?= 4

test: $(STAMP) tools lint typecheck schemas-check
	$(BIN)/pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

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

# System tools the operations checks need: promtool from Debian's prometheus package,
# installed here when missing (CI runs as root). kubectl comes from the dev extra. The
# console's browser tests (tests/browser) need Debian's chromium, driven by Playwright
# with the system executable (Playwright's own browser downloads are not used). The
# assurance pack's PDF needs Pango (WeasyPrint), its test poppler-utils' pdftoppm.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

# The desk's sign-in tests run a real OpenID Provider: panva's oidc-provider from npm, on
# Node.js (20.19 or later; Debian's nodejs and npm when none is installed), pinned by
# tests/fixtures/oidc/package-lock.json and installed with `npm ci`.
OIDC_DIR := tests/fixtures/oidc
OIDC_STAMP := $(OIDC_DIR)/node_modules/.package-lock.json

$(OIDC_STAMP): $(OIDC_DIR)/package-lock.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) nodejs npm >/dev/null 2>&1 \
		|| { apt-get update -qq && $(APT_INSTALL) nodejs npm >/dev/null; }; }; } \
		|| { echo "the sign-in tests need Node.js and npm: apt-get install nodejs npm" >&2; exit 1; }
	npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error
	touch $(OIDC_STAMP)

tools: $(OIDC_STAMP)
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) prometheus >/dev/null 2>&1 \
		|| { apt-get update -qq && $(APT_INSTALL) prometheus >/dev/null; }; }; } \
		|| { echo "the ops checks need promtool: apt-get install prometheus" >&2; exit 1; }
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && $(APT_INSTALL) chromium >/dev/null; }; }; } \
		|| { echo "the browser tests need chromium: apt-get install chromium" >&2; exit 1; }
	@command -v pdftoppm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) poppler-utils >/dev/null 2>&1 \
		|| { apt-get update -qq && $(APT_INSTALL) poppler-utils >/dev/null; }; }; } \
		|| { echo "the assurance pack's tests need pdftoppm: apt-get install poppler-utils" >&2; exit 1; }
	@ldconfig -p | grep -q libpangoft2 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core >/dev/null 2>&1 \
		|| { apt-get update -qq && $(APT_INSTALL) libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core >/dev/null; }; }; } \
		|| { echo "the assurance pack's PDF (WeasyPrint) needs Pango: apt-get install libpangoft2-1.0-0" >&2; exit 1; }

ops-check: $(STAMP) tools
	$(BIN)/pytest -p no:cacheprovider -q tests/ops -m "not e2e"
