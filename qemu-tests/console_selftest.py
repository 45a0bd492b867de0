#!/usr/bin/env python3
"""Checks that console.py's verdict is its exit status: a fake guest on a
unix socket plays a boot (kernel, init, `milestone provisioned`, with
overlay=True init's `overlay reached:` line a moment later, answers
to `re6st init status` and `date +%s`, poweroff), and each case expects
console.py to pass or fail. No root, no QEMU; a few seconds.

    python3 qemu-tests/console_selftest.py
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

STATUS = """re6st init 0 (root /, pid 1)
hostname: fake
data: {data}
milestones: network clock provisioned
SERVICE      STATE
re6st-node   running  pid 99
slot: booted a, active a
"""


def fake_guest(sock_path, data, clock_offset, qemu, console_delay=0.0, overlay=False):
    """Serves one console connection like a booting router, then ends
    `qemu` (the stand-in for the QEMU process) at poweroff. The clock
    answer leaves `console_delay` s after the guest read its clock (a TCG
    guest on a loaded host)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        c.sendall(b"Linux version 6.1.0-fake\r\nre6st init 0 (root /, pid 1)\r\n"
                  b"milestone provisioned\r\n")
        if overlay:
            time.sleep(0.5)
            c.sendall(b"INFO overlay reached: an established tunnel and a route to the "
                      b"registry's node (4.2s after init started)\r\n")
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.decode()
                c.sendall(line.encode() + b"\r\n")  # the shell's echo
                if line.startswith("re6st init status"):
                    c.sendall(STATUS.format(data=data).replace("\n", "\r\n").encode()
                              + b"STATUS-END-42\r\n")
                elif line.startswith("grep -E '^(MemTotal"):
                    c.sendall(b"MemTotal:          60000 kB\r\nMemFree:           30000 kB\r\n"
                              b"MemAvailable:      40000 kB\r\nMEM-END-42\r\n")
                elif line.startswith("echo CLOCK-"):
                    now = int(time.time() + clock_offset)
                    time.sleep(console_delay)
                    c.sendall(f"CLOCK-{now}-42\r\n".encode())
                elif line.startswith("re6st init poweroff"):
                    qemu.kill()
                    qemu.wait()
                    c.close()
                    srv.close()
                    return
    threading.Thread(target=serve, daemon=True).start()


def run_case(name, want_rc, data="/data (persistent)", clock_offset=0.0, console_delay=0.0,
             args=(), overlay=False, timeout=30, want_result=None):
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "console.sock")
        qemu = subprocess.Popen(["sleep", "60"])
        fake_guest(sock, data, clock_offset, qemu, console_delay, overlay)
        p = subprocess.run([sys.executable, os.path.join(HERE, "console.py"), "--socket", sock,
                            "--log", os.path.join(d, "console.log"), "--result",
                            os.path.join(d, "result.txt"), "--timeout", str(timeout),
                            "--qemu-pid", str(qemu.pid), *args],
                           capture_output=True, text=True, timeout=60)
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        verdict = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        ok = p.returncode == want_rc
        if want_result is not None:
            with open(os.path.join(d, "result.txt")) as f:
                found = re.search(want_result, f.read(), re.M)
            ok = ok and found is not None
            verdict += f"; result {'has' if found else 'LACKS'} /{want_result}/"
        print(f"{'ok' if ok else 'WRONG'}: {name}: exit {p.returncode} (want {want_rc}): {verdict}")
        if not ok:
            print(p.stderr, file=sys.stderr)
        return ok


def main():
    cases = [
        ("persistent data", 0, {}),
        ("data in RAM only", 1, {"data": "/run/re6st-data (RAM only)"}),
        ("clock right", 0, {"args": ["--clock-tolerance", "5"]}),
        ("clock right, answer 8 s late", 0,
         {"console_delay": 8, "args": ["--clock-tolerance", "5"]}),
        ("clock 7 s behind, answer at once", 1,
         {"clock_offset": -7, "args": ["--clock-tolerance", "5"]}),
        ("clock 1000 s behind", 1, {"clock_offset": -1000, "args": ["--clock-tolerance", "5"]}),
        ("clock at 1970", 1, {"clock_offset": -time.time() + 60, "args": ["--clock-tolerance", "5"]}),
        ("overlay reached, timed", 0,
         {"overlay": True, "args": ["--overlay"],
          "want_result": r"^power-on -> kernel [\d.]+ s, -> init [\d.]+ s, -> overlay [\d.]+ s "
                         r"\(init: 4\.2 s after it started\)$"}),
        ("overlay never reached", 1, {"args": ["--overlay"], "timeout": 3}),
    ]
    results = [run_case(n, rc, **kw) for n, rc, kw in cases]
    if not all(results):
        print("console_selftest: FAIL", file=sys.stderr)
        return 1
    print(f"console_selftest: PASS ({len(results)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
