#!/usr/bin/env bash
# Base-to-novel, step 1: train on the base classes (or, for ZeroshotCLIP, evaluate on them).
#   bash scripts/base2new_train.sh DATASET SEED [TRAINER] [CONFIG]
#   e.g. bash scripts/base2new_train.sh dtd 1            (DeAR with configs/dear.yaml)
# DATASET names configs/datasets/DATASET.yaml; CONFIG names configs/CONFIG.yaml.
# Environment: DATA (data root, default ./data), OUTPUT (default ./output), SHOTS (default 16),
#              OPTS (extra KEY VALUE overrides passed to train.py), PYTHON (default python).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/common.sh

DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}"
EVAL=()
[ "${TRAINER}" = "ZeroshotCLIP" ] && EVAL=(--eval-only)
echo "Run: ${DIR}"
"${PYTHON}" train.py \
    --root "${DATA}" \
    --seed "${SEED}" \
    --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/${CFG}.yaml" \
    --output-dir "${DIR}" \
    "${EVAL[@]}" \
    DATASET.NUM_SHOTS "${SHOTS}" \
    DATASET.SUBSAMPLE_CLASSES base \
    TASK B2N \
    "${EXTRA[@]}"
