# The two set-up commands of the README: `make test` and `make demo`. Each creates .venv if it is missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv venv-gpu browser test test-fast lint demo lock clean-demo

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	# The project itself, editable, for the imagefolder-predict command (setuptools comes with the venv).
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# A GPU machine: the same venv with TensorFlow's CUDA build (its `and-cuda` extra) in place of tensorflow-cpu.
TF_VERSION := $(shell sed -n 's/^tensorflow[-_]cpu==//p' requirements.lock)
venv-gpu: venv
	$(VENV)/bin/pip uninstall --quiet --yes tensorflow-cpu
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'tensorflow[and-cuda]==$(TF_VERSION)'

# oneDNN on unless the caller says otherwise: the setting under which TensorFlow prints start-up lines, so a
# green run means the output tests hold on every CPU (`TF_ENABLE_ONEDNN_OPTS=0 make test` runs the other one).
# Two pytest workers (pytest-xdist): most of a test's time is one thread (imports, dvc, subprocesses), so on 2 cores
# the suite took 689 s instead of 980 s, measured back to back. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

# The review page's test runs in the system's Chromium (Playwright drives it; its own browser download is
# unreachable offline): installed here when missing and apt-get can, else one line says what is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "$$CHROMIUM" ] || \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && \
	   apt-get install -y -qq chromium >/dev/null 2>&1)) || \
	  echo "make: no Chromium and apt-get could not install it (as root: apt-get install chromium; or set CHROMIUM): the review page's browser test will fail"

test: venv lint browser
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-1} $(VENV)/bin/python -m pytest -n $(TEST_WORKERS)

lint: venv
	$(VENV)/bin/ruff check stages tests benchmarks scripts
	$(VENV)/bin/ruff format --check stages tests benchmarks scripts

test-fast: venv browser
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-1} $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) -m "not slow"

# Runs the pipeline offline on generated sample data in a throwaway DVC project under demo/.
demo: venv
	bash scripts/demo.sh $(DEMO_ARGS) demo

lock: venv
	$(VENV)/bin/pip freeze --exclude-editable | sed '1i # Every package of the virtual environment, pinned (pip freeze). `make venv` installs exactly this set.\n# Regenerate after changing pyproject.toml: make lock' > requirements.lock

clean-demo:
	rm -rf demo
