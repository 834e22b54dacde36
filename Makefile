# The two commands of the README: `make demo` (main job) and `make test`. Both set everything up first.
SHELL := /bin/bash
ENV := source .venv/hfl_ros_env.sh
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench demo-model colcon clean

setup:
	bash scripts/setup.sh

demo: setup
	$(ENV) && python -m hfl_ros.cli demo --out demo_output

test: setup
	$(ENV) && python -m pytest $(PYTEST_ARGS)

lint: setup
	$(ENV) && ruff check .

bench: setup
	$(ENV) && for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

# Reproduces the demo model: data, pre-cut set, training (resumed when a checkpoint exists), export, evaluation;
# over 2 h on 2 CPU cores, its total CPU time printed at the end. Not run in CI.
demo-model: setup
	$(ENV) && bash scripts/train_demo_model.sh

# What a ROS 2 user with an apt install runs instead of setup.sh (from a colcon workspace's src/).
colcon:
	colcon build --packages-select hfl_ros

clean:
	rm -rf build install log demo_output
