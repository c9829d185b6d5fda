#!/usr/bin/env bash
# The built-in world, end to end, offline, on a CPU (README command one):
#   1. install the requirements into .venv;
#   2. render the world's data sets (tools/world.py) in CoOp's layout;
#   3. the tiny CLIP pretrained on the world's image-caption pairs: the shipped one (tools/data/), which
#      tools/pretrain_world_clip.py --chain regenerates bit for bit, or, with STEPS set, that recipe run afresh
#      with STEPS steps per stage;
#   4. discover its head roles with Concept Entropy (head_roles.discover);
#   5. base-to-novel on world_mixed with the real scripts: zero-shot CLIP, CoOp and DeAR, seeds 1-3, the table;
#   6. pictures: head-role map, fusion weights, attribute-conditioned retrieval.
# Every stage is cached under output/world; a second run reuses them. Numerics are pinned (clipkit.determinism),
# so the table is the same, digit for digit, on every machine.
# Knobs (environment): WORLD_DIR, SEEDS, STEPS (set: pretrain afresh instead of using the shipped CLIP; 2400:
# the shipped file again),
# PRETRAIN_IMAGES, DISCOVER_IMAGES, EXTRA_OPTS, SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup_env.sh
    . .venv/bin/activate
fi
LABEL=demo
. scripts/world_common.sh
SEEDS=${SEEDS:-"1 2 3"}

world_setup
say "4/5 base-to-novel on world_mixed (method, seed, split)"
# zero-shot CLIP does not depend on the seed (no training, full test sets): one run is enough
b2n world_mixed "${SEEDS%% *}" ZeroshotCLIP
for SEED in ${SEEDS}; do
    b2n world_mixed "${SEED}" CoOp
    b2n world_mixed "${SEED}" DeAR
done
say "5/5 pictures"
python -m tools.figures --runs "${W}/base2new/train_base/world_mixed/shots_16/DeAR/dear" \
    --clip "${W}/tiny_world_clip.pt" --roles "${W}/tiny_world_roles.json" --images "${DATA}/world_mixed" \
    --out "${W}/figures" INPUT.SIZE "(32,32)" | tail -6
echo
python parse_test_res.py "${W}/base2new" --table --csv "${W}/results.csv"
say "done"
