# Sourced by scripts/common.sh and scripts/world_common.sh. default_config TRAINER: the name of the config a
# protocol script uses when none is given (configs/<name>.yaml): zsclip for ZeroshotCLIP, else the lower-cased name.
default_config() {
    if [ "$1" = "ZeroshotCLIP" ]; then echo zsclip; else echo "$1" | tr '[:upper:]' '[:lower:]'; fi
}
