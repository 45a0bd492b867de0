#!/bin/sh
# Writes the firmware disk of the A/B layout (scripts/image.sh and
# buildroot-external's post-image.sh both call this, so the layout the
# initramfs expects is defined once):
#
#   firmware-disk.sh IMAGE ROOTFS SLOT_MIB DATA_MIB
#
# MBR partitions, 1 MiB aligned: 1 boot environment (1 MiB, blank = slot a),
# 2 slot a (ROOTFS), 3 slot b (empty until an upgrade), 4 data (blank: init
# formats it at first boot). IMAGE is sparse.
set -eu
img=$1 rootfs=$2 slot_mib=$3 data_mib=$4
rm -f "$img"
truncate -s "$((1 + 1 + 2 * slot_mib + data_mib))M" "$img"
s=2048 m=2048   # sectors of 512 bytes: 1 MiB
sfdisk -q "$img" >/dev/null <<PARTS
label: dos
unit: sectors
start=$s, size=$m, type=da
start=$((s + m)), size=$((slot_mib * m)), type=83
start=$((s + m + slot_mib * m)), size=$((slot_mib * m)), type=83
start=$((s + m + 2 * slot_mib * m)), size=$((data_mib * m)), type=83
PARTS
dd if="$rootfs" of="$img" bs=1M seek=2 conv=notrunc,sparse status=none
