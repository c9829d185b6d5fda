#!/usr/bin/env bash
# DeAR's role and inference ablations (the paper's Tables 5 and 6) on one data set, through the protocol scripts:
#   bash scripts/ablations.sh DATASET SEED [SEED ...] [--variants role none ...] [--roles NAME=FILE ...]
# Environment as for base2new_train.sh (DATA, OUTPUT, SHOTS, OPTS, PYTHON). Runs land in OUTPUT/ablations/<variant>/;
# finished runs are skipped. Ends with a Base / Novel / HM table, mean +- std over the seeds. See tools/ablations.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m tools.ablations "$@"
