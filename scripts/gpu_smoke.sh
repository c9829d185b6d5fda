#!/usr/bin/env bash
# Every trainer end to end on a GPU, offline, in a few minutes: the CUDA paths (PREC amp, pinned memory,
# learner-only DDP under torchrun) on the built-in world, with a CLIP of ViT-B/16's shapes (12 layers x 12
# heads, random weights at 32 px, so the repo's head_roles/vit_b16.json applies) instead of OpenAI's weights.
#   bash scripts/gpu_smoke.sh [OUT]        (default OUT: output/gpu_smoke)
# Accuracies are chance-level (random weights): this checks that each run trains, evaluates and writes its
# run folder on CUDA, not what it reaches. Environment: TRAINERS, GPUS (processes for the torchrun run; 1).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS=ignore CLIP_OFFLINE=1
PYTHON=${PYTHON:-python}
OUT=${1:-output/gpu_smoke}
TRAINERS=${TRAINERS:-"ZeroshotCLIP CoOp CoCoOp IVLP MaPLe PromptSRC MMRL MMRLpp DeAR"}
GPUS=${GPUS:-1}
mkdir -p "${OUT}"
"${PYTHON}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_smoke.sh: no CUDA device')"
"${PYTHON}" -m tools.world --root "${OUT}/data" --datasets world_mixed
"${PYTHON}" - "${OUT}/vit_b16_32px.pt" <<'EOF'
import sys, torch
from clipkit.tiny import VIT_B16_SHAPE, build_clip, save_clip
torch.manual_seed(0)
save_clip(build_clip(image_resolution=32, **VIT_B16_SHAPE), sys.argv[1])
EOF
COMMON=(--root "${OUT}/data" --seed 1 --dataset-config-file configs/datasets/world_mixed.yaml)
OPTS=(MODEL.BACKBONE.PATH "${OUT}/vit_b16_32px.pt" INPUT.SIZE "(32,32)" DATASET.NUM_SHOTS 4
      DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 1 DATALOADER.NUM_WORKERS 4 TRAIN.PRINT_FREQ 5)
cfg_of() { case "$1" in ZeroshotCLIP) echo zsclip;; MMRLpp) echo mmrlpp;; *) echo "$1" | tr 'A-Z' 'a-z';; esac; }
for T in ${TRAINERS}; do
    C=$(cfg_of "$T")
    EXTRA=()
    [ "$T" = ZeroshotCLIP ] && EXTRA=(--eval-only)
    echo "== ${T} (configs/${C}.yaml, one GPU)"
    "${PYTHON}" train.py "${COMMON[@]}" --trainer "$T" --config-file "configs/${C}.yaml" \
        --output-dir "${OUT}/runs/${T}" "${EXTRA[@]}" "${OPTS[@]}" | grep -E "^\* accuracy|epoch \[1/1\]|Elapsed" | tail -3
done
echo "== DeAR under torchrun (${GPUS} process(es), NCCL)"
"${PYTHON}" -m torch.distributed.run --standalone --nproc_per_node="${GPUS}" train.py "${COMMON[@]}" --trainer DeAR \
    --config-file configs/dear.yaml --output-dir "${OUT}/runs/DeAR_torchrun" "${OPTS[@]}" \
    | grep -E "^\* accuracy|Elapsed" | tail -2
echo "gpu_smoke.sh: every run finished on $("${PYTHON}" -c 'import torch; print(torch.cuda.get_device_name(0))')"
