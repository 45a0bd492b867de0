#!/usr/bin/env python3
"""Multi-router QEMU labs: a declarative topology (qemu-tests/topologies/
*.toml, format in qemu-tests/README.md), a runner that builds the virtual
network (network namespaces, bridges, veths, QEMU taps), boots the routers'
firmware images and drives them through their serial consoles.

  lab.py up   TOPO            interactive: boot, print attach commands and
                              the overlay (text, DOT, SVG), wait for Ctrl-C
  lab.py test TOPO SCEN,...   scenarios (connectivity, cut, poweroff,
                              reboot, registry-down, upgrade); exit 1 on
                              the first failure

Needs root. Python 3.11 stdlib only. Environment: LAB_IMAGES (default
ROOT/target/images: BOARD/firmware.img, vmlinuz, ...), RE6ST_HOST_BIN
(registry and its node; default ROOT/target/debug/re6st), LAB_ACCEL
(auto | kvm | tcg), LAB_OUT (logs; default ROOT/target/lab/TOPO-NAME),
LAB_KEEP=1 (keep the work directory).
"""
import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = time.monotonic()


def log(msg):
    print(f"lab[{time.monotonic() - T0:7.1f}s]: {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


def sh(cmd, check=True, ns=None, timeout=60):
    """Runs an argv (list) or a shell line (str), in namespace `ns`."""
    argv = cmd if isinstance(cmd, list) else ["sh", "-c", cmd]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise Fail(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def wait_until(what, timeout, fn, every=1.0):
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Fail as e:
            last = e
        if time.monotonic() > end:
            raise Fail(f"timeout ({timeout:.0f} s) waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(every)


def board_conf(board):
    path = os.path.join(ROOT, "board", board, "board.conf")
    if not os.path.exists(path):
        raise Fail(f"unknown board {board} (no {path})")
    keys = ["QEMU_SYSTEM", "QEMU_MACHINE", "QEMU_ACCEL", "QEMU_MEM", "QEMU_NET_DEVICE",
            "QEMU_BLK_DEVICE", "WAN_IF", "KERNEL_CONSOLE", "QEMU_FW_CFG", "SMOKE_CONFIG_DISK"]
    out = subprocess.run(["bash", "-c", '. "$0"; shift; for k; do printf "%s\\0" "${!k}"; done',
                          path, "x"] + keys, capture_output=True, text=True, check=True).stdout
    return dict(zip(keys, out.split("\0")))


def kvm_usable():
    """As smoke.sh: /dev/kvm from kvm_pvm (no VMX/SVM) cannot run Debian's
    kernel, so TCG there."""
    if not os.access("/dev/kvm", os.W_OK):
        return False
    if os.path.isdir("/sys/module/kvm_pvm") and not (
            os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")):
        return False
    return True


# --- topology ---------------------------------------------------------------

def load_topology(path):
    with open(path, "rb") as f:
        t = tomllib.load(f)
    t.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    t.setdefault("network", "2001:db8:42::/48")
    t.setdefault("underlay", "198.18.0.0/24")
    t.setdefault("registry_args", ["--hello", "4", "--client-count", "2"])
    under = ipaddress.ip_network(t["underlay"])
    ok4 = ipaddress.ip_network("198.18.0.0/15")
    if not under.subnet_of(ok4):
        raise Fail(f"underlay {under} not inside {ok4}")
    if not ipaddress.ip_network(t["network"]).subnet_of(ipaddress.ip_network("2001:db8::/32")):
        raise Fail("network must be inside 2001:db8::/32")
    hosts = list(under.hosts())
    t["registry_ip"] = str(hosts[0])
    nats = {}
    for i, n in enumerate(t.get("nat", [])):
        n.setdefault("address", str(hosts[1 + i]))
        priv = ipaddress.ip_network(n["private"])
        if not priv.subnet_of(ok4):
            raise Fail(f"nat {n['name']}: {priv} not inside {ok4}")
        n["_hosts"] = list(priv.hosts())
        n["_next"] = 1
        nats[n["name"]] = n
    t["_nats"] = nats
    names = set()
    for i, r in enumerate(t.get("router", [])):
        if r["name"] in names or not re.fullmatch(r"[a-z][a-z0-9]{0,5}", r["name"]):
            raise Fail(f"router name {r['name']!r}: duplicate, or not [a-z][a-z0-9]{{0,5}}")
        names.add(r["name"])
        r.setdefault("board", "qemu-x86_64")
        r.setdefault("lan_clients", 0)
        r.setdefault("lan", r["lan_clients"] > 0)
        if r.get("nat"):
            n = nats[r["nat"]]
            r["address"] = str(n["_hosts"][n["_next"]])
            n["_next"] += 1
            r["gateway"] = str(n["_hosts"][0])
            r["prefixlen"] = ipaddress.ip_network(n["private"]).prefixlen
        else:
            r.setdefault("address", str(hosts[10 + i]))
            r["gateway"] = t["registry_ip"]
            r["prefixlen"] = under.prefixlen
    if not t.get("router"):
        raise Fail("no [[router]]")
    # Environment overrides, for running one topology per board and memory
    # size (make bench's memory section): LAB_BOARD, QEMU_MEM (MiB).
    for r in t["router"]:
        r["board"] = os.environ.get("LAB_BOARD") or r["board"]
        r["memory"] = str(os.environ.get("QEMU_MEM") or r.get("memory", ""))
    # Nodes on the host (our binary, one namespace each, public addresses
    # from .100): peers enough for a router's full client count while only
    # the routers are emulated.
    n_host = t.setdefault("host_nodes", 0)
    if not 0 <= n_host <= 100:
        raise Fail(f"host_nodes = {n_host}: 0 to 100")
    t["_host_nodes"] = [{"name": f"h{i + 1}", "address": str(hosts[100 + i])} for i in range(n_host)]
    # Their options (e.g. a smaller --client-count, so that fewer of them
    # take the first router's server and it opens its own client tunnels);
    # the last `late_host_nodes` start only once that router has
    # provisioned, with it as their --neighbour, and nothing else: each
    # adds one client on its server for sure.
    t.setdefault("host_node_args", [])
    if not 0 <= t.setdefault("late_host_nodes", 0) <= n_host:
        raise Fail(f"late_host_nodes = {t['late_host_nodes']}: 0 to host_nodes")
    for i, h in enumerate(t["_host_nodes"]):
        h["late"] = i >= n_host - t["late_host_nodes"]
    for b in t.get("block", []):
        for k in ("a", "b"):
            if b[k] not in names and b[k] != "registry":
                raise Fail(f"block: unknown router {b[k]} (routers, or \"registry\": its node)")
    return t


# --- consoles -----------------------------------------------------------------

class Console:
    """Holds a VM's serial socket: logs everything, relays to attach clients
    (unix socket), and runs commands on the guest shell."""

    def __init__(self, name, sock_path, log_path, attach_path):
        self.name = name
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.buf = bytearray()
        self.clients = []
        self.closed = False
        self.seq = 0
        # QEMU binds the socket before it listens: retry a refused connect.
        for i in range(100):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(sock_path)
                break
            except ConnectionRefusedError:
                self.sock.close()
                if i == 99:
                    raise Fail(f"{name}: QEMU console socket refuses connections")
                time.sleep(0.1)
        self.log = open(log_path, "ab")
        self.attach_path = attach_path
        try:
            os.unlink(attach_path)
        except FileNotFoundError:
            pass
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(attach_path)
        self.srv.listen(4)
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._acceptor, daemon=True).start()

    def _reader(self):
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            self.log.write(d)
            self.log.flush()
            for c in list(self.clients):
                try:
                    c.sendall(d)
                except OSError:
                    # Its own thread may have removed it already (the
                    # person left): that must not end this reader.
                    self._forget(c)
            with self.cond:
                self.buf.extend(d)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _acceptor(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.clients.append(c)
            threading.Thread(target=self._client, args=(c,), daemon=True).start()

    def _client(self, c):
        while True:
            try:
                d = c.recv(4096)
            except OSError:
                d = b""
            if not d:
                break
            try:
                self.sock.sendall(d)
            except OSError:
                break
        self._forget(c)

    def _forget(self, c):
        try:
            self.clients.remove(c)
        except ValueError:
            pass

    def close(self):
        for s in [self.sock, self.srv] + self.clients:
            try:
                s.close()
            except OSError:
                pass
        try:
            os.unlink(self.attach_path)
        except OSError:
            pass

    def text(self, start=0):
        with self.cond:
            return self.buf[start:].decode("utf-8", "replace").replace("\r", "")

    def pos(self):
        with self.cond:
            return len(self.buf)

    def wait_for(self, pattern, timeout, start=0):
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buf[start:].decode("utf-8", "replace").replace("\r", ""))
                if m:
                    return m
                if self.closed:
                    raise Fail(f"{self.name}: console closed waiting for /{pattern}/")
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail(f"{self.name}: timeout ({timeout:.0f} s) waiting for /{pattern}/")
                self.cond.wait(min(left, 1.0))

    def run(self, cmd, timeout=60):
        """Runs `cmd` on the console shell; returns (rc, output). The output
        is captured in a file and printed between markers, so the echoed
        command line and init's log lines don't mix with it (mostly)."""
        with self.lock:
            self.seq += 1
            n = self.seq
            start = self.pos()
            # The markers are computed by the shell: the echoed command
            # line does not contain them literally.
            line = (f"({cmd}) >/tmp/lab.out 2>&1; r=$?; echo LAB-BEGIN-$(({n}*7)); "
                    f"cat /tmp/lab.out; echo LAB-END-$(({n}*7))-rc$r\n")
            self.sock.sendall(line.encode())
            # Not anchored: init's and the node's log lines share the
            # console and may end up on the same line.
            m = self.wait_for(rf"LAB-END-{n * 7}-rc(\d+)", timeout, start)
            full = self.text(start)
            b = re.search(rf"LAB-BEGIN-{n * 7}\n", full)
            out = full[b.end():m.start()] if b else ""
            return int(m.group(1)), out

    def json(self, cmd, timeout=30):
        for _ in range(3):
            rc, out = self.run(cmd, timeout)
            for line in out.splitlines():
                line = line.strip()
                line = line[line.find("{"):] if "{" in line else line
                if line.startswith("{") and line.endswith("}"):
                    try:
                        return json.loads(line)
                    except ValueError:
                        pass
            time.sleep(1)
        raise Fail(f"{self.name}: no JSON from {cmd!r} (rc {rc}): {out[-300:]}")


# --- the lab ----------------------------------------------------------------

def nic_device(conf, i):
    """The board's QEMU NIC for its i-th port. A board that pins its NIC to
    a PCI slot (Malta: `pcnet,addr=0x0b`, where its IRQ table routes it)
    gets the next slots for the next ports (Malta routes slot 12 too)."""
    dev = conf["QEMU_NET_DEVICE"] or "virtio-net-pci"
    return re.sub(r"addr=0x([0-9a-fA-F]+)", lambda m: f"addr={int(m.group(1), 16) + i:#04x}", dev)


class Lab:
    def __init__(self, topo, out):
        self.t = topo
        self.out = out
        self.id = f"{os.getpid() % 100000}"
        self.p = f"lab{self.id}"          # namespace prefix
        self.work = tempfile.mkdtemp(prefix=f"lab-{topo['name']}-")
        self.images = os.environ.get("LAB_IMAGES", os.path.join(ROOT, "target", "images"))
        # Absolute: the nodes run with other working directories.
        self.bin = os.path.abspath(os.environ.get("RE6ST_HOST_BIN", os.path.join(ROOT, "target", "debug", "re6st")))
        self.accel = os.environ.get("LAB_ACCEL", "auto")
        self.namespaces = []
        self.procs = {}       # name -> Popen (registry, regnode, http)
        self.vms = {r["name"]: r for r in topo["router"]}
        self.qemu = {}        # router -> Popen
        self.consoles = {}
        self.t_boot = None
        os.makedirs(out, exist_ok=True)
        self.inet = f"{self.p}-inet"

    # network ---------------------------------------------------------------
    def ns(self, name):
        full = f"{self.p}-{name}"
        sh(["ip", "netns", "add", full])
        self.namespaces.append(full)
        sh(["ip", "-n", full, "link", "set", "lo", "up"])
        return full

    def veth(self, ns_a, a, ns_b, b):
        sh(["ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])
        sh(["ip", "-n", ns_a, "link", "set", a, "up"])
        sh(["ip", "-n", ns_b, "link", "set", b, "up"])

    def bridge(self, ns, br, *ports):
        sh(["ip", "-n", ns, "link", "add", br, "type", "bridge"])
        sh(["ip", "-n", ns, "link", "set", br, "up"])
        for p in ports:
            sh(["ip", "-n", ns, "link", "set", p, "master", br])

    def build_network(self):
        t = self.t
        under = ipaddress.ip_network(t["underlay"])
        inet = self.ns("inet")
        self.bridge(inet, "wan")
        sh(["ip", "-n", inet, "addr", "add", f"{t['registry_ip']}/{under.prefixlen}", "dev", "wan"])
        sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=inet)
        for n in t.get("nat", []):
            nns = self.ns(n["name"])
            self.veth(nns, "uplink", inet, f"n-{n['name']}")
            sh(["ip", "-n", inet, "link", "set", f"n-{n['name']}", "master", "wan"])
            sh(["ip", "-n", nns, "addr", "add", f"{n['address']}/{under.prefixlen}", "dev", "uplink"])
            sh(["ip", "-n", nns, "route", "add", "default", "via", t["registry_ip"]])
            self.bridge(nns, "priv")
            plen = ipaddress.ip_network(n["private"]).prefixlen
            sh(["ip", "-n", nns, "addr", "add", f"{n['_hosts'][0]}/{plen}", "dev", "priv"])
            sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=nns)
            subprocess.run(["ip", "netns", "exec", nns, "nft", "-f", "-"], check=True, text=True, input=(
                "table ip lab {\n chain post {\n  type nat hook postrouting priority 100;\n"
                "  oifname \"uplink\" masquerade\n }\n}\n"))
        for r in t["router"]:
            rns = self.ns(r["name"])
            r["_ns"] = rns
            # WAN: tap tw + veth vw in bridge bw; the veth's peer in the
            # underlay bridge (or the NAT router's private bridge).
            sh(["ip", "-n", rns, "tuntap", "add", "dev", "tw", "mode", "tap"])
            sh(["ip", "-n", rns, "link", "set", "tw", "up"])
            up_ns = f"{self.p}-{r['nat']}" if r.get("nat") else inet
            up_br = "priv" if r.get("nat") else "wan"
            self.veth(rns, "vw", up_ns, f"w-{r['name']}")
            sh(["ip", "-n", up_ns, "link", "set", f"w-{r['name']}", "master", up_br])
            self.bridge(rns, "bw", "tw", "vw")
            if r["lan"]:
                sh(["ip", "-n", rns, "tuntap", "add", "dev", "tl", "mode", "tap"])
                sh(["ip", "-n", rns, "link", "set", "tl", "up"])
                self.bridge(rns, "bl", "tl")
                r["_clients"] = []
                for c in range(1, r["lan_clients"] + 1):
                    cname = f"{r['name']}c{c}"
                    cns = self.ns(cname)
                    self.veth(rns, f"vc{c}", cns, "eth0")
                    sh(["ip", "-n", rns, "link", "set", f"vc{c}", "master", "bl"])
                    sh(["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2",
                        "net.ipv6.conf.eth0.accept_dad=0"], ns=cns)
                    r["_clients"].append(cns)
        for h in t["_host_nodes"]:
            hns = self.ns(h["name"])
            h["_ns"] = hns
            self.veth(hns, "eth0", inet, f"w-{h['name']}")
            sh(["ip", "-n", inet, "link", "set", f"w-{h['name']}", "master", "wan"])
            sh(["ip", "-n", hns, "addr", "add", f"{h['address']}/{under.prefixlen}", "dev", "eth0"])
        # Blocked underlay paths (the overlay must route around them).
        self.nft_cut([(b["a"], b["b"]) for b in t.get("block", [])], "block")

    def uip(self, name):
        """A node's address on the underlay (its NAT router's for a router
        behind one; "registry" is the registry's node)."""
        if name == "registry":
            return self.t["registry_ip"]
        r = self.vms[name]
        return self.t["_nats"][r["nat"]]["address"] if r.get("nat") else r["address"]

    def nft_cut(self, pairs, table):
        """Drops underlay traffic between the node pairs: a bridge-family
        table in the underlay namespace for traffic between routers (no
        br_netfilter needed), an inet table for the registry's node, whose
        address is the namespace's own. The registry's HTTP services (9080,
        and 8000 for upgrade images) on that address stay reachable: a
        router cut from the registry's node must still provision."""
        sh(f"nft delete table bridge {table} 2>/dev/null; nft delete table inet {table} 2>/dev/null; true",
           ns=self.inet)
        reg = self.t["registry_ip"]
        br, local = [], []
        for a, b in pairs:
            ia, ib = self.uip(a), self.uip(b)
            if reg in (ia, ib):
                o = ib if ia == reg else ia
                local.append((o,))
            else:
                br += [f"ip saddr {ia} ip daddr {ib} drop", f"ip saddr {ib} ip daddr {ia} drop"]
        nft = ""
        if br:
            nft += (f"table bridge {table} {{\n chain labfwd {{\n  type filter hook forward priority 0;\n  "
                    + "\n  ".join(br) + "\n }\n}\n")
        if local:
            nft += (f"table inet {table} {{\n chain labin {{\n  type filter hook input priority 0;\n  "
                    + "\n  ".join(f"ip saddr {o} tcp dport {{ 8000, 9080 }} accept\n  ip saddr {o} drop"
                                   for (o,) in local)
                    + "\n }\n chain labout {\n  type filter hook output priority 0;\n  "
                    + "\n  ".join(f"ip daddr {o} tcp sport {{ 8000, 9080 }} accept\n  ip daddr {o} drop"
                                   for (o,) in local) + "\n }\n}\n")
        if nft:
            subprocess.run(["ip", "netns", "exec", self.inet, "nft", "-f", "-"], check=True, text=True,
                           input=nft)

    # registry --------------------------------------------------------------
    def start_registry(self):
        if not os.access(self.bin, os.X_OK):
            raise Fail(f"no {self.bin}: cargo build -p re6st, or set RE6ST_HOST_BIN")
        reg = os.path.join(self.work, "registry")
        if not os.path.exists(reg):
            sh([self.bin, "registry", "--init-network", self.t["network"], "--dir", reg])
        self.reg = reg
        ip = self.t["registry_ip"]
        node = os.path.join(self.work, "regnode")
        os.makedirs(os.path.join(node, "run"), exist_ok=True)
        self.reg_argv = [self.bin, "registry", "--port", "9080", "-4", ip, "-6", "",
                         "--ca", f"{reg}/ca.crt", "--key", f"{reg}/ca.key", "--dh", f"{reg}/dh.pem",
                         "--db", f"{reg}/registry.db", "-l", os.path.join(self.out, "registry.log"),
                         "-r", os.path.join(node, "run"), "--anonymous-prefix-length", "16"
                         ] + list(self.t["registry_args"])
        self.spawn("registry", self.reg_argv, self.inet)
        wait_until("registry", 20, lambda: subprocess.run(
            ["ip", "netns", "exec", self.inet, "bash", "-c", f"exec 3<>/dev/tcp/{ip}/9080"],
            capture_output=True).returncode == 0, 0.2)
        fp = sh(["openssl", "x509", "-in", f"{reg}/ca.crt", "-noout", "-fingerprint", "-sha256"])
        self.fp = fp.split("=", 1)[1].strip().replace(":", "").lower()
        self.regnode = node
        self.start_host_node("regnode", node, self.inet, ip)
        log(f"registry on {ip}:9080 (CA sha256:{self.fp[:16]}...) with its node")
        early = [h for h in self.t["_host_nodes"] if not h["late"]]
        for h in early:
            self.start_host_node(h["name"], os.path.join(self.work, h["name"]), h["_ns"], h["address"],
                                 self.t["host_node_args"])
        self.expect_running(["registry", "regnode"] + [h["name"] for h in early])
        if early:
            log(f"{len(early)} nodes on the host")

    def start_late_host_nodes(self, router):
        """The `late_host_nodes`, each with `router` as its --neighbour
        (its CN from the subnet its status gives)."""
        late = [h for h in self.t["_host_nodes"] if h["late"]]
        if not late:
            return
        subnet = ipaddress.ip_network(self.status(router)["subnet"])
        net = ipaddress.ip_network(self.t["network"])
        bits = subnet.prefixlen - net.prefixlen
        cn = f"{(int(subnet.network_address) >> (128 - subnet.prefixlen)) & ((1 << bits) - 1)}/{bits}"
        for h in late:
            self.start_host_node(h["name"], os.path.join(self.work, h["name"]), h["_ns"], h["address"],
                                 ["--neighbour", cn])
        self.expect_running([h["name"] for h in late])
        log(f"{len(late)} more nodes on the host, {router} ({cn}) their neighbour")

    def expect_running(self, names, grace=1.0):
        """Fails at once when one of these processes is gone `grace` s
        after its start (a binary that cannot run, a bad option), with the
        end of its output, instead of a timeout later on whatever waited
        for it."""
        time.sleep(grace)
        for name in names:
            p = self.procs.get(name)
            if p is not None and p.poll() is not None:
                with open(os.path.join(self.out, f"{name}.out"), errors="replace") as f:
                    tail = "".join(f.readlines()[-5:]).strip()
                raise Fail(f"{name} exited ({p.returncode}) at its start: {tail}")

    def start_host_node(self, name, d, ns, ip, extra=()):
        """A node of the host binary in namespace `ns`, at public address
        `ip`, in directory `d` (an anonymous certificate from the registry
        the first time), with options `extra`; its log is `name`.log."""
        os.makedirs(os.path.join(d, "run"), exist_ok=True)
        if not os.path.exists(os.path.join(d, "cert.crt")):
            sh([self.bin, "conf", "--registry", f"http://{self.t['registry_ip']}:9080/",
                "--anonymous", "--dir", d], ns=ns)
        self.spawn(name, [self.bin, "node", f"@{d}/re6stnet.conf", "--ca", f"{d}/ca.crt",
                          "--cert", f"{d}/cert.crt", "--key", f"{d}/cert.key",
                          "-s", f"{d}/state", "-r", f"{d}/run",
                          "-l", os.path.join(self.out, f"{name}.log"), "--ip", ip, *extra],
                   ns, cwd=d)

    def spawn(self, name, argv, ns, cwd=None):
        f = open(os.path.join(self.out, f"{name}.out"), "ab")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=f,
                                            stderr=subprocess.STDOUT, cwd=cwd,
                                            start_new_session=True)

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    # VMs -------------------------------------------------------------------
    def prepare_vm(self, r):
        img = os.path.join(self.images, r["board"])
        for f in ("firmware.img", "vmlinuz", "initramfs.cpio.xz", "cmdline"):
            if not os.path.exists(os.path.join(img, f)):
                raise Fail(f"no {img}/{f}: make image BOARD={r['board']} (or set LAB_IMAGES)")
        r["_img"] = img
        r["_conf"] = board_conf(r["board"])
        d = os.path.join(self.work, r["name"])
        os.makedirs(d, exist_ok=True)
        r["_dir"] = d
        subprocess.run(["cp", "--sparse=always", f"{img}/firmware.img", f"{d}/disk.img"], check=True)
        ip = self.t["registry_ip"]
        prof = {
            "hostname": r["name"],
            "registry": f"http://{ip}:9080/",
            "fingerprint": f"sha256:{self.fp}",
            "wan": r["_conf"]["WAN_IF"] or "eth0",
            "wan.mode": "static",
            "wan.address": f"{r['address']}/{r['prefixlen']}",
            "wan.gateway": r["gateway"],
            "service.console": "/bin/sh",
        }
        if r["lan"]:
            prof["lan"] = "eth1"
        if not r.get("nat"):
            prof["node.args"] = f"--ip {r['address']}"
        with open(f"{d}/profile", "w") as f:
            for k, v in prof.items():
                f.write(f"{k} = {v}\n")
        # Where the profile goes, as in smoke.sh: QEMU fw_cfg; boards without
        # it (armv7: no qemu_fw_cfg in the kernel) the kernel command line;
        # Malta (its boot loader cuts the command line at 256 bytes) a
        # config partition on a second disk.
        r["_extra"], r["_cmdline"] = [], ""
        if r["_conf"]["SMOKE_CONFIG_DISK"] == "1":
            os.makedirs(f"{d}/config", exist_ok=True)
            shutil.copy(f"{d}/profile", f"{d}/config/re6st-profile")
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "re6st-config", "-d", f"{d}/config",
                            f"{d}/config.img", "4M"], check=True, stdout=subprocess.DEVNULL)
            r["_extra"] = ["-drive", f"file={d}/config.img,if=none,id=config,format=raw,readonly=on",
                           "-device", f"{r['_conf']['QEMU_BLK_DEVICE'] or 'virtio-blk-pci'},drive=config"]
            r["_cmdline"] = " re6st.config=/dev/vdb"
        elif r["_conf"]["QEMU_FW_CFG"] == "0":
            r["_cmdline"] = "".join(f' re6st.{k}="{v}"' if " " in v else f" re6st.{k}={v}"
                                    for k, v in prof.items())
        else:
            r["_extra"] = ["-fw_cfg", f"name=opt/re6st/profile,file={d}/profile"]

    @staticmethod
    def memory_mib(r):
        """Guest RAM of router `r` (prepared): the topology's or
        QEMU_MEM, else the board's."""
        return int(r["memory"] or r["_conf"]["QEMU_MEM"] or 256)

    def start_vm(self, name):
        r = self.vms[name]
        c = r["_conf"]
        accel = self.accel
        if accel == "auto":
            accel = "kvm" if c["QEMU_ACCEL"] == "kvm" and kvm_usable() else "tcg"
        r["_accel"] = accel
        d = r["_dir"]
        sockp = f"{d}/console.sock"
        if os.path.exists(sockp):
            os.unlink(sockp)
        cmdline = open(f"{r['_img']}/cmdline").read().strip() + r["_cmdline"]
        argv = [c["QEMU_SYSTEM"]] + c["QEMU_MACHINE"].split() + (
            ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"]) + [
            "-smp", "1", "-m", str(self.memory_mib(r)), "-display", "none", "-monitor", "none",
            "-chardev", f"socket,id=con,path={sockp},server=on,wait=on", "-serial", "chardev:con",
            "-kernel", f"{r['_img']}/vmlinuz", "-initrd", f"{r['_img']}/initramfs.cpio.xz",
            "-append", cmdline,
            "-drive", f"file={d}/disk.img,if=none,id=disk,format=raw",
            "-device", f"{c['QEMU_BLK_DEVICE'] or 'virtio-blk-pci'},drive=disk"] + r["_extra"] + [
            "-netdev", "tap,id=n0,ifname=tw,script=no,downscript=no",
            "-device", f"{nic_device(c, 0)},netdev=n0,mac=52:54:00:{self.mac(r, 0)}"]
        if r["lan"]:
            argv += ["-netdev", "tap,id=n1,ifname=tl,script=no,downscript=no",
                     "-device", f"{nic_device(c, 1)},netdev=n1,mac=52:54:00:{self.mac(r, 1)}"]
        err = open(f"{self.out}/qemu-{name}.err", "ab")
        self.qemu[name] = subprocess.Popen(["ip", "netns", "exec", r["_ns"]] + argv,
                                           stdout=err, stderr=err, start_new_session=True)
        wait_until(f"{name}: QEMU console socket", 10, lambda: os.path.exists(sockp), 0.1)
        if name in self.consoles:
            self.consoles[name].close()
        self.consoles[name] = Console(name, sockp, f"{self.out}/console-{name}.log",
                                      f"{self.out}/attach-{name}.sock")
        log(f"{name}: {r['board']} ({accel}) booting, wan {r['address']}"
            + (f" behind {r['nat']}" if r.get("nat") else "") + (", lan eth1" if r["lan"] else ""))

    def mac(self, r, nic):
        i = [x["name"] for x in self.t["router"]].index(r["name"])
        return f"{i // 256:02x}:{i % 256:02x}:{nic:02x}"

    def kill_vm(self, name):
        p = self.qemu.pop(name, None)
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def boot_all(self):
        for r in self.t["router"]:
            self.prepare_vm(r)
        self.t_boot = time.monotonic()
        for r in self.t["router"]:
            self.start_vm(r["name"])

    def wait_provisioned(self, names=None, timeout=600, start=None):
        for name in names or self.vms:
            con = self.consoles[name]
            con.wait_for(r"milestone provisioned", max(1, timeout - (time.monotonic() - self.t_boot)),
                         (start or {}).get(name, 0))
            log(f"{name}: provisioned")

    # state -----------------------------------------------------------------
    def status(self, name):
        return self.consoles[name].json("re6st ctl status --json -r /run/re6stnet")

    def reg_status(self):
        out = sh([self.bin, "ctl", "status", "--json", "-r", f"{self.regnode}/run"], check=False)
        return json.loads(out) if out.strip().startswith("{") else None

    def addresses(self, names=None):
        """Overlay address of each router (its node's address), and the
        SLAAC addresses of the LAN clients in the router's /64."""
        addrs = {}
        for name in names or self.vms:
            s = self.status(name)
            if not s.get("address"):
                raise Fail(f"{name}: no address in status")
            addrs[name] = s["address"]
            self.vms[name]["_addr"] = s["address"]
            net = ipaddress.ip_network(s.get("subnet") or s["address"] + "/64", strict=False)
            for cns in self.vms[name].get("_clients", []):
                label = cns.split("-", 1)[1]
                out = sh(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"], ns=cns)
                for a in re.findall(r"inet6 ([0-9a-f:]+)/", out):
                    if ipaddress.ip_address(a) in net:
                        addrs[label] = a
                if label not in addrs:
                    raise Fail(f"{cns}: no SLAAC address in {net}")
        return addrs

    def reach_matrix(self, addrs, names=None):
        """Pings every address from every router console and every LAN
        client; returns the list of failing (from, to) pairs."""
        names = names or list(self.vms)
        bad = []
        targets = {k: v for k, v in addrs.items()}
        for name in names:
            if name not in self.consoles:
                continue
            loop = " ".join(f"{k}={v}" for k, v in targets.items() if k != name)
            cmd = (f"for p in {loop}; do ping6 -c1 -W2 ${{p#*=}} >/dev/null 2>&1 "
                   f"&& echo LABOK-${{p%%=*}} || echo LABNO-${{p%%=*}}; done")
            _, out = self.consoles[name].run(cmd, 30 + 3 * len(targets))
            ok = set(re.findall(r"LABOK-([a-z0-9]+)", out))
            bad += [(name, k) for k in targets if k != name and k not in ok]
            for cns in self.vms[name].get("_clients", []):
                for k, v in targets.items():
                    if k != cns.split("-", 1)[1] and subprocess.run(
                            ["ip", "netns", "exec", cns, "ping", "-6", "-c1", "-W2", v],
                            capture_output=True).returncode:
                        bad.append((cns.split("-", 1)[1], k))
        return bad

    def wait_full_connectivity(self, timeout, names=None):
        names = names or list(self.vms)
        t0 = time.monotonic()
        addrs = wait_until("addresses (routers' status and LAN clients' SLAAC)", timeout,
                           lambda: self.addresses(names), 3)
        bad = None
        while True:
            bad = self.reach_matrix(addrs, names)
            if not bad:
                return addrs, time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise Fail(f"no full connectivity after {timeout:.0f} s; failing pairs: {bad}")
            log(f"{len(bad)} pairs do not reach yet, e.g. {bad[:4]}")
            time.sleep(2)

    def statuses(self):
        """`re6st ctl status` of every running router and of the registry's
        node ("registry"), by name; routers that do not answer are left out."""
        stat = {}
        for name in self.vms:
            if name in self.qemu:
                try:
                    stat[name] = self.status(name)
                except Fail:
                    continue
        rs = self.reg_status()
        if rs:
            stat["registry"] = rs
        return stat

    def edges(self, stat=None):
        """Overlay tunnels (established client tunnels and served peers),
        from `stat` (statuses()) or from fresh statuses."""
        if stat is None:
            stat = self.statuses()
        nets = {}
        for name, s in stat.items():
            if s.get("address"):
                nets[name] = ipaddress.ip_network(s.get("subnet") or s["address"] + "/64", strict=False)
        edges = set()
        for name, s in stat.items():
            peers = [t["peer"] for t in s.get("tunnels", []) if t.get("state") == "established"]
            peers += s.get("served", [])
            for peer in peers:
                pn = ipaddress.ip_network(peer, strict=False)
                for other, n in nets.items():
                    if other != name and (n.overlaps(pn)):
                        edges.add(tuple(sorted((name, other))))
        return nets, sorted(edges)

    def draw(self, path):
        nets, edges = self.edges()
        lines = ["overlay tunnels:"] + [f"  {a} -- {b}" for a, b in edges]
        with open(path + ".dot", "w") as f:
            f.write("graph re6st {\n  node [shape=box];\n")
            for name, n in nets.items():
                r = self.vms.get(name)
                label = f"{name}\\n{n}" + (f"\\n{r['board']}" if r else "")
                f.write(f'  "{name}" [label="{label}"];\n')
            for a, b in edges:
                f.write(f'  "{a}" -- "{b}";\n')
            f.write("}\n")
        if shutil.which("dot"):
            subprocess.run(["dot", "-Tsvg", "-o", path + ".svg", path + ".dot"], check=False)
        return "\n".join(lines), edges

    def save_node_logs(self):
        """Keeps the end of every running router's node log (it lives in
        the guest's /run) for the post-mortem: node-R.log."""
        for name in self.vms:
            if name not in self.qemu:
                continue
            try:
                _, out = self.consoles[name].run(
                    "for f in /run/re6stnet/log/*; do echo \"== $f\"; tail -n 80 $f; done", 60)
            except Fail as e:
                out = f"no log: {e}\n"
            with open(os.path.join(self.out, f"node-{name}.log"), "w") as f:
                f.write(out)

    # teardown --------------------------------------------------------------
    def teardown(self):
        for name in list(self.qemu):
            self.kill_vm(name)
        for name in list(self.procs):
            self.stop(name)
        for c in self.consoles.values():
            c.close()
        for ns in reversed(self.namespaces):
            for pid in sh(["ip", "netns", "pids", ns], check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh(["ip", "netns", "del", ns], check=False)
        if os.environ.get("LAB_KEEP") == "1":
            log(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# --- the status page (issue 17) ------------------------------------------------

TUNNEL_STATES = ("connecting", "established", "closing", "draining")
# Every name `re6st ctl metrics` exports about the node (re6st_system_*
# too, but those are the host's).
NODE_METRICS = ("re6st_node_info", "re6st_node_tunnels", "re6st_node_tunnel_routes",
                "re6st_node_babel_routed_nodes", "re6st_node_peer_cache_size",
                "re6st_node_registry_reachable", "re6st_node_certificate_expiry_seconds",
                "re6st_node_config_version", "re6st_node_babeld_restarts_total",
                "re6st_node_openvpn_restarts_total", "re6st_node_served_peers",
                "re6st_system_memory_total_bytes", "re6st_system_uptime_seconds")


def status_page_problems(html, status):
    """What the status page (the CGI's HTML, or Chromium's DOM after
    rendering it) gets wrong or misses, compared with the router's
    `re6st ctl status --json`; [] when it shows it all."""
    probs = []
    rows = re.findall(r'<tr class="tunnel"><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>'
                      r'<td class="[^"]*">([^<]*)</td>', html)
    want = sorted((t["peer"], t["iface"]) for t in status.get("tunnels", []))
    got = sorted((peer, iface) for peer, iface, _, _ in rows)
    if got != want:
        probs.append(f"tunnel rows (peer, interface) {got}, ctl status has {want}")
    probs += [f"tunnel {peer}: state {st!r}" for peer, _, _, st in rows if st not in TUNNEL_STATES]
    if not want:
        probs.append("ctl status shows no tunnel (nothing to compare)")
    # The drawing: this router, one node and one edge per neighbour (client
    # tunnels and peers on our servers).
    neighbours = len(status.get("tunnels", [])) + len(status.get("served", []))
    for what, rx, n in (("drawing", r'<svg id="neighbourhood"', 1),
                        ("router in the drawing", r'<circle class="self"', 1),
                        ("neighbours in the drawing", r'<circle class="peer"', neighbours),
                        ("tunnel edges in the drawing", r'<line class="tunnel-edge"', neighbours)):
        c = len(re.findall(rx, html))
        if c != n:
            probs.append(f"{what}: {c} elements, expected {n}")
    cert = time.strftime("%Y-%m-%d", time.gmtime(status["cert_not_after"]))
    for what, rx in (("provisioning", r"Provisioning</th><td>provisioned<"),
                     ("address", re.escape(status["address"])),
                     ("certificate end", r"Certificate valid until</th><td>" + cert),
                     ("configuration version", rf"Configuration version</th><td>{status['config_version']}<"),
                     ("firmware", r"Firmware</th><td>[0-9a-f]{7,}"),
                     ("boot slot", r"Boot slot</th><td>booted [ab]"),
                     ("uptime", r"Uptime</th><td>[0-9]"),
                     ("memory", r"Memory</th><td>[0-9]+ MiB available of [0-9]+ MiB"),
                     ("CPU load", r"CPU load[^<]*</th><td>[0-9]+\.[0-9]{2} "),
                     ("reachability", r"Reachable at</th><td>"),
                     ("UPnP", r"UPnP port mappings</th><td>")):
        if not re.search(rx, html):
            probs.append(f"no {what} (/{rx}/)")
    return probs


def http_get(ns, url, timeout=60):
    """(status, content type, body) of a GET from namespace ns (redirects
    followed); status 0 and the error for a refused connection."""
    prog = ("import json,sys,urllib.request,urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
            "    out = [r.status, r.headers.get('Content-Type', ''), r.read().decode('utf-8', 'replace')]\n"
            "except urllib.error.HTTPError as e:\n"
            "    out = [e.code, e.headers.get('Content-Type', ''), e.read().decode('utf-8', 'replace')]\n"
            "except OSError as e:\n"
            "    out = [0, '', repr(e)]\n"
            "print(json.dumps(out))\n")
    out = sh(["python3", "-c", prog, url, str(timeout)], ns=ns, timeout=timeout + 10)
    return tuple(json.loads(out))


def tcp_port_state(ns, host, port):
    """'open', 'closed' (refused) or 'filtered' (no answer) from ns."""
    prog = ("import socket,sys\n"
            "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            "s.settimeout(5)\n"
            "try:\n    s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
            "except ConnectionRefusedError: print('closed')\n"
            "except OSError: print('filtered')\n")
    return sh(["python3", "-c", prog, host, str(port)], ns=ns).strip()


# --- scenarios ----------------------------------------------------------------

class Scenarios:
    def __init__(self, lab):
        self.lab = lab
        self.addrs = None
        self.results = []

    def record(self, name, ok, secs, lines):
        d = os.path.join(self.lab.out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "result.txt"), "w") as f:
            f.write("\n".join(lines + [f"{'PASS' if ok else 'FAIL'} in {secs:.1f} s"]) + "\n")
        self.results.append((name, ok, secs, lines))

    def connectivity(self, notes):
        """(a) zero-touch provisioning, every router and LAN client reaches
        every other over the overlay."""
        lab = self.lab
        lab.wait_provisioned(timeout=600)
        t_prov = time.monotonic() - lab.t_boot
        notes.append(f"all {len(lab.vms)} routers provisioned {t_prov:.1f} s after power-on")
        self.addrs, _ = lab.wait_full_connectivity(600)
        t_full = time.monotonic() - lab.t_boot
        notes.append(f"full connectivity ({len(self.addrs)} endpoints, "
                     f"{len(self.addrs) * (len(self.addrs) - 1)} pairs) {t_full:.1f} s after power-on")
        for k, v in self.addrs.items():
            notes.append(f"  {k}: {v}")
        text, _ = lab.draw(os.path.join(lab.out, "overlay"))
        notes.append(text)

    def _ping_gap(self, src_ns, dst, action, bound):
        """Pings dst from src_ns every 0.2 s, runs action(), and returns the
        time from the action to the first reply after it."""
        p = subprocess.Popen(["ip", "netns", "exec", src_ns, "ping", "-6", "-D", "-n", "-i", "0.2",
                              "-W", "1", dst], stdout=subprocess.PIPE, text=True)
        replies = []

        def reader():
            for line in p.stdout:
                m = re.match(r"\[(\d+\.\d+)\].*bytes from", line)
                if m:
                    replies.append(float(m.group(1)))
        threading.Thread(target=reader, daemon=True).start()
        time.sleep(3)
        t_act = time.time()
        action()
        end = time.monotonic() + bound
        try:
            while time.monotonic() < end:
                after = [t for t in replies if t > t_act]
                # Resumed: 10 replies in a row (2 s) after the action; the
                # reply that starts that run is when traffic came back.
                for i in range(len(after) - 9):
                    if after[i + 9] - after[i] < 2.5:
                        gaps = [b - a for a, b in zip([t_act] + after, after)]
                        return after[i] - t_act, max(gaps)
                time.sleep(0.2)
            return None, None
        finally:
            p.terminate()
            p.wait()

    def cut(self, notes):
        """(b1) the underlay link under a tunnel carrying LAN-to-LAN
        traffic is cut (checked with the tunnel's counters): that traffic
        must stop, then resume through another node."""
        lab = self.lab
        t_pick = time.monotonic()
        while True:
            stat = lab.statuses()
            nets, edges = lab.edges(stat)
            adj = {}
            for a, b in edges:
                adj.setdefault(a, set()).add(b)
                adj.setdefault(b, set()).add(a)
            # x, y: routers with LAN clients; the route from x to y's LAN goes
            # through one of x's client tunnels, to node p, and x has another
            # tunnel (the way around). Cut x -- p.
            pick = None
            for x, y in self._lan_pairs():
                if len(adj.get(x, ())) < 2:
                    continue
                dev, p = self._next_hop(x, y, nets, stat)
                if p:
                    pick = (x, y, p, dev)
                    break
            # The overlay's shape varies (a star around the registry's node
            # leaves no way around): give it up to 120 s to grow tunnels.
            if pick or time.monotonic() - t_pick > 120:
                break
            time.sleep(10)
        if not pick:
            raise Fail(f"no router with a LAN client, two tunnels, and its route to another LAN "
                       f"through a client tunnel: {edges}")
        x, y, p, dev = pick
        pairs = [(x, p)]
        notes.append(f"tunnels before: {', '.join(f'{a}--{b}' for a, b in edges)}")
        notes.append(f"{x}'s route to {y}'s LAN: dev {dev}, the tunnel to {p}; cut the underlay "
                     f"between {x} and {p}")
        src = lab.vms[x]["_clients"][0]
        dst = self._lan_client(y)
        self._check_crossing(x, dev, src, dst, notes, p if p in lab.vms and p != y else None)
        notes.append(f"pinging {y}'s LAN client {dst} from {src} every 0.2 s")
        resume, gap = self._ping_gap(src, dst, lambda: lab.nft_cut(pairs, "cut"), 180)
        if resume is None:
            raise Fail(f"traffic {src} -> {dst} did not resume within 180 s of the cut")
        notes.append(f"REROUTE: traffic back {resume:.1f} s after the cut (first of 10 replies in a row); "
                     f"longest gap between replies {gap:.1f} s")
        self._check_loss(gap, f"the cut of {x} -- {p}")
        _, edges2 = lab.edges()
        notes.append(f"tunnels after: {', '.join(f'{a}--{b}' for a, b in edges2)}")
        _, secs = lab.wait_full_connectivity(240)
        notes.append(f"full connectivity with the cut in place (checked in {secs:.1f} s)")
        lab.nft_cut([], "cut")
        notes.append("underlay restored")

    def _lan_pairs(self):
        """(x, y): ordered pairs of routers that both have LAN clients."""
        vms = self.lab.vms
        return [(x, y) for x in vms for y in vms
                if x != y and vms[x].get("_clients") and vms[y].get("_clients")]

    def _lan_client(self, y):
        """Overlay address of router y's first LAN client."""
        return self.addrs[self.lab.vms[y]["_clients"][0].split("-", 1)[1]]

    def _next_hop(self, x, y, nets, stat):
        """(tunnel interface, node) of x's route to y's LAN client, when it
        goes through one of x's established tunnels; else (None, None).
        nets: node -> prefix, from Lab.edges(); stat: from Lab.statuses()."""
        lab = self.lab
        _, route = lab.consoles[x].run(f"ip -6 route get {self._lan_client(y)}")
        m = re.search(r"dev (\S+)", route)
        if not m:
            return None, None
        iface = {t.get("iface"): t["peer"] for t in stat.get(x, {}).get("tunnels", [])
                 if t.get("state") == "established"}
        peer = iface.get(m.group(1))
        if not peer:
            # Not one of x's client tunnels: x's OpenVPN server, shared by
            # the peers it serves; the next hop is the node owning the
            # link-local gateway.
            via = re.search(r"via (fe80:\S+)", route)
            p = self._owner_of(via.group(1), x) if via else None
            return (m.group(1), p) if p else (None, None)
        pn = ipaddress.ip_network(peer, strict=False)
        p = next((n for n, net in nets.items() if net.overlaps(pn) and n != x), None)
        return (m.group(1), p) if p else (None, None)

    def _owner_of(self, lladdr, but):
        """The node (router name, or "registry") with this link-local
        address on one of its interfaces."""
        lab = self.lab
        want = ipaddress.ip_address(lladdr)

        def has(text):
            return any(ipaddress.ip_address(a) == want
                       for a in re.findall(r"inet6 (fe80:[0-9a-f:]+)/", text))
        for name in lab.vms:
            if name != but and name in lab.qemu and has(lab.consoles[name].run(
                    "ip -6 -o addr show scope link")[1]):
                return name
        if has(sh(["ip", "-6", "-o", "addr", "show", "scope", "link"], ns=lab.inet, check=False)):
            return "registry"
        return None

    def _check_crossing(self, x, dev, src, dst, notes, transit=None, count=20, size=1000):
        """Proves that traffic from src to dst takes the path before a
        fault: `count` pings of `size` bytes must add at least count * size
        bytes to the tx_bytes of x's tunnel `dev` (the nodes' control
        traffic over those seconds is far less) and, when `transit` (a
        router) is given, at least `count` to its forwarded IPv6 datagrams
        (Ip6OutForwDatagrams: babeld's own packets are link-local, never
        forwarded)."""
        def counter(name, cmd, what):
            rc, out = self.lab.consoles[name].run(cmd)
            m = re.search(r"(\d+)\s*$", out.strip())
            if rc or not m:
                raise Fail(f"{name}: no {what}: {out[-200:]}")
            return int(m.group(1))
        tx_cmd = f"cat /sys/class/net/{dev}/statistics/tx_bytes"
        fw_cmd = "grep '^Ip6OutForwDatagrams' /proc/net/snmp6"
        tx0 = counter(x, tx_cmd, f"tx_bytes of {dev}")
        fw0 = counter(transit, fw_cmd, "Ip6OutForwDatagrams") if transit else 0
        p = subprocess.run(["ip", "netns", "exec", src, "ping", "-6", "-n", "-q", "-c", str(count),
                            "-i", "0.2", "-W", "2", "-s", str(size), dst], capture_output=True, text=True)
        tx = counter(x, tx_cmd, f"tx_bytes of {dev}") - tx0
        fw = counter(transit, fw_cmd, "Ip6OutForwDatagrams") - fw0 if transit else 0
        summary = p.stdout.strip().splitlines()[-2:] if p.stdout.strip() else []
        if tx < count * size:
            raise Fail(f"{count} pings of {size} bytes {src} -> {dst} added {tx} bytes to {x}'s "
                       f"{dev}: the traffic does not cross it ({' '.join(summary)})")
        if transit and fw < count:
            raise Fail(f"{count} pings {src} -> {dst}: {transit} forwarded {fw} IPv6 datagrams: "
                       f"the traffic does not cross it ({' '.join(summary)})")
        notes.append(f"path checked: {count} pings of {size} bytes added {tx} bytes to {x}'s {dev}"
                     + (f", {transit} forwarded {fw} IPv6 datagrams" if transit else ""))

    @staticmethod
    def _check_loss(gap, fault):
        """Traffic that crossed the fault must have lost replies: babeld
        needs seconds to notice a dead neighbour."""
        if gap < 1.0:
            raise Fail(f"no loss after {fault} (longest gap {gap:.1f} s): the traffic did not "
                       "depend on it")

    def _transit_router(self, timeout):
        """(x, y, v, dev): a router v on the overlay path from x's LAN to
        y's LAN (x's route to it leaves through dev, its tunnel to v), v
        neither x nor y, and x and y each with a tunnel to a node other
        than v (a way around). Waits up to `timeout` s for the overlay to
        grow one; None if it does not."""
        t0 = time.monotonic()
        while True:
            stat = self.lab.statuses()
            nets, edges = self.lab.edges(stat)
            for x, y in self._lan_pairs():
                dev, v = self._next_hop(x, y, nets, stat)
                if v not in self.lab.vms or v == y:
                    continue
                others = {n: {b if a == n else a for a, b in edges if n in (a, b)} - {v}
                          for n in (x, y)}
                if others[x] and others[y]:
                    return x, y, v, dev
            if time.monotonic() - t0 > timeout:
                return None
            time.sleep(10)

    def poweroff(self, notes):
        """(b2) a router is powered off (QEMU killed): the others keep
        reaching each other; powered on again it rejoins. The router
        chosen carries LAN-to-LAN traffic (checked with the tunnel's
        counters); that traffic must stop, then resume around it."""
        lab = self.lab
        names = list(lab.vms)
        pick = self._transit_router(120)
        if not pick:
            _, edges = lab.edges()
            raise Fail("within 120 s, no LAN-to-LAN route through a router in transit with a way "
                       f"around it (the topology must force one: see transit.toml); tunnels: {edges}")
        x, y, victim, dev = pick
        src = lab.vms[x]["_clients"][0]
        dst_router, dst = y + " LAN", self._lan_client(y)
        notes.append(f"{x}'s route to {y}'s LAN goes through {victim} (dev {dev})")
        self._check_crossing(x, dev, src, dst, notes, victim)
        notes.append(f"power off {victim}; pinging {dst_router} ({dst}) from {src}")
        resume, gap = self._ping_gap(src, dst, lambda: lab.kill_vm(victim), 180)
        if resume is None:
            raise Fail(f"traffic {src} -> {dst_router} did not resume within 180 s")
        notes.append(f"first reply {resume:.1f} s after the power-off; longest gap {gap:.1f} s")
        self._check_loss(gap, f"the power-off of {victim}")
        rest = [n for n in names if n != victim]
        addrs = {k: v for k, v in self.addrs.items() if k != victim and not k.startswith(victim + "c")}
        t0 = time.monotonic()
        while True:
            bad = lab.reach_matrix(addrs, rest)
            if not bad:
                break
            if time.monotonic() - t0 > 240:
                raise Fail(f"without {victim}: failing pairs {bad}")
            time.sleep(2)
        notes.append(f"the other {len(rest)} routers and their LANs reach each other "
                     f"({time.monotonic() - t0:.1f} s after the check started)")
        lab.start_vm(victim)
        lab.t_boot = time.monotonic()
        lab.wait_provisioned([victim], 400)
        _, secs = lab.wait_full_connectivity(400)
        notes.append(f"{victim} powered on again: full connectivity {time.monotonic() - lab.t_boot:.1f} s "
                     "after power-on")

    def _reboot(self, name, notes, registry_up):
        lab = self.lab
        con = lab.consoles[name]
        before = lab.status(name)["address"]
        start = con.pos()
        t0 = time.monotonic()
        con.sock.sendall(b"re6st init reboot\n")
        con.wait_for(r"Linux version", 120, start)
        m = con.wait_for(r"milestone provisioned", 300, start)
        t_prov = time.monotonic() - t0
        after_boot = con.text(start)
        if "provisioned by http" in after_boot:
            raise Fail(f"{name} provisioned itself again after the reboot")
        if "data partition: Format" in after_boot:
            raise Fail(f"{name} formatted its data partition at reboot")
        del m
        addr = wait_until(f"{name}: status after reboot", 120, lambda: lab.status(name).get("address"), 3)
        if addr != before:
            raise Fail(f"{name}: address {before} before the reboot, {addr} after")
        notes.append(f"{name} rebooted{'' if registry_up else ' (registry down)'}: same address {addr}, "
                     f"no new certificate, provisioned {t_prov:.1f} s after `re6st init reboot`")
        _, secs = lab.wait_full_connectivity(300)
        notes.append(f"full connectivity {time.monotonic() - t0:.1f} s after the reboot command")

    def reboot(self, notes):
        """(c) a rebooted router keeps its prefix and reconnects from its
        cache."""
        lab = self.lab
        name = list(lab.vms)[1 % len(lab.vms)]
        self._reboot(name, notes, True)

    def status_page(self, notes):
        """a router's status page, from its LAN only (not overlay nor WAN).

        From its LAN client: the HTML, /metrics, Chromium's screenshot and
        DOM; refused (403) through the overlay; port closed on the WAN."""
        lab = self.lab
        name = next((n for n, r in lab.vms.items() if r.get("_clients")), None)
        if not name:
            raise Fail("no router with a LAN client")
        r, cns = lab.vms[name], lab.vms[name]["_clients"][0]
        d = os.path.join(lab.out, "status-page")
        os.makedirs(d, exist_ok=True)
        url = f"http://[{lab.status(name)['address']}]/"

        # The page against ctl status read just before and just after it
        # (a tunnel may come or go between the two readings).
        def page_matches():
            before = lab.status(name)
            code, ctype, html = http_get(cns, url)
            after = lab.status(name)
            with open(os.path.join(d, f"{name}.html"), "w") as f:
                f.write(html)
            if code != 200 or "text/html" not in ctype:
                raise Fail(f"GET {url} from {cns}: {code} {ctype}: {html[:200]}")
            probs = status_page_problems(html, before)
            if probs and status_page_problems(html, after):
                raise Fail(f"{url}: " + "; ".join(probs))
            return html, before if not probs else after
        html, st = wait_until(f"{name}'s status page showing its tunnels", 120, page_matches, 5)
        notes.append(f"{url} from {cns}: {len(st['tunnels'])} tunnel rows and "
                     f"{len(st['tunnels']) + len(st['served'])} neighbours drawn, as ctl status "
                     f"({len(html)} bytes)")

        code, ctype, text = http_get(cns, url + "metrics")
        with open(os.path.join(d, f"{name}.metrics"), "w") as f:
            f.write(text)
        if code != 200 or not ctype.startswith("text/plain"):
            raise Fail(f"GET {url}metrics: {code} {ctype}: {text[:200]}")
        missing = [m for m in NODE_METRICS if not re.search(rf"^{m}[{{ ]", text, re.M)]
        if missing:
            raise Fail(f"{url}metrics lacks {missing}")
        m = re.search(r"^re6st_node_config_version (\d+)$", text, re.M)
        if not m or int(m.group(1)) != st["config_version"]:
            raise Fail(f"{url}metrics: config version {m and m.group(1)}, ctl status {st['config_version']}")
        notes.append(f"{url}metrics: {len(NODE_METRICS)} node metric names, config version "
                     f"{st['config_version']} as ctl status")

        # Chromium on the LAN client: screenshot, and the DOM after rendering.
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            raise Fail("no chromium (make deps installs it)")
        profile = tempfile.mkdtemp(prefix="lab-chromium-")
        try:
            base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1400"]
            shot = os.path.join(d, f"{name}.png")
            sh(base + [f"--screenshot={shot}", url], ns=cns, timeout=180)
            if not os.path.exists(shot) or os.path.getsize(shot) < 1000:
                raise Fail(f"chromium left no screenshot {shot}")

            # As for the HTML above: the DOM against ctl status read just
            # before and just after Chromium loads the page. Chromium takes
            # seconds under TCG and the tunnel refresh may open or close a
            # tunnel meanwhile (a CI run saw a DOM with a tunnel that neither
            # the status before the screenshot nor the one after the dump
            # had), so a page that matches neither reading is read again.
            def dom_matches():
                before = lab.status(name)
                dom = sh(base + ["--dump-dom", url], ns=cns, timeout=180)
                after = lab.status(name)
                with open(os.path.join(d, f"{name}.dom.html"), "w") as f:
                    f.write(dom)
                probs = status_page_problems(dom, before)
                if probs:
                    probs_after = status_page_problems(dom, after)
                    if probs_after:
                        raise Fail(f"Chromium's DOM of {url}: " + "; ".join(probs)
                                   + " (ctl status after the dump: " + "; ".join(probs_after) + ")")
                return dom
            dom = wait_until(f"Chromium's DOM of {url} showing {name}'s tunnels", 300, dom_matches, 5)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        notes.append(f"Chromium: screenshot {os.path.relpath(shot, ROOT)} "
                     f"({os.path.getsize(shot)} bytes); its DOM has the tunnel rows and the drawing "
                     f"({len(re.findall('<circle', dom))} circles, {len(re.findall('<line', dom))} lines)")

        # Not for the overlay (the registry's node reaches the router's
        # address through a tunnel), and nothing on the WAN address.
        code, _, body = http_get(lab.inet, url)
        if code != 403:
            raise Fail(f"GET {url} from the registry's node (overlay): {code}, not 403: {body[:200]}")
        notes.append(f"{url} from the registry's node, through the overlay: 403")
        wan = tcp_port_state(lab.inet, r["address"], 80)
        if wan != "closed":
            raise Fail(f"port 80 on {name}'s WAN address {r['address']}: {wan}, not closed")
        notes.append(f"port 80 on the WAN address {r['address']}: closed (connection refused)")
        _, out = lab.consoles[name].run(
            "for p in $(pidof httpd); do grep -E '^(VmRSS|RssAnon)' /proc/$p/status; done", 30)
        notes.append("httpd on the router: " + " ".join(out.split()))

    def memory(self, notes):
        """A router's memory with 12 or more tunnels: MemTotal/MemAvailable
        and every process's RSS, PSS and private memory, sampled for
        LAB_MEMORY_SECONDS (600); no OOM kill, no restart, MemAvailable
        never under LAB_MEMORY_FLOOR_MB (16), tunnels kept."""
        lab = self.lab
        name = lab.t["router"][0]["name"]
        r, con = lab.vms[name], lab.consoles[name]
        seconds = float(os.environ.get("LAB_MEMORY_SECONDS", "600"))
        every = float(os.environ.get("LAB_MEMORY_INTERVAL", "30"))
        floor_kb = int(float(os.environ.get("LAB_MEMORY_FLOOR_MB", "16")) * 1024)
        want = int(os.environ.get("LAB_MEMORY_TUNNELS", "12"))
        lab.wait_provisioned([name], timeout=600)
        notes.append(f"{name} ({r['board']}, -m {lab.memory_mib(r)}) "
                     f"provisioned {time.monotonic() - lab.t_boot:.1f} s after power-on")
        lab.start_late_host_nodes(name)
        # Before the tunnels: what the system costs without them.
        info0, procs0 = memory_sample(con.run(MEMORY_SAMPLE, 120)[1])

        def established(st):
            """Established client tunnels plus served clients."""
            up = [t for t in st.get("tunnels", []) if t.get("state") == "established"]
            return len(up) + len(st.get("served", []))
        def tunnels():
            st = lab.status(name)
            return established(st), st
        def enough():
            n, st = tunnels()
            return (n, st) if n >= want else None
        n0, _ = wait_until(f"{name}: {want} tunnels (established and served)", 600, enough, 5)

        def held():
            """Tunnels the router holds (an OpenVPN each), in any state: a
            tunnel refresh drains one (still carrying traffic), closes it
            and opens its replacement about a second later. A count under
            `want` is read again 5 s later, past that gap; what is still
            under is a tunnel lost."""
            for wait in (0, 5):
                time.sleep(wait)
                st = lab.status(name)
                n = len(st.get("tunnels", [])) + len(st.get("served", []))
                if n >= want:
                    break
            return n, st
        notes.append(f"{n0} tunnels {time.monotonic() - lab.t_boot:.1f} s after power-on")

        def init_services():
            _, out = con.run("re6st init status", 30)
            return {m[0]: (m[1], int(m[2])) for m in
                    re.findall(r"^(\S+)\s+\S+\s+(\d+|-)\s+(\d+)\s*$", out, re.M)}
        services0 = init_services()
        samples, t0 = [], time.monotonic()
        while True:
            t = time.monotonic() - t0
            _, out = con.run(MEMORY_SAMPLE, 120)
            info, procs = memory_sample(out)
            n, st = held()
            if "MemAvailable" not in info or not procs:
                raise Fail(f"{name}: no memory sample in {out[-300:]!r}")
            samples.append({"t": round(t, 1), "meminfo_kb": info, "tunnels": n,
                            "tunnels_established": established(st),
                            "babeld_restarts": st.get("babeld_restarts"),
                            "openvpn_restarts": st.get("openvpn_restarts"), "processes": procs})
            if t >= seconds:
                break
            time.sleep(max(0.0, every - (time.monotonic() - t0 - t)))
        _, dmesg = con.run("dmesg | grep -i -E 'out of memory|oom-kill|killed process' || true", 60)
        services = init_services()
        # The kernel's largest slab caches, kB (only with SLUB/SLAB's
        # /proc/slabinfo: num_slabs x pages per slab).
        _, slab = con.run("[ ! -r /proc/slabinfo ] || awk 'NR>2{print $15*$6*4, $1}' /proc/slabinfo"
                          " | sort -rn | head -15", 60)
        last = samples[-1]
        by_kind = {}
        for p in last["processes"]:
            k = process_kind(p["cmd"])
            agg = by_kind.setdefault(k, {"count": 0, "rss_kb": 0, "pss_kb": 0, "private_kb": 0})
            agg["count"] += 1
            for f in ("rss_kb", "pss_kb", "private_kb"):
                agg[f] += p[f]
        avail = [s["meminfo_kb"]["MemAvailable"] for s in samples]
        tun = [s["tunnels"] for s in samples]
        problems = []
        if dmesg.strip():
            problems.append(f"the kernel killed for memory: {dmesg.strip()[:300]}")
        for svc, (pid, restarts) in services.items():
            if svc not in services0 or services0[svc] != (pid, restarts):
                problems.append(f"init service {svc}: pid/restarts {services0.get(svc)} -> {(pid, restarts)}")
        first = samples[0]
        for k in ("babeld_restarts", "openvpn_restarts"):
            if last[k] != first[k]:
                problems.append(f"{k}: {first[k]} -> {last[k]}")
        if min(avail) < floor_kb:
            problems.append(f"MemAvailable fell to {min(avail)} kB (floor {floor_kb} kB)")
        if min(tun) < want:
            problems.append(f"tunnels fell to {min(tun)} (wanted {want} or more throughout)")
        result = {"router": name, "board": r["board"],
                  "qemu_mem_mib": lab.memory_mib(r),
                  "kernel": con.run("uname -r", 30)[1].strip(), "seconds": seconds,
                  "mem_total_kb": last["meminfo_kb"]["MemTotal"], "mem_available_min_kb": min(avail),
                  "mem_available_max_kb": max(avail), "tunnels_min": min(tun), "tunnels_max": max(tun),
                  "by_kind": by_kind, "samples": samples,
                  "at_provisioning": {"meminfo_kb": info0, "processes": procs0}, "services_before": services0,
                  "services_after": services, "oom_lines": dmesg.strip(), "problems": problems,
                  "slab_top_kb": [[int(k), n] for k, n in re.findall(r"^(\d+) (\S+)\s*$", slab, re.M)]}
        with open(os.path.join(lab.out, "memory.json"), "w") as f:
            json.dump(result, f, indent=1)
        notes.append(f"kernel {result['kernel']}: MemTotal {result['mem_total_kb']} kB, MemAvailable "
                     f"{min(avail)} to {max(avail)} kB over {len(samples)} samples in {seconds:.0f} s; "
                     f"tunnels {min(tun)} to {max(tun)}")
        notes.append(f"{'processes':16} {'count':>5} {'RSS kB':>8} {'PSS kB':>8} {'private kB':>10}")
        for k, a in sorted(by_kind.items(), key=lambda kv: -kv[1]["pss_kb"]):
            notes.append(f"{k:16} {a['count']:>5} {a['rss_kb']:>8} {a['pss_kb']:>8} {a['private_kb']:>10}")
        if problems:
            raise Fail("; ".join(problems))

    def registry_down(self, notes):
        """(d) the registry (HTTP service) is stopped: the network keeps
        working, and a router rebooted meanwhile comes back from its cache."""
        lab = self.lab
        lab.stop("registry")
        notes.append("registry stopped (its node keeps running)")
        t0 = time.monotonic()
        _, secs = lab.wait_full_connectivity(120)
        notes.append(f"full connectivity with the registry down (checked in {secs:.1f} s)")
        name = list(lab.vms)[-1]
        self._reboot(name, notes, False)
        del t0
        lab.spawn("registry", lab.reg_argv, lab.inet)
        notes.append("registry started again")

    def upgrade(self, notes):
        """(e) A/B upgrade of one router over HTTP, then an upgrade to a
        broken image that must fall back."""
        lab = self.lab
        name = next(n for n in lab.vms if lab.vms[n]["board"] == "qemu-x86_64") \
            if any(r["board"] == "qemu-x86_64" for r in lab.t["router"]) else list(lab.vms)[0]
        r = lab.vms[name]
        www = os.path.join(lab.work, "www")
        os.makedirs(www, exist_ok=True)
        shutil.copy(f"{r['_img']}/rootfs.squashfs", f"{www}/good.squashfs")
        shutil.copy(f"{r['_img']}/rootfs.squashfs.manifest", f"{www}/good.squashfs.manifest")
        if not os.path.isdir(f"{r['_img']}/work/root"):
            raise Fail(f"no {r['_img']}/work/root for the broken image")
        broken = os.path.join(lab.work, "broken-root")
        subprocess.run(["cp", "-a", f"{r['_img']}/work/root", broken], check=True)
        os.unlink(f"{broken}/sbin/init")
        with open(f"{broken}/sbin/init", "w") as f:
            f.write('#!/bin/sh\necho "broken init: exiting"\nexit 1\n')
        os.chmod(f"{broken}/sbin/init", 0o755)
        subprocess.run(["mksquashfs", broken, f"{www}/broken.squashfs", "-all-root", "-noappend",
                        "-quiet", "-no-progress", "-comp", "gzip"], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(broken)
        # Signed with the build's key, as `re6st init upgrade` wants.
        arch = next(l.split("=", 1)[1] for l in open(f"{www}/good.squashfs.manifest").read().splitlines()
                    if l.startswith("arch="))
        sh(["bash", os.path.join(ROOT, "scripts", "sign-image.sh"), f"{www}/broken.squashfs",
            r["board"], arch, "lab broken"])
        sha = {k: sh(["sha256sum", f"{www}/{k}.squashfs"]).split()[0] for k in ("good", "broken")}
        ip = lab.t["registry_ip"]
        lab.spawn("http", ["python3", "-m", "http.server", "8000", "--bind", ip, "--directory", www], lab.inet)
        time.sleep(1)
        con = lab.consoles[name]
        # Good image into slot b.
        start = con.pos()
        t0 = time.monotonic()
        con.sock.sendall(upgrade_line(ip, "good").encode())
        con.wait_for(rf"sha256 {sha['good']} verified", 120, start)
        con.wait_for(r"rebooting into slot b", 60, start)
        con.wait_for(r"initramfs: slot b", 120, start)
        con.wait_for(r"slot b confirmed", 300, start)
        st = wait_until("status", 60, lambda: con.run("re6st init status")[1], 2)
        if not re.search(r"^slot: booted b, active b$", st, re.M):
            raise Fail(f"{name}: after the upgrade: {st}")
        notes.append(f"{name}: upgraded to slot b over HTTP and confirmed "
                     f"{time.monotonic() - t0:.1f} s after the command; `slot: booted b, active b`")
        _, secs = lab.wait_full_connectivity(300)
        notes.append(f"full connectivity after the upgrade ({secs:.1f} s)")
        # Broken image into slot a: panics, reboots, falls back to b.
        start = con.pos()
        t0 = time.monotonic()
        con.sock.sendall(upgrade_line(ip, "broken").encode())
        con.wait_for(r"rebooting into slot a", 120, start)
        con.wait_for(r"broken init: exiting", 120, start)
        con.wait_for(r"Kernel panic", 60, start)
        p = con.pos()
        con.wait_for(r"initramfs: slot b", 180, p)
        con.wait_for(r"milestone provisioned", 300, p)
        st = wait_until("status", 60, lambda: con.run("re6st init status")[1], 2)
        if not re.search(r"^slot: booted b, active b, last upgrade to a did not come up$", st, re.M):
            raise Fail(f"{name}: after the broken upgrade: {st}")
        notes.append(f"{name}: broken image in slot a panicked and fell back to b "
                     f"({time.monotonic() - t0:.1f} s): `last upgrade to a did not come up`")
        _, secs = lab.wait_full_connectivity(300)
        notes.append(f"full connectivity after the fallback ({secs:.1f} s)")
        lab.stop("http")


# One sample of a router's memory, on its console (busybox sh and awk):
# every process with user pages (RSS, PSS, private, in kB, from
# smaps_rollup) and its command line (OpenVPN's only as server or client:
# it is long), then /proc/meminfo (Shmem: tmpfs, i.e. logs and state in
# /run and /tmp; SUnreclaim, KernelStack, PageTables: the kernel's own).
MEMORY_SAMPLE = (
    "for p in /proc/[0-9]*; do [ -r $p/smaps_rollup ] || continue; "
    "c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); case \"$c\" in "
    "*' --mode server'*) c=\"openvpn-server ${c%% *}\";; *' --client'*) c=\"openvpn-client ${c%% *}\";; "
    "*) c=$(echo \"$c\" | cut -c1-60);; esac; "
    "awk -v pid=${p#/proc/} -v c=\"$c\" '/^Rss:/{r=$2} /^Pss:/{s=$2} /^Private_/{v+=$2} "
    "END{if(r)print \"MEMP\",pid,r,s,v,c}' $p/smaps_rollup; done; "
    "sed 's/^/MEMI /' /proc/meminfo")


def memory_sample(text):
    """Parses MEMORY_SAMPLE's output: ({"MemTotal": kB, ...}, [process])."""
    info = {k: int(v) for k, v in re.findall(r"MEMI (\w+):\s+(\d+) kB", text)}
    procs = [{"pid": int(pid), "rss_kb": int(r), "pss_kb": int(ps), "private_kb": int(pv),
              "cmd": c.strip()}
             for pid, r, ps, pv, c in re.findall(r"MEMP (\d+) (\d+) (\d+) (\d+) ([^\n]*)", text)]
    return info, procs


def process_kind(cmd):
    """init, node, babeld, openvpn server or client, or other."""
    w = cmd.split()
    if not w:
        return "other"
    if w[0] in ("openvpn-server", "openvpn-client"):
        return w[0]
    prog = os.path.basename(w[0])
    if prog in ("re6st", "init") and len(w) > 1:
        return {"init": "init", "node": "node", "lan": "lan", "status": "status"}.get(w[1], prog)
    return "init" if prog == "init" else prog


def upgrade_line(ip, name):
    """The console command that upgrades from http://IP:8000/NAME.squashfs
    and its signed manifest."""
    return (f"wget -q -O /tmp/{name}.manifest http://{ip}:8000/{name}.squashfs.manifest && "
            f"wget -q -O - http://{ip}:8000/{name}.squashfs | "
            f"re6st init upgrade --manifest /tmp/{name}.manifest -\n")


SCENARIOS = {"connectivity": "connectivity", "cut": "cut", "poweroff": "poweroff",
             "reboot": "reboot", "registry-down": "registry_down", "upgrade": "upgrade",
             "status-page": "status_page", "memory": "memory"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["up", "test"])
    ap.add_argument("topology")
    ap.add_argument("scenarios", nargs="?", default="connectivity")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("lab: needs root (ip netns, taps)", file=sys.stderr)
        return 1
    topo = load_topology(a.topology)
    out = os.environ.get("LAB_OUT", os.path.join(ROOT, "target", "lab", topo["name"]))
    if a.mode == "test":
        shutil.rmtree(out, ignore_errors=True)
    lab = Lab(topo, out)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc = 0
    try:
        lab.build_network()
        lab.start_registry()
        lab.boot_all()
        if a.mode == "up":
            rc = interactive(lab)
        else:
            rc = run_tests(lab, a.scenarios.split(","))
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Fail as e:
        log(f"FAIL: {e}")
        rc = 1
    finally:
        # A second SIGTERM or Ctrl-C (`timeout` passes its own on, a
        # pkill hits both) must not cut the teardown short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log("tearing down")
        lab.teardown()
    log(f"logs in {out}")
    return rc


def interactive(lab):
    print("\nConsoles (detach: Ctrl-C in socat; the VM keeps running):", flush=True)
    for name, r in lab.vms.items():
        print(f"  {name:6} {r['board']:18} socat -,raw,echo=0 UNIX-CONNECT:{lab.out}/attach-{name}.sock")
    print(f"  logs: {lab.out}/console-NAME.log\n"
          f"  LAN clients: ip netns exec {lab.p}-NAMEc1 ping -6 ...\n", flush=True)
    try:
        lab.wait_provisioned(timeout=600)
        addrs, secs = lab.wait_full_connectivity(600)
        print(f"full connectivity {time.monotonic() - lab.t_boot:.1f} s after power-on:", flush=True)
        for k, v in addrs.items():
            print(f"  {k:8} {v}")
    except Fail as e:
        print(f"not fully connected: {e}", flush=True)
    last = None
    print("Ctrl-C tears everything down.", flush=True)
    while True:
        text, edges = lab.draw(os.path.join(lab.out, "overlay"))
        if edges != last:
            print(text + f"\n  (DOT/SVG: {lab.out}/overlay.dot, .svg)", flush=True)
            last = edges
        time.sleep(30)


def run_tests(lab, names):
    sc = Scenarios(lab)
    rc = 0
    for name in names:
        if name not in SCENARIOS:
            raise Fail(f"unknown scenario {name} (known: {', '.join(SCENARIOS)})")
    for name in names:
        notes = []
        t0 = time.monotonic()
        log(f"scenario {name}: {getattr(sc, SCENARIOS[name]).__doc__.split(chr(10))[0]}")
        try:
            getattr(sc, SCENARIOS[name])(notes)
            sc.record(name, True, time.monotonic() - t0, notes)
            log(f"scenario {name}: PASS in {time.monotonic() - t0:.1f} s")
            for n in notes:
                log(f"  {n}")
        except (Fail, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            notes.append(f"FAIL: {e!r}" if not isinstance(e, Fail) else f"FAIL: {e}")
            sc.record(name, False, time.monotonic() - t0, notes)
            log(f"scenario {name}: FAIL in {time.monotonic() - t0:.1f} s: {e}")
            lab.save_node_logs()
            for n in notes:
                log(f"  {n}")
            rc = 1
            break
    with open(os.path.join(lab.out, "summary.txt"), "w") as f:
        f.write(f"topology {lab.t['name']}: "
                + ", ".join(f"{r['name']} {r['board']}" for r in lab.t["router"]) + "\n")
        for name, ok, secs, notes in sc.results:
            f.write(f"{name}: {'PASS' if ok else 'FAIL'} in {secs:.1f} s\n")
            for n in notes:
                f.write(f"  {n}\n")
        f.write(f"total {time.monotonic() - T0:.1f} s\n")
    print(open(os.path.join(lab.out, "summary.txt")).read(), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
