# acx: `make train` trains CartPole with the default config, `make test` runs the test suite.
# Both create the virtual environment first (torch==2.13.0 is installed before anything else,
# so pip never resolves a multi-GB CUDA build), then acx with its dev, docs, sweeps, ray, export, envpool, mujoco and minigrid extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: help venv train test test-fast lint format docs docs-build check-wheel bench bench-population bench-ppo bench-mujoco learning clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv and install acx with its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,docs,sweeps,ray,export,envpool,mujoco,minigrid]"
	touch $@

train: venv ## train CartPole-v1 with the default config (extra Hydra overrides: make train ARGS="seed=3")
	$(BIN)/acx train $(ARGS)

# one pytest-xdist worker per core (at most 8), each test file on one worker: a file's module and session
# fixtures (a SLURM cluster, a shared run) are built once, and every run in a test uses one torch thread
XDIST = -n auto --maxprocesses=8 --dist loadfile

test: venv ## run the whole test suite, learning tests included, on every core
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: venv ## run the tests that are not marked slow
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

lint: venv ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv ## ruff format and autofix
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

docs: venv ## build the docs site strictly (mkdocs.yml, docs/) and serve it on http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: venv ## build the docs site into site/ as CI does: every warning is an error
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

check-wheel: ## build the wheel, install it in a clean venv (torch==2.13.0 first), run acx from an empty folder
	bash .ci/wheel

SB3_VENV := bench/.venv-sb3

$(SB3_VENV)/.installed:
	$(PYTHON) -m venv $(SB3_VENV)
	$(SB3_VENV)/bin/python -m pip install -q --upgrade pip
	$(SB3_VENV)/bin/python -m pip install -q torch==2.13.0
	$(SB3_VENV)/bin/python -m pip install -q stable-baselines3 "gymnasium[atari]" "gymnasium[mujoco]" ale-py opencv-python-headless
	touch $@

bench: venv $(SB3_VENV)/.installed ## acx vs Stable-Baselines3 A2C: writes docs/benchmarks.md and .png (ARGS=--quick)
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/compare.py --sb3-python $(SB3_VENV)/bin/python $(ARGS)
	$(MAKE) bench-population
	$(MAKE) bench-ppo

bench-population: venv ## cohorts vs joblib (CartPole, PPO, episodic, Pong), one run vs the commit before: docs/population.md
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/population.py

bench-ppo: venv $(SB3_VENV)/.installed ## acx PPO vs SB3 PPO (zoo settings) on CartPole and Pendulum: docs/benchmarks.md's PPO section
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/ppo.py --sb3-python $(SB3_VENV)/bin/python $(ARGS)

bench-mujoco: venv $(SB3_VENV)/.installed ## acx n-step A2C vs SB3 A2C (zoo settings) on HalfCheetah-v5 and Hopper-v5: docs/benchmarks.md's MuJoCo section (ARGS=--budget 1000000)
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/mujoco_a2c.py --sb3-python $(SB3_VENV)/bin/python $(ARGS)

learning: venv ## every variant x CartPole, Acrobot, Pendulum, 10 seeds each, and the spaces: writes docs/learning.md (ARGS=--reuse | --tuned-only | --spaces | --cost | "--env cartpole --env acrobot")
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/learning.py $(ARGS)

clean: ## remove the virtual environment and caches (keeps outputs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
