# Sourced by scripts/demo.sh and scripts/world_benchmark.sh: the world's environment and labelled runs.
# Sets W (WORLD_DIR, default output/world), exports what the protocol scripts read (DATA, OUTPUT, SHOTS, OPTS)
# and pins the numerics of every python process (clipkit.determinism), so the digits are the same on every
# machine and under any load.
. scripts/default_config.sh
export PYTHONWARNINGS=ignore CLIP_OFFLINE=1 HF_HUB_OFFLINE=1 DEAR_NUMERICS=${DEAR_NUMERICS:-pinned}
W=${WORLD_DIR:-output/world}
export DATA=${W}/data OUTPUT=${W} SHOTS=${SHOTS:-16}
# the world's CLIP and roles, 32 px images, no augmentation (the official crop cuts a 32 px object out, the flip
# swaps left and right, which are class names), no loader workers (a 2-core machine); each method's own config
export OPTS="MODEL.BACKBONE.PATH ${W}/tiny_world_clip.pt TRAINER.DEAR.ROLES_FILE ${W}/tiny_world_roles.json \
INPUT.SIZE (32,32) INPUT.TRANSFORMS ('normalize',) DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 500 \
TRAIN.PRINT_FREQ 1000 ${EXTRA_OPTS:-}"
# CoOp's official 200 epochs take minutes per run here and do not move its numbers much past the first few
# dozen; the world runs it for COOP_EPOCHS (with the scaled prompt depths of method_opts, the only departures
# from a method's official config)
COOP_EPOCHS=${COOP_EPOCHS:-20}
START=${SECONDS}
# runs at once (each pinned to one thread, so parallel runs change no digit); failed runs are listed in FAILED
JOBS=${JOBS:-$(nproc)}
FAILED=$(mktemp)

# start_job COMMAND...: COMMAND in the background once fewer than JOBS jobs run (then `wait` for them all)
start_job() {
    while [ "$(jobs -rp | wc -l)" -ge "${JOBS}" ]; do wait -n || true; done
    "$@" &
}

# check_failed: end the script, listing the failed runs, if any failed
check_failed() {
    if [ -s "${FAILED}" ]; then
        say "FAILED runs (their logs are above):"; cat "${FAILED}"; rm -f "${FAILED}"; exit 1
    fi
}

# run_groups FUNCTION: FUNCTION DATASET SEED for every data set of D and seed of S (arrays), JOBS at a time, one
# job per (data set, seed) so that two jobs never share an output folder; then ends the script if a run failed
run_groups() {
    local ds seed
    for ds in "${D[@]}"; do
        for seed in "${S[@]}"; do
            start_job "$1" "${ds}" "${seed}"
        done
    done
    wait
    check_failed
}

# say MESSAGE: a progress line with the elapsed time
say() { printf '[%s %3dm%02ds] %s\n' "${LABEL:-world}" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

# accuracy_of: the accuracy a protocol script's output reports (a finished run, or one it skipped)
accuracy_of() { sed -n 's/^\* accuracy: \([0-9.]*%\).*/\1/p; s/.*(accuracy \([0-9.]*%\))\. Skip\./\1 (cached)/p' | tail -1; }

# method_opts TRAINER [CONFIG]: OPTS plus the world's two departures from a method's config: CoOp's epochs, and
# prompt depths scaled from ViT-B/16's 12 layers to the tiny CLIP's (tools/world_depths.py)
method_opts() {
    local trainer=$1 cfg=${2:-$(default_config "$1")} opts=${OPTS}
    [ "${trainer}" = CoOp ] && opts="${opts} OPTIM.MAX_EPOCH ${COOP_EPOCHS}"
    echo "${opts} $(python -m tools.world_depths "configs/${cfg}.yaml" "${W}/tiny_world_clip.pt.json")"
}

# b2n DATASET SEED TRAINER [CONFIG]: base-to-novel through the real scripts, one labelled line per split
b2n() {
    local ds=$1 seed=$2 trainer=$3 cfg=${4:-} acc log opts
    opts=$(method_opts "${trainer}" "${cfg}")
    log=$(mktemp)
    for split in base new; do
        local script=base2new_train.sh
        [ "${split}" = new ] && script=base2new_test.sh
        if ! OPTS=${opts} bash "scripts/${script}" "${ds}" "${seed}" "${trainer}" ${cfg:+"${cfg}"} > "${log}" 2>&1; then
            tail -20 "${log}" >&2
            say "FAILED: ${trainer} ${ds} seed ${seed} ${split} (${script})"
            rm -f "${log}"
            return 1
        fi
        acc=$(accuracy_of < "${log}")
        say "$(printf '%-12s %-15s seed %s %-4s accuracy %s' "${trainer}" "${ds}" "${seed}" "${split}" "${acc}")"
    done
    rm -f "${log}"
}

# xd SOURCE SEED TRAINER TARGET...: cross-dataset through the real scripts (train on every class of SOURCE, test
# on each TARGET), one labelled line per data set
xd() {
    local source=$1 seed=$2 trainer=$3 target acc log opts
    shift 3
    opts=$(method_opts "${trainer}")
    log=$(mktemp)
    for target in "${source}" "$@"; do
        if [ "${target}" = "${source}" ]; then
            OPTS=${opts} bash scripts/xd_train.sh "${source}" "${seed}" "${trainer}" > "${log}" 2>&1
        else
            OPTS=${opts} SOURCE=${source} bash scripts/xd_test.sh "${target}" "${seed}" "${trainer}" > "${log}" 2>&1
        fi || {
            tail -20 "${log}" >&2
            say "FAILED: ${trainer} ${source} -> ${target} seed ${seed}"
            rm -f "${log}"
            return 1
        }
        acc=$(accuracy_of < "${log}")
        say "$(printf '%-12s %-15s seed %s %-18s accuracy %s' "${trainer}" "${source}" "${seed}" "-> ${target}" \
            "${acc}")"
    done
    rm -f "${log}"
}

# world_stamp: what every cached result depends on (the data sets' settings, the CLIP's digest, the options),
# kept in ${W}/world.stamp; results and roles made under another stamp (an older world, another CLIP, other
# options) are removed rather than silently reported again by the protocol scripts' skip of finished runs
world_stamp() {
    local stamp old
    stamp=$(cat "${DATA}"/*/world.json <(python -c "import json, sys; print(json.load(open(sys.argv[1]))['sha256'])" \
        "${W}/tiny_world_clip.pt.json") <(echo "${OPTS} ${COOP_EPOCHS}") | cksum)
    old=$(cat "${W}/world.stamp" 2> /dev/null || true)
    if [ "${old}" != "${stamp}" ] && { [ -e "${W}/base2new" ] || [ -e "${W}/xd" ] || [ -e "${W}/roles" ] \
            || [ -e "${W}/tiny_world_roles.json" ]; }; then
        say "the world, its CLIP or the options changed: removing results and roles made under the old ones"
        rm -rf "${W}/base2new" "${W}/xd" "${W}/roles" "${W}/tiny_world_roles.json"
    fi
    echo "${stamp}" > "${W}/world.stamp"
}

# world_setup: stages 1-3 (cached): the data sets (seen through WORLD_DOMAIN if set: tools.world --domain), the
# tiny CLIP (shipped; CLIP_FILE, one made before; or pretrained afresh with STEPS set: the shipped recipe, STEPS
# steps per stage, tools.pretrain_world_clip --chain), its head roles by Concept Entropy
world_setup() {
    say "1/5 world data sets"
    python -m tools.world --root "${DATA}" --corpus-out "${W}/world_corpus.txt" --seeds-out "${W}/world_seeds.json" \
        --domain "${WORLD_DOMAIN:-}"
    say "2/5 tiny CLIP"
    if [ -z "${CLIP_FILE:-}" ] && [ -n "${STEPS:-}" ]; then
        python -m tools.pretrain_world_clip --chain --out "${W}/tiny_world_clip.pt" --steps "${STEPS}" \
            --images "${PRETRAIN_IMAGES:-20000}" 2> "${W}/pretrain.log"  # the progress bar goes to the log
    else  # the shipped CLIP, or CLIP_FILE: one made before (with its .json beside it)
        local clip=${CLIP_FILE:-tools/data/tiny_world_clip.pt}
        [ -f "${clip}" ] && [ -f "${clip}.json" ] || {
            echo "error: CLIP_FILE=${clip}: no such file or no ${clip}.json beside it; give a CLIP written" \
                "by python -m tools.pretrain_world_clip" >&2; exit 1; }
        if ! cmp -s "${clip}" "${W}/tiny_world_clip.pt"; then
            mkdir -p "${W}" && cp -p "${clip}" "${W}/tiny_world_clip.pt"
            cp -p "${clip}.json" "${W}/tiny_world_clip.pt.json"
        fi
    fi
    world_stamp
    say "3/5 head roles (Concept Entropy)"
    world_discover
}

# world_discover: the CLIP's head roles (${W}/tiny_world_roles.json), rediscovered when the CLIP, the corpus, the
# seeds or the discovery options change (${W}/roles.stamp); when the roles then differ, every result made with the
# old ones (DeAR's, and the role-routed runs) is removed
world_discover() {
    local DISCOVER_IMAGES=${DISCOVER_IMAGES:-400}
    local disc_opts="--num-images ${DISCOVER_IMAGES} --texts-per-head 8 --cluster-selection leaf"
    local rstamp
    rstamp=$(cat "${W}/tiny_world_clip.pt.json" "${W}/world_corpus.txt" "${W}/world_seeds.json" \
        <(echo "${disc_opts}") | cksum)
    if [ ! -f "${W}/tiny_world_roles.json" ] || [ "$(cat "${W}/roles.stamp" 2> /dev/null)" != "${rstamp}" ]; then
        local new="${W}/tiny_world_roles.new.json"  # the old roles stay until the new ones are complete
        # shellcheck disable=SC2086  # disc_opts is a list of options
        python -m head_roles.discover --weights "${W}/tiny_world_clip.pt" --images "${DATA}/world_mixed/images" \
            --out "${new}" --corpus "${W}/world_corpus.txt" --seeds "${W}/world_seeds.json" \
            --cache-dir "${W}/tiny_world_roles.json.cache" ${disc_opts} > "${W}/discover.log" 2>&1 \
            || { tail -20 "${W}/discover.log" >&2; exit 1; }
        tail -2 "${W}/discover.log" | sed "s#${new}#${W}/tiny_world_roles.json#; s#${new%.json}.png#${W}/tiny_world_roles.png#"
        if [ -f "${W}/tiny_world_roles.json" ] && ! python -c "import sys; from head_roles import load_roles as L
sys.exit(L(sys.argv[1]).digest != L(sys.argv[2]).digest)" "${W}/tiny_world_roles.json" "${new}"; then
            say "the head roles changed: removing DeAR's results and the role-routed runs made with the old ones"
            rm -rf "${W}"/base2new/*/*/*/DeAR "${W}"/xd/*/*/*/DeAR "${W}/roles"
        fi
        mv "${new%.json}.png" "${W}/tiny_world_roles.png"
        mv "${new}" "${W}/tiny_world_roles.json"
        echo "${rstamp}" > "${W}/roles.stamp"
    fi
}
