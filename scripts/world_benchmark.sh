#!/usr/bin/env bash
# Every registered method on every world data set, base-to-novel, 3 seeds, through the real protocol scripts;
# then cross-dataset (train on world_mixed, test on the other four, scripts/xd_*.sh) and the Figure-2 heatmap
# of DeAR's fusion weights per data set. Finished runs are cached (the scripts skip them), so an interrupted
# benchmark resumes where it stopped. Numerics are pinned, as in scripts/demo.sh.
#   bash scripts/world_benchmark.sh
# Environment: TRAINERS (default: every registered trainer), DATASETS, SEEDS, XD=0 (skip cross-dataset),
# WORLD_DIR, COOP_EPOCHS, EXTRA_OPTS, SKIP_SETUP=1; DEAR_THREADS (threads per run, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup_env.sh
    . .venv/bin/activate
fi
LABEL=bench
. scripts/world_common.sh
TRAINERS=${TRAINERS:-$(python train.py --list-trainers | paste -sd' ' -)}
DATASETS=${DATASETS:-"world_color world_texture world_shape world_position world_mixed"}
SEEDS=${SEEDS:-"1 2 3"}
SOURCE=world_mixed

world_setup
read -r -a T <<< "${TRAINERS}"; read -r -a D <<< "${DATASETS}"; read -r -a S <<< "${SEEDS}"
TOTAL=$((${#T[@]} * ${#D[@]} * ${#S[@]}))
say "4/5 base-to-novel: ${#T[@]} methods x ${#D[@]} data sets x ${#S[@]} seeds = ${TOTAL} runs"
N=0
for ds in "${D[@]}"; do
    for trainer in "${T[@]}"; do
        for seed in "${S[@]}"; do
            N=$((N + 1))
            LABEL="bench ${N}/${TOTAL}" b2n "${ds}" "${seed}" "${trainer}"
        done
    done
done
echo
python parse_test_res.py "${W}/base2new" --table --csv "${W}/base2new.csv"

if [ "${XD:-1}" = "1" ]; then
    say "5/5 cross-dataset: train on ${SOURCE} (all classes), test on the others"
    for trainer in "${T[@]}"; do
        [ "${trainer}" = ZeroshotCLIP ] && continue  # nothing to train; its numbers are the base2new ones
        for seed in "${S[@]}"; do
            opts=$(method_opts "${trainer}")
            OPTS=${opts} bash scripts/xd_train.sh "${SOURCE}" "${seed}" "${trainer}" | accuracy_of \
                | sed "s/^/$(printf '%-12s %s seed %s: ' "${trainer}" "${SOURCE}" "${seed}")/"
            for ds in "${D[@]}"; do
                [ "${ds}" = "${SOURCE}" ] && continue
                OPTS=${opts} SOURCE=${SOURCE} bash scripts/xd_test.sh "${ds}" "${seed}" "${trainer}" | accuracy_of \
                    | sed "s/^/$(printf '%-12s %s -> %s seed %s: ' "${trainer}" "${SOURCE}" "${ds}" "${seed}")/"
            done
        done
    done
    python -m tools.world_tables xd "${W}/xd" --source "${SOURCE}"
fi

say "Figure 2: DeAR's fusion weights per data set"
python -m tools.world_tables fusion "${W}/base2new/train_base" --out "${W}/figures/fusion_by_dataset.png"
say "done"
