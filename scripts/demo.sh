#!/usr/bin/env bash
# The built-in world, end to end, offline, on a CPU (README command one):
#   1. install the requirements into .venv;
#   2. render the synthetic world's data sets (tools/world.py) in CoOp's layout;
#   3. the tiny CLIP pretrained on the world's image-caption pairs: the shipped one (tools/data/), which
#      tools/pretrain_world_clip.py regenerates bit for bit, or, with STEPS set, a fresh pretraining run;
#   4. discover its head roles with Concept Entropy (head_roles.discover);
#   5. base-to-novel with the real scripts for zero-shot CLIP and DeAR, seeds 1-3, and the table;
#   6. pictures: head-role map, fusion weights, attribute-conditioned retrieval.
# Every stage is cached under output/world; a second run reuses them.
# Knobs (environment): WORLD_DIR, SEEDS, STEPS (set: pretrain afresh instead of using the shipped CLIP),
# PRETRAIN_IMAGES, DISCOVER_IMAGES, EXTRA_OPTS, SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup_env.sh
    . .venv/bin/activate
fi
export PYTHONWARNINGS=ignore CLIP_OFFLINE=1 HF_HUB_OFFLINE=1
W=${WORLD_DIR:-output/world}
SEEDS=${SEEDS:-"1 2 3"}
PRETRAIN_IMAGES=${PRETRAIN_IMAGES:-20000}
DISCOVER_IMAGES=${DISCOVER_IMAGES:-400}

echo "== 1/5 world"
python -m tools.world --root "${W}/data" --corpus-out "${W}/world_corpus.txt"
echo "== 2/5 pretrain tiny CLIP"
if [ -n "${STEPS:-}" ]; then
    python -m tools.pretrain_world_clip --out "${W}/tiny_world_clip.pt" --steps "${STEPS}" --images "${PRETRAIN_IMAGES}"
else
    mkdir -p "${W}" && cp -p tools/data/tiny_world_clip.pt tools/data/tiny_world_clip.pt.json "${W}/"
fi
echo "== 3/5 head roles (Concept Entropy)"
if [ ! -f "${W}/tiny_world_roles.json" ] || [ "${W}/tiny_world_clip.pt" -nt "${W}/tiny_world_roles.json" ]; then
    python -m head_roles.discover --weights "${W}/tiny_world_clip.pt" --images "${W}/data/world_mixed/images" \
        --out "${W}/tiny_world_roles.json" --corpus "${W}/world_corpus.txt" --num-images "${DISCOVER_IMAGES}" --texts-per-head 8
fi
echo "== 4/5 base-to-novel"
export DATA=${W}/data OUTPUT=${W} SHOTS=16
export OPTS="MODEL.BACKBONE.PATH ${W}/tiny_world_clip.pt TRAINER.DEAR.ROLES_FILE ${W}/tiny_world_roles.json \
INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 TRAIN.PRINT_FREQ 50 ${EXTRA_OPTS:-}"
# zero-shot CLIP does not depend on the seed (no training, full test sets): one run is enough
FIRST_SEED=${SEEDS%% *}
bash scripts/base2new_train.sh world_mixed "${FIRST_SEED}" ZeroshotCLIP | grep -E "^\* accuracy|Skip" || true
bash scripts/base2new_test.sh world_mixed "${FIRST_SEED}" ZeroshotCLIP | grep -E "^\* accuracy|Skip" || true
for SEED in ${SEEDS}; do
    bash scripts/base2new_train.sh world_mixed "${SEED}" DeAR | grep -E "^\* accuracy|Skip" || true
    bash scripts/base2new_test.sh world_mixed "${SEED}" DeAR | grep -E "^\* accuracy|Skip" || true
done
echo "== 5/5 pictures"
python -m tools.figures --runs "${W}/base2new/train_base/world_mixed/shots_16/DeAR/dear" \
    --clip "${W}/tiny_world_clip.pt" --roles "${W}/tiny_world_roles.json" --images "${W}/data/world_mixed" \
    --out "${W}/figures" INPUT.SIZE "(32,32)"
echo
python parse_test_res.py "${W}/base2new" --table --csv "${W}/results.csv"
