"""A minimal STUN (RFC 5389 + RFC 5780 CHANGE-REQUEST) responder for tests.

miniupnpd refuses to map ports when its WAN address is in a reserved range
(our labs only use 198.18.0.0/15) unless a STUN test shows it sits behind
a full-cone 1:1 NAT. This responder answers binding requests from one of
four sockets (two addresses x two ports) as the CHANGE-REQUEST flags ask,
which is what that test needs.

usage: stun_responder.py IP1 IP2 PORT1 PORT2
"""
import select
import socket
import struct
import sys

ip1, ip2, p1, p2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
socks = {}
for ip in (ip1, ip2):
    for port in (p1, p2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, port))
        socks[(ip, port)] = s
COOKIE = 0x2112A442

while True:
    ready, _, _ = select.select(list(socks.values()), [], [])
    for s in ready:
        data, (src_ip, src_port) = s.recvfrom(2048)
        if len(data) < 20:
            continue
        kind, length, cookie = struct.unpack("!HHI", data[:8])
        if kind != 0x0001:
            continue
        tid = data[8:20]
        change_ip = change_port = False
        pos = 20
        while pos + 4 <= min(len(data), 20 + length):
            atype, alen = struct.unpack("!HH", data[pos:pos + 4])
            if atype == 0x0003 and alen >= 4:
                flags = struct.unpack("!I", data[pos + 4:pos + 8])[0]
                change_ip, change_port = bool(flags & 4), bool(flags & 2)
            pos += 4 + (alen + 3) // 4 * 4
        here_ip, here_port = s.getsockname()
        reply_ip = (ip2 if here_ip == ip1 else ip1) if change_ip else here_ip
        reply_port = (p2 if here_port == p1 else p1) if change_port else here_port
        addr = socket.inet_aton(src_ip)
        mapped = struct.pack("!BBH4s", 0, 1, src_port, addr)
        xaddr = bytes(a ^ b for a, b in zip(addr, struct.pack("!I", COOKIE)))
        xmapped = struct.pack("!BBH4s", 0, 1, src_port ^ (COOKIE >> 16), xaddr)
        attrs = struct.pack("!HH", 0x0001, 8) + mapped + struct.pack("!HH", 0x0020, 8) + xmapped
        reply = struct.pack("!HHI", 0x0101, len(attrs), cookie) + tid + attrs
        socks[(reply_ip, reply_port)].sendto(reply, (src_ip, src_port))
