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

# load_board BOARD: BOARD_DIR, and board.conf's variables.
load_board() {
  BOARD_DIR=$(board_dir "$1")
  # shellcheck source=/dev/null
  . "$BOARD_DIR/board.conf"
  : "${ROOT_DEVICE:?board.conf}" "${DATA_DEVICE:?board.conf}" "${KERNEL_CONSOLE:?board.conf}"
}

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
