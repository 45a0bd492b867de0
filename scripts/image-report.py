#!/usr/bin/env python3
"""Firmware image sizes and boot times per board, for `make bench`.

Reads target/images/<board>/ (rootfs.squashfs, vmlinuz, initramfs.cpio.xz,
usr/bin/re6st in the staged root) and the smoke test's result.txt (the
cold boot: power-on -> kernel -> init -> provisioned). Prints a Markdown
table and writes the same as JSON to the path given.
Usage: image-report.py OUT.json [BOARD...]"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else None


def board_report(board):
    d = os.path.join(ROOT, "target", "images", board)
    r = {"board": board}
    r["rootfs"] = size(os.path.join(d, "rootfs.squashfs"))
    r["kernel"] = size(os.path.join(d, "vmlinuz"))
    r["initramfs"] = size(os.path.join(d, "initramfs.cpio.xz"))
    r["binary"] = size(os.path.join(d, "work", "root", "usr", "bin", "re6st"))
    parts = [r[k] for k in ("rootfs", "kernel", "initramfs") if r[k] is not None]
    r["total"] = sum(parts) if parts else None
    r["rootfs_within_8mib"] = r["rootfs"] is not None and r["rootfs"] <= 8 * MIB
    result = os.path.join(d, "smoke", "result.txt")
    if os.path.exists(result):
        text = open(result).read()
        m = re.search(r"power-on -> kernel ([\d.]+) s, -> init ([\d.]+) s, -> provisioned ([\d.]+) s", text)
        if m:
            r["boot_kernel_s"], r["boot_init_s"], r["boot_provisioned_s"] = map(float, m.groups())
        m = re.search(r"^accelerator: (\w+)", text, re.M)
        r["accelerator"] = m.group(1) if m else None
        r["smoke_passed"] = "FAIL" not in text and text.count("PASS") >= 1
    return r


def fmt(n):
    return "-" if n is None else f"{n:,}".replace(",", " ")


def main():
    out, boards = sys.argv[1], sys.argv[2:]
    images = os.path.join(ROOT, "target", "images")
    if not boards and os.path.isdir(images):
        boards = sorted(b for b in os.listdir(images)
                        if os.path.exists(os.path.join(ROOT, "target", "images", b, "rootfs.squashfs")))
    rows = [board_report(b) for b in boards]
    print("| board | rootfs bytes (<= 8 MiB?) | kernel | initramfs | total | re6st binary | power-on -> kernel / init / provisioned, s | accelerator |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        boot = "-"
        if "boot_provisioned_s" in r:
            boot = f"{r['boot_kernel_s']:.1f} / {r['boot_init_s']:.1f} / {r['boot_provisioned_s']:.1f}"
        print(f"| {r['board']} | {fmt(r['rootfs'])} ({'yes' if r['rootfs_within_8mib'] else 'NO'}) "
              f"| {fmt(r['kernel'])} | {fmt(r['initramfs'])} | {fmt(r['total'])} | {fmt(r['binary'])} "
              f"| {boot} | {r.get('accelerator') or '-'} |")
    with open(out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
