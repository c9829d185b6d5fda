# Sourced by the protocol scripts: parses "DATASET SEED [TRAINER] [CONFIG]" and the environment.
# Sets DATASET SEED TRAINER CFG DATA OUTPUT SHOTS PYTHON EXTRA (array of KEY VALUE overrides from OPTS).
USAGE="usage: $(basename "$0") DATASET SEED [TRAINER] [CONFIG]"
DATASET=${1:?${USAGE}}
SEED=${2:?${USAGE}}
TRAINER=${3:-DeAR}
. scripts/default_config.sh
CFG=${4:-$(default_config "${TRAINER}")}
DATA=${DATA:-./data}
OUTPUT=${OUTPUT:-./output}
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}
read -r -a EXTRA <<< "${OPTS:-}"

# available DIR: the names of DIR/*.yaml, comma separated
available() {
    local names=() f
    for f in "$1"/*.yaml; do [ -e "${f}" ] && names+=("$(basename "${f}" .yaml)"); done
    local IFS=,
    echo "${names[*]}" | sed 's/,/, /g'
}
if [ ! -f "configs/datasets/${DATASET}.yaml" ]; then
    echo "unknown data set '${DATASET}': no configs/datasets/${DATASET}.yaml; available: $(available configs/datasets)" >&2
    exit 2
fi
if [ ! -f "configs/${CFG}.yaml" ]; then
    if [ -z "${4:-}" ]; then
        echo "no configs/${CFG}.yaml, the default config of trainer '${TRAINER}'; pass CONFIG (available:" \
             "$(available configs)); trainers: $("${PYTHON}" train.py --list-trainers 2>/dev/null | paste -sd, - | sed 's/,/, /g')" >&2
    else
        echo "unknown config '${CFG}': no configs/${CFG}.yaml; available: $(available configs)" >&2
    fi
    exit 2
fi

# skip_if_finished RUN_DIR: exit 0 when the run in RUN_DIR has finished (its log.txt reports a test accuracy;
# the rule of parse_test_res.py, shared through runs.py)
skip_if_finished() {
    local acc
    if acc=$("${PYTHON}" runs.py finished "$1"); then
        echo "Results are available in $1 (accuracy ${acc}%). Skip."
        exit 0
    fi
}

# require_trained MODEL_DIR EPOCH SCRIPT: exit 1 unless MODEL_DIR holds the checkpoints of EPOCH
require_trained() {
    if ! "${PYTHON}" runs.py check "$1" --epoch "$2"; then
        echo "No trained model for epoch $2 in $1; run $3 first" >&2
        exit 1
    fi
}
