#!/usr/bin/env bash
# Reproduces the shipped demo model (make demo-model): synthetic data, training, fp16 export, evaluation.
# About 15 min of rendering and 2 h of training on 2 CPU cores. Not run in CI. Expects `source .venv/hfl_ros_env.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data_cache/synthetic_demo
RUN=data_cache/runs/demo
[ -f "$DATA/train.txt" ] || python -m hfl_ros.demo.make_dataset --out "$DATA" --train 10000 --evaluation 300 --workers 2
python -m hfl_ros.cli train --config config/train_demo.yaml --out "$RUN"
python -m hfl_ros.demo.export_model "$RUN/checkpoint_last.pt" models/demo/hfl_demo_lite0.pt
python benchmarks/eval_demo_model.py --checkpoint models/demo/hfl_demo_lite0.pt --threads 2 \
  --json benchmarks/results/eval_demo_model.json
