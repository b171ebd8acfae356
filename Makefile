# Two commands matter: `make run` (the whole system locally) and `make test` (what CI runs).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install run test unit infra-check bench clean

install: $(VENV)/.installed tools/node_modules/.installed .browser .php

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

tools/node_modules/.installed: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The store's browser test drives Debian's Chromium (never a Playwright browser download).
.browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@touch $@

# The integration kit's PHP snippet is run in CI under Debian's php-cli (Java and Node come with the machine).
.php:
	@command -v php >/dev/null || (apt-get update -qq && apt-get install -y -qq php-cli >/dev/null)
	@touch $@

run: install
	$(PY) -m tools.run_local

test: install
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory infra-check

infra-check: install
	$(PY) -m infra.check

clean:
	rm -rf $(VENV) tools/node_modules .browser .php build .local
