#!/usr/bin/env python3
"""netem's loss, delay with jitter and reordering, in user space, for
kernels built without sch_netem (as this test machine's): packets sent to
NFQUEUE queue 0 of this network namespace (an iptables rule) are dropped
with probability LOSS, let through at once with probability REORDER, or
else held DELAY ms (normal, sigma JITTER ms) before being accepted; as the
verdicts fall due out of order, jitter reorders packets too.

Usage: impair.py LOSS REORDER DELAY_MS JITTER_MS (probabilities in 0..1).
Prints "ready" once bound, then a line of counts on SIGTERM.
Speaks nfnetlink_queue directly (no library): bind, copy metadata only,
verdicts by packet id.
"""

import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
QUEUE = 0

loss, reorder, delay, jitter = (float(a) for a in sys.argv[1:5])
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
sock.bind((0, 0))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
seq = 0


def attr(kind, data):
    a = struct.pack("HH", 4 + len(data), kind) + data
    return a + b"\0" * (-len(a) % 4)


def send(msg, attrs, flags=NLM_F_REQUEST):
    global seq
    seq += 1
    body = struct.pack("BBH", socket.AF_UNSPEC, 0, socket.htons(QUEUE)) + attrs
    hdr = struct.pack("IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0)
    sock.send(hdr + body)


def ack():
    data = sock.recv(65536)
    kind = struct.unpack_from("H", data, 4)[0]
    if kind == NLMSG_ERROR:
        err = struct.unpack_from("i", data, 16)[0]
        if err:
            sys.exit(f"nfqueue config: {os.strerror(-err)}")


send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_CMD, struct.pack("BBH", NFQNL_CFG_CMD_BIND, 0, 0)),
     NLM_F_REQUEST | NLM_F_ACK)
ack()
send(NFQNL_MSG_CONFIG, attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
     NLM_F_REQUEST | NLM_F_ACK)
ack()


def verdict(pid, v):
    send(NFQNL_MSG_VERDICT, attr(NFQA_VERDICT_HDR, struct.pack(">II", v, pid)))


counts = {"dropped": 0, "at once": 0, "delayed": 0}
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
held = []  # (due, packet id)
while not stop:
    now = time.monotonic()
    while held and held[0][0] <= now:
        verdict(heapq.heappop(held)[1], NF_ACCEPT)
    timeout = max(0.0, held[0][0] - now) if held else 1.0
    try:
        ready, _, _ = select.select([sock], [], [], timeout)
    except InterruptedError:
        continue
    if not ready:
        continue
    data = sock.recv(65536)
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("IH", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    pid = struct.unpack_from(">I", data, a + 4)[0]
                    r = random.random()
                    if r < loss:
                        counts["dropped"] += 1
                        verdict(pid, NF_DROP)
                    elif r < loss + reorder:
                        counts["at once"] += 1
                        verdict(pid, NF_ACCEPT)
                    else:
                        counts["delayed"] += 1
                        d = max(0.0, random.gauss(delay, jitter)) / 1000
                        heapq.heappush(held, (time.monotonic() + d, pid))
                    break
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
for _, pid in held:
    verdict(pid, NF_ACCEPT)
print(counts, flush=True)
