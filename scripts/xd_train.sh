#!/usr/bin/env bash
# Cross-dataset / domain generalization, step 1: train on a source data set (ImageNet in the paper),
# all classes, SHOTS images per class.
#   bash scripts/xd_train.sh imagenet SEED [TRAINER] [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

DIR=${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}"
echo "Run: ${DIR}"
"${PYTHON}" train.py --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/${CFG}.yaml" \
    --output-dir "${DIR}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES all TASK CD "${EXTRA[@]}"
