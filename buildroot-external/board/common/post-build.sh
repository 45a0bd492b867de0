#!/usr/bin/env bash
# Buildroot post-build script of the re6st firmware
# (BR2_ROOTFS_POST_BUILD_SCRIPT, BR2_ROOTFS_POST_SCRIPT_ARGS="BOARD"):
#
#   post-build.sh TARGET_DIR BOARD
#
# Runs after Buildroot copied the overlay (BR2_ROOTFS_OVERLAY = the
# repository's rootfs/). Finishes the root filesystem as scripts/image.sh
# does for the Debian image, from the same board/BOARD/profile, then checks
# that what the firmware relies on is there: re6st as /sbin/init, openvpn,
# babeld, the `ip` wrapper, and the kernel and busybox options of our
# configuration fragments (kconfig drops an option whose dependencies are
# missing with only a warning).
set -euo pipefail

TARGET_DIR=${1:?usage: post-build.sh TARGET_DIR BOARD}
BOARD=${2:?usage: post-build.sh TARGET_DIR BOARD}
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
load_board "$BOARD"
cd "$TARGET_DIR"

# --- layout -------------------------------------------------------------
# rootfs/README.md documents the overlay; it is not part of it.
rm -f README.md
# git keeps only 644/755.
chmod 640 etc/shadow
# Mount points (init mounts /proc, /sys, /dev, /run, /tmp; /data is the
# data partition) and the writable places of a read-only root.
mkdir -p proc sys dev run tmp root data etc/re6st var
chmod 700 root
chmod 1777 tmp
[ -e var/run ] || [ -L var/run ] || ln -s /run var/run
[ -e var/tmp ] || [ -L var/tmp ] || ln -s /tmp var/tmp
# Buildroot's udhcpc script; ours is rootfs/etc/udhcpc/default.script
# (busybox.fragment makes it udhcpc's default).
rm -rf usr/share/udhcpc
# The status page's /metrics: a directory without an index, which httpd
# hands to www/cgi-bin/index.cgi (as scripts/image.sh).
mkdir -p www/metrics

# --- board profile and release ------------------------------------------
# Lowest-priority profile source, plus `data =` (partition 4 of the
# firmware disk) unless the board sets it, as scripts/image.sh. No
# `modules =` line, unlike the Debian image: our kernel has everything built
# in. Its mtime is the image's build time, below which init never sets the
# clock.
{
  cat "$BOARD_DIR/profile"
  if ! grep -q '^[[:space:]]*data[[:space:]]*=' "$BOARD_DIR/profile"; then
    echo "# added by buildroot-external post-build.sh: partition 4 of the firmware disk"
    echo "data = $(part_of "$DISK_DEVICE" 4)"
  fi
} > etc/re6st/profile
chmod 644 etc/re6st/profile
touch etc/re6st/profile
echo "$BOARD" > etc/hostname
KVER=$(br_config BR2_LINUX_KERNEL_VERSION)
BRVER=$(sed -n 's/^# Buildroot \(.*\) Configuration$/\1/p' "$BR2_CONFIG")
GIT_REV=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
# `re6st init upgrade` accepts an image only if it has
# /lib/modules/<running kernel release> (kernels are not upgraded with the
# root filesystem). Buildroot creates it with modules_install only when the
# kernel has CONFIG_MODULES; ours needs none, so make sure it is there.
KREL_FILE=${BASE_DIR:?not run by Buildroot: BASE_DIR is unset}/build/linux-$KVER/include/config/kernel.release
KREL=
if [ "$(br_config BR2_LINUX_KERNEL)" = y ]; then
  [ -s "$KREL_FILE" ] || die "no $KREL_FILE (kernel not built?)"
  KREL=$(cat "$KREL_FILE")
  mkdir -p "lib/modules/$KREL"
fi
cat > etc/re6st-release <<EOF
BOARD=$BOARD
ARCH=${ARCH:-}
KERNEL=${KREL:-$KVER}
GIT=$GIT_REV
BUILDROOT=$BRVER
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

# --- checks -------------------------------------------------------------
fail=0
problem() { echo "re6st $SELF: $*" >&2; fail=1; }

[ -x usr/bin/re6st ] || problem "no /usr/bin/re6st"
[ -z "$KREL" ] || [ -d "lib/modules/$KREL" ] || problem "no /lib/modules/$KREL (re6st init upgrade needs it)"
if [ "$(readlink -f sbin/init)" != "$(readlink -f usr/bin/re6st)" ]; then
  problem "/sbin/init is not a link to /usr/bin/re6st: $(ls -l sbin/init 2>&1)"
fi
for f in usr/sbin/openvpn usr/sbin/babeld bin/busybox etc/udhcpc/default.script; do
  [ -x "$f" ] || problem "no executable /$f"
done
cmp -s sbin/ip "$REPO_DIR/rootfs/sbin/ip" || problem "/sbin/ip is not rootfs/sbin/ip (the tuntap wrapper)"
[ -x sbin/mkfs.ext4 ] || [ -x usr/sbin/mkfs.ext4 ] ||
  log "warning: no mkfs.ext4 (e2fsprogs): init formats the data partition with busybox mke2fs (ext2)"

# check_fragments CONFIG FRAGMENT...: every CONFIG_X=... line of the
# fragments is in CONFIG as is; every "# CONFIG_X is not set" is not on.
# shellcheck disable=SC2094 # the fragment is only read
check_fragments() {
  local config=$1 frag line sym
  shift
  for frag in "$@"; do
    [ -f "$frag" ] || { problem "no fragment $frag"; continue; }
    while IFS= read -r line; do
      case $line in
        CONFIG_*=*)
          grep -qxF -- "$line" "$config" || problem "${config%/.config}: wanted $line ($(basename "$frag")), got: $(grep "^${line%%=*}=" "$config" || echo 'not set')"
          ;;
        "# CONFIG_"*" is not set")
          sym=${line#\# }
          sym=${sym%% *}
          if grep -q "^$sym=" "$config"; then problem "${config%/.config}: wanted $line, got: $(grep "^$sym=" "$config")"; fi
          ;;
      esac
    done < "$frag"
  done
}

BUILD=${BASE_DIR:?not run by Buildroot: BASE_DIR is unset}/build
if [ "$(br_config BR2_LINUX_KERNEL)" = y ]; then
  kconfig=$BUILD/linux-$KVER/.config
  if [ -f "$kconfig" ]; then
    read -r -a frags <<< "$(br_config BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES)"
    check_fragments "$kconfig" ${frags[@]+"${frags[@]}"}
  else
    problem "no kernel configuration at $kconfig"
  fi
fi
bbconfig=$(find "$BUILD" -maxdepth 2 -path "$BUILD/busybox-*/.config" -print -quit)
if [ -n "$bbconfig" ]; then
  read -r -a frags <<< "$(br_config BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES)"
  check_fragments "$bbconfig" ${frags[@]+"${frags[@]}"}
else
  problem "no busybox configuration under $BUILD"
fi

[ "$fail" = 0 ] || die "the root filesystem is not what the firmware needs (above)"
log "root filesystem of $BOARD finished (profile from $BOARD_DIR)"
