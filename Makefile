# Two commands do everything on a fresh clone (see README.md):
#   make curriculum   set up, then run all seven notebooks in the CPU profile into runs/
#   make test         set up, then run the test suite (unit, integration and notebook tests)
#   make test-unit    the fast part of make test: only tests marked unit (the tiny random model, no notebooks)
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# torch first and pinned: an unpinned or unresolved torch makes pip pull a multi-GB CUDA build.
# On a laptop without this repo's CPU wheel on disk, add the CPU index:
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIN := torch==2.13.0
# pip byte-compiles what it installs (not --no-compile): where PYTHONDONTWRITEBYTECODE is set (as on this project's
# machines) Python would otherwise compile transformers anew in every process (+15 s each; make test +4 min).
TORCH_PIP_ARGS ?=
PROFILE ?= cpu

.PHONY: setup model lint test test-unit curriculum clean-venv lab browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PIN) $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

model: setup
	$(PY) -m ftlib fetch-model

# Chromium for the JupyterLab browser test: installed with apt-get as root on Debian, else the test says why it skips.
browser:
	@sh tools/ensure_browser.sh

LINTED := ftlib tests benchmarks tools

# ruff's rules live in pyproject.toml; a lint failure stops before the (much longer) tests.
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

# nbval leaves out the exercises' solutions: tests/test_exercises.py runs them on the smoke run it checks.
# Two workers, one core each (tests/conftest.py sets their threads and the groups: nbval's notebooks and the smoke run
# each run whole on one worker, longest first). TEST_WORKERS=0 runs everything in one process, as before.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder)
test: model browser lint
	TQDM_DISABLE=1 FTLIB_PROFILE=smoke $(PY) -m pytest tests notebooks --ignore=notebooks/exercises --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider --durations=20 $(XDIST)

test-unit: model
	TQDM_DISABLE=1 FTLIB_PROFILE=smoke $(PY) -m pytest tests -m unit -p no:cacheprovider

curriculum: model
	$(PY) -m ftlib curriculum --profile $(PROFILE)

# The course in JupyterLab: the repository as root (runs/ is a click away), opened on the notebooks folder.
lab: model
	$(VENV)/bin/jupyter-lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
