#!/usr/bin/env bash
# Base-to-novel, step 2: evaluate the base-trained model on the novel classes.
#   bash scripts/base2new_test.sh DATASET SEED [TRAINER] [CONFIG]
# Environment: as base2new_train.sh, plus LOADEP (epoch to load, default: OPTIM.MAX_EPOCH of the config).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/common.sh

COMMON=(--root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}"
        --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/${CFG}.yaml")
MODEL_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
DIR=${OUTPUT}/base2new/test_new/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}"
LOAD=()
if [ "${TRAINER}" != "ZeroshotCLIP" ]; then
    if [ -z "${LOADEP:-}" ]; then
        LOADEP=$("${PYTHON}" train.py "${COMMON[@]}" --print-config "${EXTRA[@]}" \
                 | awk '/^OPTIM:/{o=1} o && /MAX_EPOCH:/{print $2; exit}')
    fi
    require_trained "${MODEL_DIR}" "${LOADEP}" base2new_train.sh
    LOAD=(--model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}")
fi
echo "Run: ${DIR}"
"${PYTHON}" train.py "${COMMON[@]}" \
    --output-dir "${DIR}" \
    "${LOAD[@]}" \
    --eval-only \
    DATASET.NUM_SHOTS "${SHOTS}" \
    DATASET.SUBSAMPLE_CLASSES new \
    TASK B2N \
    "${EXTRA[@]}"
