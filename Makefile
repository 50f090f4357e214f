# The two front-door commands (see README):
#   make demo   set up .venv and run the whole workflow on the embedded demo set
#   make test   set up .venv and run the test suite
VENV ?= .venv
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint mutation

$(STAMP): requirements.lock pyproject.toml scripts/setup-env.sh
	bash scripts/setup-env.sh $(VENV)
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

# Tests run on every core (pytest-xdist): each test module on one worker, so a module's fixtures are built
# once; the shared demo run is built once for all workers (tests/conftest.py).
PYTEST_ARGS ?= -n auto --dist loadscope --durations=15

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakemake --lint

# Mutation testing of the core modules against the fast tests (not part of CI: a full run took 24 minutes on two
# idle cores; `$(VENV)/bin/python scripts/mutation.py --resume` re-tests only changed code and the survivors).
# Ends with "mutation score: K/N killed (P %)"; see README "Development".
mutation: $(STAMP)
	$(VENV)/bin/python scripts/mutation.py
