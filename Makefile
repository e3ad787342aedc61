# vdisk: `make up` starts it, `make test` runs the whole suite. Both install what is missing first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages the data path and the tests use (none of them is left running as a service).
DEBS   := ca-certificates xfsprogs util-linux qemu-utils nbdkit zstd xz-utils nginx-light docker-registry
# Load generator for the benchmarks (make bench).
BENCH_DEBS := wrk curl

.PHONY: up test deps venv links bench lint clean

deps:
	@tools/install-debs.sh $(DEBS)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# `vdisk` and `virtctl` on the PATH (as links into the venv), unless something else already has the name
BINDIR ?= /usr/local/bin
links: venv
	@for t in vdisk virtctl; do \
	  if [ ! -e "$(BINDIR)/$$t" ] || readlink "$(BINDIR)/$$t" | grep -q '/$(VENV)/bin/'; then \
	    ln -sfn "$(CURDIR)/$(VENV)/bin/$$t" "$(BINDIR)/$$t" 2>/dev/null || true; \
	  fi; \
	done

up: deps venv links
	$(VENV)/bin/vdisk up $(ARGS)

test: deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: deps venv
	@tools/install-debs.sh $(BENCH_DEBS)
	$(VENV)/bin/python -m tests.bench.run $(ARGS)

lint: venv
	$(VENV)/bin/ruff check vdisk tests
	$(VENV)/bin/mypy vdisk

clean:
	rm -rf $(VENV) build *.egg-info
