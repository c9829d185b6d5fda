#!/usr/bin/env bash
# Every registered method on every world data set, base-to-novel, 3 seeds, through the real protocol scripts;
# then cross-dataset (train on world_mixed, test on the other four, scripts/xd_*.sh) and the Figure-2 heatmap
# of DeAR's fusion weights per data set. Finished runs are cached (the scripts skip them), so an interrupted
# benchmark resumes where it stopped. Numerics are pinned, as in scripts/demo.sh.
#   bash scripts/world_benchmark.sh
# Environment: TRAINERS (default: every registered trainer), DATASETS, SEEDS, XD=0 (skip cross-dataset), XD_SEEDS
# (default: the first of SEEDS; XD_SEEDS="1 2 3" for the full cross-dataset table, about 28 more minutes here),
# WORLD_DIR, COOP_EPOCHS, EXTRA_OPTS, SKIP_SETUP=1; JOBS (runs at once, default: the core count); DEAR_THREADS
# (threads per run, default 1); for calibration studies: WORLD_DOMAIN (e.g. "shape_rotation=180"), CLIP_FILE (a
# world CLIP made before) or STEPS (pretrain one afresh: the shipped recipe, STEPS steps per stage).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup_env.sh
    . .venv/bin/activate
fi
LABEL=bench
. scripts/world_common.sh
TRAINERS=${TRAINERS:-$(python train.py --list-trainers | paste -sd' ' -)}
# world_mixed first: its runs are the longest (three times the images), so the jobs end together
DATASETS=${DATASETS:-"world_mixed world_color world_texture world_shape world_position"}
SEEDS=${SEEDS:-"1 2 3"}
XD_SEEDS=${XD_SEEDS:-${SEEDS%% *}}
SOURCE=world_mixed

world_setup
read -r -a T <<< "${TRAINERS}"; read -r -a D <<< "${DATASETS}"; read -r -a S <<< "${SEEDS}"
TOTAL=$((${#T[@]} * ${#D[@]} * ${#S[@]}))
say "4/5 base-to-novel: ${#T[@]} methods x ${#D[@]} data sets x ${#S[@]} seeds = ${TOTAL} runs, ${JOBS} at a time"
# one job per (data set, seed), running every method in turn
run_group() {
    local ds=$1 seed=$2 trainer
    for trainer in "${T[@]}"; do
        LABEL="bench ${ds} ${seed}" b2n "${ds}" "${seed}" "${trainer}" || echo "${trainer} ${ds} ${seed}" >> "${FAILED}"
    done
}
run_groups run_group
echo
python -m tools.world_tables b2n "${W}/base2new"
python parse_test_res.py "${W}/base2new" --table --csv "${W}/base2new.csv" > /dev/null

if [ "${XD:-1}" = "1" ]; then
    say "5/5 cross-dataset: train on ${SOURCE} (all classes), test on the others, seeds ${XD_SEEDS}"
    targets=()
    for ds in "${D[@]}"; do [ "${ds}" != "${SOURCE}" ] && targets+=("${ds}"); done
    xd_job() { LABEL="xd $1 $2" xd "${SOURCE}" "$2" "$1" "${targets[@]}" || echo "xd $1 seed $2" >> "${FAILED}"; }
    for trainer in "${T[@]}"; do
        [ "${trainer}" = ZeroshotCLIP ] && continue  # nothing to train; its numbers are the base2new ones
        for seed in ${XD_SEEDS}; do
            start_job xd_job "${trainer}" "${seed}"
        done
    done
    wait
    check_failed
    echo
    python -m tools.world_tables xd "${W}/xd" --source "${SOURCE}"
fi

say "Figure 2: DeAR's fusion weights per data set"
python -m tools.world_tables fusion "${W}/base2new/train_base" --out "${W}/figures/fusion_by_dataset.png"
say "done"
