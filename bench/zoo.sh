#!/usr/bin/env bash
# The model zoo behind BENCHMARKS.md's "Purification and the verdict": backdoored and
# never-backdoored GIN models of every dataset (bench/attack_sweep.py, resumable), each purified
# with the defaults (bench/purify_sweep.py, resumable), then the zoo and verdict tables
# (bench/zoo_table.py).
#
#   bench/zoo.sh [DATASETS_DIR]          # default ../shared/datasets; TAG=name for a variant
#
# Large-graph datasets (DD, COLLAB) train for 30 epochs and two seeds: at 150 epochs a COLLAB
# GIN takes over an hour per model on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
datasets_dir=${1:-../shared/datasets}
tag=${TAG:-zoo}
small=AIDS,MUTAG,bitcoin,PROTEINS,ENZYMES,IMDB-BINARY,Fingerprint-4
large=DD,COLLAB
python3 bench/attack_sweep.py --datasets "$small" --seeds 10,11,12 --datasets-dir "$datasets_dir"
python3 bench/attack_sweep.py --datasets "$large" --seeds 10,11 --epochs 30 --datasets-dir "$datasets_dir"
python3 bench/purify_sweep.py --datasets "$small" --seeds 10,11,12 --tag "$tag"
python3 bench/purify_sweep.py --datasets "$large" --seeds 10,11 --tag "$tag"
python3 bench/zoo_table.py --datasets "$small,$large" --seeds 10,11,12 --tag "$tag"
