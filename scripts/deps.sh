#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need on Debian 12.
# Idempotent: a second run only checks, and talks to no server.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential pkg-config libssl-dev   # openssl-sys links the system libssl
  python3 python3-venv                    # the upstream re6stnet test oracle
  openssl                                 # upstream's x509 code shells out to it
  iproute2 iputils-ping procps psmisc iptables  # network namespaces for tests/demo
  openvpn babeld                          # the node's tunnels and routing (stock babeld 1.12)
  graphviz                                # the demo renders its topology
  libfaketime util-linux                  # firmware boot tests: a 1970 clock, unshare
  nftables miniupnpd-nftables             # NAT tests: home routers with and without UPnP
  shellcheck rsync                        # buildroot-external/check.sh (scripts, the source copy)
  squashfs-tools fdisk cpio xz-utils binutils  # make image: squashfs, the A/B disk, initramfs, ELF checks
  busybox-static                          # tests of the initramfs's slot choice under busybox sh
  iperf3                                  # make bench: throughput through the overlay against the direct path
  lintian debootstrap                     # make deb-test: the package's checks, a clean Debian root
  chromium                                # make lab-test: the status page's screenshot and DOM, headless
)
# QEMU comes from bookworm-backports because qemu-utils is preinstalled from
# there: mixing suites makes apt refuse. The image smoke tests need the
# boards' system emulators (x86_64; aarch64 and armv7: qemu-system-arm;
# mipsel: qemu-system-mips), image.sh and cross/check.sh qemu-user.
BACKPORTS_PACKAGES=(qemu-system-x86 qemu-system-arm qemu-system-mips qemu-user)
UPSTREAM_PIP=(re6stnet==0.642 pyOpenSSL==24.2.1)
PLOT_PIP=(matplotlib==3.9.2)                # make bench: scripts/bench-plots.py

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "make deps: installing Debian packages needs root (run as root or with sudo)" >&2
    exit 1
  fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
missing_bpo=()
for p in "${BACKPORTS_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_bpo+=("$p")
done

if [ ${#missing_bpo[@]} -gt 0 ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  need_root
  echo "deps: adding the bookworm-backports suite"
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

if [ ${#missing[@]} -gt 0 ] || [ ${#missing_bpo[@]} -gt 0 ]; then
  need_root
  echo "deps: installing ${missing[*]} ${missing_bpo[*]}"
  apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ ${#missing_bpo[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing_bpo[@]}"
fi

# promtool (the metrics test checks node and registry scrapes with it) from
# Debian's prometheus package, without installing the package: that would
# enable and start a Prometheus server on a machine running systemd.
if ! command -v promtool >/dev/null; then
  need_root
  echo "deps: installing promtool from Debian's prometheus package into /usr/local/bin"
  tmp=$(mktemp -d)
  chmod 777 "$tmp"   # apt downloads as its own user
  (cd "$tmp" && apt-get download -qq prometheus && dpkg-deb -x prometheus_*.deb root)
  install -m 755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$tmp"
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# The upstream implementation, used as a test oracle by the cross-checks.
if ! .venv/bin/python -c 'import re6st.registry, OpenSSL.crypto; OpenSSL.crypto.X509Req' 2>/dev/null; then
  echo "deps: installing upstream ${UPSTREAM_PIP[*]} into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q "${UPSTREAM_PIP[@]}"
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "deps: installing ${PLOT_PIP[*]} into .venv"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install -q "${PLOT_PIP[@]}"
fi
echo "deps: ok"
