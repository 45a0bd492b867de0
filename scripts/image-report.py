#!/usr/bin/env python3
"""Firmware image sizes and boot times per board, for `make bench`.

Reads target/images/<board>/ (rootfs.squashfs, vmlinuz, initramfs.cpio.xz,
usr/bin/re6st in the staged root) and the smoke test's result.txt: the
cold boot (blank data partition): power-on -> kernel -> init ->
provisioned, and with SMOKE_OVERLAY=1 -> overlay reached; the warm boot,
i.e. the reboot of the now provisioned router: power-on -> kernel -> init
-> overlay reached (SMOKE_OVERLAY=1). Prints a Markdown table and writes
the same as JSON to the path given.
Usage: image-report.py OUT.json [BOARD...]"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else None


def boot_sections(text):
    """result.txt's sections by boot: {"cold": text, "warm": text, ...}."""
    sections = {}
    for part in re.split(r"^== ", text, flags=re.M)[1:]:
        m = re.match(r"(\w+) boot", part)
        if m:
            sections.setdefault(m.group(1), part)
    return sections


OVERLAY_LINE = r"power-on -> kernel ([\d.]+) s, -> init ([\d.]+) s, -> overlay ([\d.]+) s"


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
        sections = boot_sections(text)
        cold = sections.get("cold", "")
        m = re.search(r"power-on -> kernel ([\d.]+) s, -> init ([\d.]+) s, -> provisioned ([\d.]+) s", cold)
        if m:
            r["boot_kernel_s"], r["boot_init_s"], r["boot_provisioned_s"] = map(float, m.groups())
        m = re.search(OVERLAY_LINE, cold)
        if m:
            r["boot_overlay_s"] = float(m.group(3))
        m = re.search(OVERLAY_LINE, sections.get("warm", ""))
        if m:
            r["reboot_kernel_s"], r["reboot_init_s"], r["reboot_overlay_s"] = map(float, m.groups())
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
    print("| board | rootfs bytes (<= 8 MiB?) | kernel | initramfs | total | re6st binary "
          "| first boot: power-on -> kernel / init / provisioned / overlay, s "
          "| reboot: power-on -> kernel / init / overlay, s | accelerator |")
    print("|---|---|---|---|---|---|---|---|---|")

    def secs(r, *keys):
        """"a / b / c" (s), "-" for each missing; "-" when none is there."""
        if not any(k in r for k in keys):
            return "-"
        return " / ".join(f"{r[k]:.1f}" if k in r else "-" for k in keys)

    for r in rows:
        boot = secs(r, "boot_kernel_s", "boot_init_s", "boot_provisioned_s", "boot_overlay_s")
        reboot = secs(r, "reboot_kernel_s", "reboot_init_s", "reboot_overlay_s")
        print(f"| {r['board']} | {fmt(r['rootfs'])} ({'yes' if r['rootfs_within_8mib'] else 'NO'}) "
              f"| {fmt(r['kernel'])} | {fmt(r['initramfs'])} | {fmt(r['total'])} | {fmt(r['binary'])} "
              f"| {boot} | {reboot} | {r.get('accelerator') or '-'} |")
    with open(out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
