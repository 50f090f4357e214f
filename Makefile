# The two front-door commands (see README):
#   make demo   set up .venv and run the whole workflow on the embedded demo set
#   make test   set up .venv and run the test suite
VENV ?= .venv
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint

$(STAMP): requirements.lock pyproject.toml scripts/setup-env.sh
	bash scripts/setup-env.sh $(VENV)
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

# Tests run on every core (pytest-xdist); tests/conftest.py keeps each expensive fixture on one worker.
PYTEST_ARGS ?= -n auto --dist loadgroup --durations=15

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
