# Shared by post-build.sh and post-image.sh (sourced, bash).
# shellcheck shell=bash

EXT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REPO_DIR=$(cd "$EXT_DIR/.." && pwd)
SELF=${0##*/}

die() { echo "re6st $SELF: error: $*" >&2; exit 1; }
log() { echo "re6st $SELF: $*" >&2; }

# board_dir BOARD: the repository's board/BOARD, shared with
# scripts/image.sh, else this tree's (boards the Debian image has not got).
board_dir() {
  if [ -f "$REPO_DIR/board/$1/board.conf" ]; then
    echo "$REPO_DIR/board/$1"
  elif [ -f "$EXT_DIR/board/$1/board.conf" ]; then
    echo "$EXT_DIR/board/$1"
  else
    die "no board '$1': neither $REPO_DIR/board/$1/board.conf nor $EXT_DIR/board/$1/board.conf"
  fi
}

# load_board BOARD: BOARD_DIR, and board.conf's variables: DISK_DEVICE (the
# firmware disk as the guest sees it, e.g. /dev/vda), SLOT_SIZE (default
# 16M, as scripts/image.sh), DATA_SIZE (default 64M), KERNEL_CONSOLE...
load_board() {
  BOARD_DIR=$(board_dir "$1")
  # shellcheck source=/dev/null
  . "$BOARD_DIR/board.conf"
  if [ -z "${DISK_DEVICE:-}" ] && [ -n "${ROOT_DEVICE:-}${DATA_DEVICE:-}" ]; then
    die "$BOARD_DIR/board.conf has ROOT_DEVICE/DATA_DEVICE, the layout before A/B slots: set DISK_DEVICE (and SLOT_SIZE, DATA_SIZE) instead"
  fi
  : "${DISK_DEVICE:?board.conf}" "${KERNEL_CONSOLE:?board.conf}"
  SLOT_SIZE=${SLOT_SIZE:-16M}
  DATA_SIZE=${DATA_SIZE:-64M}
}

# part_of DISK N: partition N's device (vda -> vda1, mmcblk0 -> mmcblk0p1),
# as scripts/image.sh and board/common/initramfs-init.
part_of() { case $1 in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac; }

# br_config NAME: the value of NAME in Buildroot's .config, unquoted, with
# $(BR2_EXTERNAL_RE6ST_PATH) expanded; empty when unset.
br_config() {
  local v
  v=$(sed -n "s/^$1=//p" "${BR2_CONFIG:?not run by Buildroot: BR2_CONFIG is unset}")
  v=${v#\"}
  v=${v%\"}
  # shellcheck disable=SC2016 # the literal text Buildroot leaves unexpanded
  echo "${v//'$(BR2_EXTERNAL_RE6ST_PATH)'/$EXT_DIR}"
}
