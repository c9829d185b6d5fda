#!/usr/bin/env bash
# Cross-dataset / domain generalization, step 2: evaluate the source-trained model on a target data set
# (e.g. dtd, or imagenetv2 / imagenet_sketch / imagenet_a / imagenet_r). DeAR uses [CLS]-only inference
# here (TRAINER.DEAR.INFERENCE cls), as the paper does for these protocols.
#   SOURCE=imagenet bash scripts/xd_test.sh TARGET SEED [TRAINER] [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
SOURCE=${SOURCE:-imagenet}

MODEL_DIR=${OUTPUT}/xd/train/${SOURCE}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
DIR=${OUTPUT}/xd/test/${SOURCE}_to_${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
skip_if_finished "${DIR}"
ARGS=()
if [ "${TRAINER}" != "ZeroshotCLIP" ]; then
    LOADEP=${LOADEP:-$("${PYTHON}" train.py --config-file "configs/${CFG}.yaml" --print-config "${EXTRA[@]}" \
             | awk '/^OPTIM:/{o=1} o && /MAX_EPOCH:/{print $2; exit}')}
    require_trained "${MODEL_DIR}" "${LOADEP}" xd_train.sh
    ARGS=(--model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}")
    [ "${TRAINER}" = "DeAR" ] && EXTRA+=(TRAINER.DEAR.INFERENCE cls)
fi
echo "Run: ${DIR}"
"${PYTHON}" train.py --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" --config-file "configs/${CFG}.yaml" \
    --output-dir "${DIR}" "${ARGS[@]}" --eval-only DATASET.SUBSAMPLE_CLASSES all TASK CD "${EXTRA[@]}"
