#!/usr/bin/env bash
# Issue "results nobody has": each method whose prompts reach the vision encoder's attention, without and with
# DeAR's head roles routing its prompts (TRAINER.<NODE>.MASK role, the world's discovered roles file), base-to-
# novel on world data sets, 3 seeds, through the real scripts. Runs without roles are the benchmark's own
# (OUTPUT=${W}, made here if missing); runs with roles go to ${W}/roles. Ends with the side-by-side table.
#   bash scripts/world_roles.sh
# Environment: TRAINERS (default: IVLP MaPLe PromptSRC MMRL MMRLpp), DATASETS (default: world_mixed world_color),
# SEEDS, JOBS (default: the core count), WORLD_DIR, EXTRA_OPTS, SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup_env.sh
    . .venv/bin/activate
fi
LABEL=roles
. scripts/world_common.sh
TRAINERS=${TRAINERS:-"IVLP MaPLe PromptSRC MMRL MMRLpp"}
DATASETS=${DATASETS:-"world_mixed world_color"}
SEEDS=${SEEDS:-"1 2 3"}
world_setup
read -r -a T <<< "${TRAINERS}"; read -r -a D <<< "${DATASETS}"; read -r -a S <<< "${SEEDS}"
say "4/4 ${#T[@]} methods x ${#D[@]} data sets x ${#S[@]} seeds, without and with role routing, ${JOBS} at a time"
# the config node of each trainer (its TRAINER.<NODE> keys; trainers/*.py)
node_of() { if [ "$1" = MMRLpp ]; then echo MMRLpp; else echo "$1" | tr '[:lower:]' '[:upper:]'; fi; }
run_group() {
    local ds=$1 seed=$2 trainer node routed
    for trainer in "${T[@]}"; do
        node=$(node_of "${trainer}")
        routed="TRAINER.${node}.ROLES_FILE ${W}/tiny_world_roles.json TRAINER.${node}.MASK role"
        LABEL="roles ${ds} ${seed} none" b2n "${ds}" "${seed}" "${trainer}" \
            || echo "${trainer} ${ds} ${seed} none" >> "${FAILED}"
        OUTPUT=${W}/roles OPTS="${OPTS} ${routed}" LABEL="roles ${ds} ${seed} role" \
            b2n "${ds}" "${seed}" "${trainer}" || echo "${trainer} ${ds} ${seed} role" >> "${FAILED}"
    done
}
run_groups run_group
echo
python -m tools.world_tables roles "${W}/base2new" "${W}/roles/base2new"
say "done"
