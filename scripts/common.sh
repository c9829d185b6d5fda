# Sourced by the protocol scripts: parses "DATASET SEED [TRAINER] [CONFIG]" and the environment.
# Sets DATASET SEED TRAINER CFG DATA OUTPUT SHOTS PYTHON EXTRA (array of KEY VALUE overrides from OPTS).
USAGE="usage: $(basename "$0") DATASET SEED [TRAINER] [CONFIG]"
DATASET=${1:?${USAGE}}
SEED=${2:?${USAGE}}
TRAINER=${3:-DeAR}
if [ "${TRAINER}" = "ZeroshotCLIP" ]; then
    CFG=${4:-zsclip}
else
    CFG=${4:-$(echo "${TRAINER}" | tr '[:upper:]' '[:lower:]')}
fi
DATA=${DATA:-./data}
OUTPUT=${OUTPUT:-./output}
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}
read -r -a EXTRA <<< "${OPTS:-}"
[ -f "configs/datasets/${DATASET}.yaml" ] || { echo "no configs/datasets/${DATASET}.yaml" >&2; exit 2; }
[ -f "configs/${CFG}.yaml" ] || { echo "no configs/${CFG}.yaml" >&2; exit 2; }

# skip_if_finished RUN_DIR: exit 0 when its log.txt already reports an accuracy
skip_if_finished() {
    if [ -f "$1/log.txt" ] && grep -q "^\* accuracy" "$1/log.txt"; then
        echo "Results are available in $1. Skip."
        exit 0
    fi
}
