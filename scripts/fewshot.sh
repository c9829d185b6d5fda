#!/usr/bin/env bash
# Few-shot learning: train and test on all classes with SHOTS (default 16) images per class.
#   SHOTS=4 bash scripts/fewshot.sh DATASET SEED [TRAINER] [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

DIR=${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}"
EVAL=()
[ "${TRAINER}" = "ZeroshotCLIP" ] && EVAL=(--eval-only)
echo "Run: ${DIR}"
"${PYTHON}" train.py --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/${CFG}.yaml" \
    --output-dir "${DIR}" "${EVAL[@]}" \
    DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES all TASK FS "${EXTRA[@]}"
