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

# The store's browser test drives Debian's Chromium (never a Playwright browser download), with a Chinese font
# so the zh-CN store's screenshots show its text.
.browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@fc-list :lang=zh | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null)
	@touch $@

# The integration kit's PHP snippet is run in CI under Debian's php-cli (Java and Node come with the machine).
.php:
	@command -v php >/dev/null || (apt-get update -qq && apt-get install -y -qq php-cli >/dev/null)
	@touch $@

run: install
	$(PY) -m tools.run_local

# Each pytest-xdist worker starts its own local system; modules go to workers in tests/conftest.py's order.
TEST_WORKERS ?= 3
test: install
	@start=$$(date +%s); status=0; \
	$(PY) -m pytest -q tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 || status=$$?; \
	$(MAKE) --no-print-directory infra-check || status=$$((status ? status : 1)); \
	echo "make test: $$(( $$(date +%s) - start )) s in all (tests and infra check), exit $$status"; exit $$status

infra-check: install
	$(PY) -m infra.check

clean:
	rm -rf $(VENV) tools/node_modules .browser .php build .local
