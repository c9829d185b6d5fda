#!/usr/bin/env bash
# Quickstart on a fresh machine, offline: install, generate a tiny setup, run base-to-novel for DeAR and
# zero-shot CLIP on it with the real scripts, print the Base / Novel / HM table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export PYTHONWARNINGS=ignore CLIP_OFFLINE=1
OUT=output/demo
python -m tools.make_tiny_setup --out "${OUT}/setup"
export DATA=${OUT}/setup/data OUTPUT=${OUT} SHOTS=16
export OPTS="MODEL.BACKBONE.PATH ${OUT}/setup/tiny_clip.pt TRAINER.DEAR.ROLES_FILE ${OUT}/setup/tiny_roles.json \
INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 5 TRAIN.PRINT_FREQ 5"
for TRAINER in ZeroshotCLIP DeAR; do
    bash scripts/base2new_train.sh dtd 1 "${TRAINER}" | tail -n 3
    bash scripts/base2new_test.sh dtd 1 "${TRAINER}" | tail -n 3
done
python parse_test_res.py "${OUT}/base2new" --table --csv "${OUT}/results.csv"
