#!/usr/bin/env python3
"""Serial-console driver of qemu-tests/smoke.sh (an expect-like loop).

Connects to QEMU's console socket (QEMU waits for it: the connection is
power-on), logs everything to --log, and:
  1. waits for init's `milestone provisioned` log line;
  2. runs `re6st init status` on the console shell and expects
     `milestones: ... provisioned` and `re6st-node  running`;
  3. runs `re6st init poweroff` and expects QEMU to exit (socket EOF and
     the process gone).
With --overlay, then waits for init's `overlay reached:` line (the node
has an established tunnel and a route to the registry's node) and times
it from power-on. With --wait-for, waits for more console lines before the status; with
--status-expect, the status must match; with --shell, runs that command
instead of poweroff and expects it to end QEMU (a reboot: QEMU runs with
-no-reboot). --mode exit only waits for the kernel and for QEMU to exit
(a boot that must fail and reboot), then checks --expect. With
--clock-tolerance S, reads the guest's `date +%s` on the console and
fails when it differs from the host's clock by more than S seconds.
After the status, logs MemTotal, MemFree and MemAvailable (`meminfo|`).
Every check that fails makes the exit status non-zero: the status must
show the data partition persistent (`data: /data (persistent)`).
Writes timings and the verdict to --result. Exit: 0 pass, 1 fail, 3 no
kernel output within --silence-grace seconds (caller may retry on TCG).
"""
import argparse
import os
import re
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--qemu-pid", type=int, required=True)
    ap.add_argument("--silence-grace", type=float, default=0)
    ap.add_argument("--expect", action="append", default=[],
                    help="regex the console must show before poweroff (repeatable)")
    ap.add_argument("--forbid", action="append", default=[],
                    help="regex the console must not show before poweroff (repeatable)")
    ap.add_argument("--wait-for", action="append", default=[],
                    help="regex to wait for on the console after provisioned (repeatable)")
    ap.add_argument("--status-expect", action="append", default=[],
                    help="regex `re6st init status` must show (repeatable)")
    ap.add_argument("--shell", help="command run instead of poweroff; must end QEMU")
    ap.add_argument("--shell-expect", action="append", default=[],
                    help="regex the --shell command's output must show (repeatable)")
    ap.add_argument("--overlay", action="store_true",
                    help="wait for init's `overlay reached:` line and time it")
    ap.add_argument("--mode", choices=["full", "exit"], default="full")
    ap.add_argument("--clock-tolerance", type=float,
                    help="the guest's clock must be within this many seconds of the host's")
    a = ap.parse_args()

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    log = open(a.log, "wb")
    buf = bytearray()
    marks = {}
    result = []

    def out(msg):
        print(f"console: {msg}", file=sys.stderr, flush=True)
        result.append(msg)

    def finish(code, msg):
        out(msg)
        with open(a.result, "w") as f:
            f.write("\n".join(result) + "\n")
        sys.exit(code)

    def pump(timeout):
        """Reads what is there for up to `timeout` s; False at EOF."""
        s.settimeout(max(0.01, timeout))
        try:
            d = s.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            return False
        if not d:
            return False
        log.write(d)
        log.flush()
        buf.extend(d)
        return True

    def text():
        return buf.decode("utf-8", "replace").replace("\r", "")

    def wait_for(pattern, start=0, limit=None, what=""):
        rx = re.compile(pattern, re.M)
        end = deadline if limit is None else min(deadline, limit)
        while True:
            m = rx.search(text(), start)
            if m:
                return m
            now = time.monotonic()
            if a.silence_grace and "linux version" not in text().lower() and now - t0 > a.silence_grace:
                finish(3, f"no kernel output within {a.silence_grace:.0f} s")
            if now > end:
                finish(1, f"timeout ({now - t0:.1f} s) waiting for {what or pattern}")
            if not pump(min(0.5, end - now)):
                finish(1, f"console closed while waiting for {what or pattern}")

    def wait_exit(after):
        """Reads until the console closes, then expects QEMU gone."""
        while pump(min(1.0, max(0.01, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                finish(1, f"QEMU still running after {after} (timeout)")
        for _ in range(100):
            try:
                os.kill(a.qemu_pid, 0)
            except ProcessLookupError:
                return
            # A zombie (our parent has not reaped it yet) counts as exited.
            try:
                with open(f"/proc/{a.qemu_pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] == "Z":
                        return
            except OSError:
                return
            time.sleep(0.1)
        finish(1, "console closed but QEMU still running")

    def check_console():
        for rx in a.expect:
            if not re.search(rx, text(), re.M):
                finish(1, f"console never showed /{rx}/")
            out(f"console showed /{rx}/")
        for rx in a.forbid:
            if re.search(rx, text(), re.M):
                finish(1, f"console showed forbidden /{rx}/")
            out(f"console did not show /{rx}/")

    wait_for(r"Linux version", what="kernel")
    marks["kernel"] = time.monotonic() - t0
    if a.mode == "exit":
        wait_exit("this boot")
        out(f"power-on -> QEMU exited in {time.monotonic() - t0:.2f} s")
        check_console()
        finish(0, "PASS")
    m = wait_for(r"re6st init \S+ \(root", what="re6st init start")
    marks["init"] = time.monotonic() - t0
    init_end = m.end()
    m = wait_for(r"milestone provisioned", m.end(), what="milestone provisioned")
    marks["provisioned"] = time.monotonic() - t0
    out(f"power-on -> kernel {marks['kernel']:.2f} s, -> init {marks['init']:.2f} s, "
        f"-> provisioned {marks['provisioned']:.2f} s")
    if a.overlay:
        # The node starts once provisioned; init logs this line once, when
        # it first finds it in the overlay (it asks every second).
        m = wait_for(r"overlay reached: .*\(([\d.]+)s after init started\)", init_end,
                     what="init's `overlay reached:` line")
        marks["overlay"] = time.monotonic() - t0
        out(f"power-on -> kernel {marks['kernel']:.2f} s, -> init {marks['init']:.2f} s, "
            f"-> overlay {marks['overlay']:.2f} s (init: {float(m.group(1)):.1f} s after it started)")
    for rx in a.wait_for:
        m = wait_for(rx, what=f"/{rx}/")
        out(f"console showed /{rx}/ after {time.monotonic() - t0:.2f} s")
    # re6st-node starts once provisioned; give it a moment, then ask.
    status = None
    for attempt in range(10):
        time.sleep(1)
        pos = len(text())
        s.sendall(b"\nre6st init status; echo STATUS-END-$((6*7))\n")
        m = wait_for(r"^STATUS-END-42$", pos, what="status output")
        status = text()[pos:m.start()]
        if re.search(r"^re6st-node\s+running\s", status, re.M):
            break
    ok_m = re.search(r"^milestones:.*\bprovisioned\b", status, re.M)
    ok_n = re.search(r"^re6st-node\s+running\s", status, re.M)
    for line in status.splitlines():
        if re.match(r"^(milestones|overlay|data|slot|SERVICE|re6st-|console|wan)", line):
            out("status| " + line)
    if not (ok_m and ok_n):
        finish(1, "status lacks the provisioned milestone or a running re6st-node")
    for rx in a.status_expect:
        if not re.search(rx, status, re.M):
            finish(1, f"status lacks /{rx}/")
        out(f"status showed /{rx}/")
    # A boot that lost its data partition still runs, from RAM: that is a
    # failure here, not a remark.
    if not re.search(r"^data: /data \(persistent\)$", status, re.M):
        finish(1, "status lacks `data: /data (persistent)`: the data partition is not in use")
    out("data partition persistent: yes")
    # The memory the kernel leaves (docs/firmware.md compares kernels).
    pos = len(text())
    s.sendall(b"grep -E '^(MemTotal|MemFree|MemAvailable):' /proc/meminfo; echo MEM-END-$((6*7))\n")
    m = wait_for(r"^MEM-END-42$", pos, what="/proc/meminfo")
    for line in text()[pos:m.start()].splitlines():
        if re.match(r"^Mem\w+:\s+\d+ kB", line):
            out("meminfo| " + " ".join(line.split()))
    marks["status"] = time.monotonic() - t0
    check_console()
    if a.clock_tolerance is not None:
        pos = len(text())
        t_send = time.time()
        s.sendall(b"echo CLOCK-$(date +%s)-$((6*7))\n")
        m = wait_for(r"^CLOCK-(\d+)-42$", pos, what="the guest's date")
        t_recv = time.time()
        # The guest read its clock somewhere between the command leaving and
        # its answer arriving (seconds apart for a TCG guest on a loaded
        # host), and `date +%s` truncates: only outside that window is the
        # clock wrong.
        guest = int(m.group(1))
        off = guest - t_send + 1 if guest + 1 < t_send else max(0.0, guest - t_recv)
        window = f"host {t_send:.1f}..{t_recv:.1f} ({t_recv - t_send:.1f} s round trip)"
        if abs(off) > a.clock_tolerance:
            finish(1, f"guest clock off by {off:+.0f} s (guest {guest}, {window}; "
                      f"tolerance {a.clock_tolerance:.0f} s)")
        out(f"guest clock within {abs(off):.1f} s of the host's ({window}; "
            f"tolerance {a.clock_tolerance:.0f} s)")
    if a.shell:
        pos = len(text())
        s.sendall(a.shell.encode() + b"\n")
        t_cmd = time.monotonic()
        wait_exit("the shell command")
        after = text()[pos:]
        for rx in a.shell_expect:
            if not re.search(rx, after, re.M):
                finish(1, f"the shell command's output lacks /{rx}/")
            out(f"shell command showed /{rx}/")
        out(f"shell command -> QEMU exited in {time.monotonic() - t_cmd:.2f} s")
        finish(0, "PASS")
    s.sendall(b"re6st init poweroff\n")
    t_off = time.monotonic()
    wait_exit("poweroff")
    shutdown = time.monotonic() - t_off
    out(f"poweroff -> QEMU exited in {shutdown:.2f} s")
    finish(0, "PASS")


if __name__ == "__main__":
    main()
