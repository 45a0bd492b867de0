# re6st firmware: top-level entry points. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
export RE6ST_UPSTREAM_PYTHON ?= $(CURDIR)/.venv/bin/python

.PHONY: all deps build release check test test-all smoke lint unit fuzz-build fuzz demo demo-test bench sim clean deb deb-test

all: build

## Install every apt, pip and rustup dependency (idempotent; root for apt).
deps:
	bash scripts/deps.sh

## Debug build of the whole workspace.
build:
	$(CARGO) build --workspace

## Size-optimised multi-call binary (target/release/re6st).
release:
	$(CARGO) build --release -p re6st

## The quick tier, for a change to a parser or a state machine: formatting,
## clippy, and the tests that need no root, no namespaces, no openvpn or
## babeld and no upstream re6stnet: the unit and property tests of every
## crate (minus those that run upstream's Python or make namespaces:
## CHECK_SKIP) and the integration tests that are pure (CHECK_TESTS: the
## initramfs slot choice under sh and busybox sh, the simulator's 200-node
## network, the registry over loopback HTTP). Runs as any user (run it as
## one: a test that starts needing root then fails). The upstream oracle is
## pointed at nothing, so a test that starts needing it fails here (then
## list it in CHECK_SKIP) instead of quietly needing the venv. `--workspace`
## keeps the features of `make build`: nothing is rebuilt for another set.
CHECK_TESTS = --test bootslot_shell --test small_network --test registry
CHECK_SKIP = --skip provision::tests::retries_until_the_registry_appears \
  --skip provision::tests::wrong_fingerprint_keeps_retrying_without_writing \
  --skip provision::tests::key_generation_leaves_the_runtime_free \
  --skip mail::tests::mbox_readable_by_python \
  --skip init::tests::creates_a_usable_network \
  --skip network::tests::json_matches_upstream \
  --skip netns::tests::two_namespaces_ping_and_clean_up
# A user's PATH on Debian lacks the sbin directories, where mkfs.ext4 and
# e2fsck are (re6st-init formats and checks an image file).
check:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RE6ST_UPSTREAM_PYTHON=/nonexistent/make-check-runs-no-upstream PATH="$$PATH:/usr/sbin:/sbin" \
	  $(CARGO) test --workspace --no-fail-fast --lib $(CHECK_TESTS) -- $(CHECK_SKIP)

## Everything CI checks: lint, unit/property/cross-check/netns tests, fuzz
## targets build, the x86_64 and aarch64 router binaries run under
## qemu-user (armv7 and mipsel: test-all), firmware images booted under QEMU (smoke), the small QEMU lab
## (three routers: provisioning, all-pairs reachability, registry down with
## a reboot) and `make demo` run non-interactively. scripts/stages.sh prints
## each stage's duration at the end, also when one fails.
TEST_STAGES = deps lint unit fuzz-build smoke cross-test lab-test demo-test
test:
	STAGES_MAKE="$(MAKE)" bash scripts/stages.sh $(TEST_STAGES)

## Firmware smoke tests in `make test`: qemu-x86_64 (KVM when usable) with
## the A/B upgrade and fallback boots and a boot with its RTC at 1970 (clock
## from the registry), qemu-aarch64-virt under TCG (cold and
## warm boots). `make test-all` boots every QEMU board with every phase.
smoke:
	python3 qemu-tests/console_selftest.py
	$(MAKE) image BOARD=qemu-x86_64
	bash qemu-tests/smoke.sh qemu-x86_64
	$(MAKE) image BOARD=qemu-aarch64-virt
	SMOKE_AB=0 SMOKE_RTC=0 bash qemu-tests/smoke.sh qemu-aarch64-virt

QEMU_BOARDS = $(patsubst board/%/board.conf,%,$(shell grep -l '^QEMU_SYSTEM=' board/*/board.conf))
# QEMU boards with a router kernel (board/<board>/kernel.config); rpi4's
# is opt-in (board/rpi4/README.md).
KERNEL_BOARDS = $(patsubst board/%/kernel.config,%,$(wildcard board/qemu-*/kernel.config))
## test-all builds the router kernels (cached), so every image with one
## boots it; qemu-x86_64 then also boots at 64 MiB, and keeps 12 or more
## tunnels for 10 minutes at 64 MiB (lab-memory).
test-all: test
	set -e; for b in $(KERNEL_BOARDS); do $(MAKE) kernel BOARD=$$b; done
	set -e; for b in $(QEMU_BOARDS); do \
	  $(MAKE) image BOARD=$$b; bash qemu-tests/smoke.sh $$b; done
	$(MAKE) image BOARD=qemu-x86_64
	QEMU_MEM=64 SMOKE_AB=0 SMOKE_RTC=0 bash qemu-tests/smoke.sh qemu-x86_64
	$(MAKE) lab-memory
	$(MAKE) cross-test-all
	$(MAKE) deb-test
	$(MAKE) lab-test-all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash buildroot-external/check.sh

unit:
	$(CARGO) test --workspace

## The fuzz targets compile (stable toolchain; no sanitizer).
fuzz-build:
	@if [ -f fuzz/Cargo.toml ]; then $(CARGO) build --manifest-path fuzz/Cargo.toml --bins; fi

## Run every fuzz target for FUZZ_SECONDS each (needs cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

## A local demo network (Ctrl-C stops and cleans up).
demo: deps release
	bash scripts/demo.sh

## `make demo` without a terminal (in `make test`): the debug binary, every
## pair must reach, the drawing must have every node, DEMO_TEST_SECONDS
## more, then the same checks again; cleans up also on failure. Root.
DEMO_TEST_SECONDS ?= 30
demo-test: build
	RE6ST_BIN=$(CURDIR)/target/debug/re6st DEMO_SECONDS=$(DEMO_TEST_SECONDS) timeout -k 30 600 bash scripts/demo.sh
	@if ip netns list | grep -q '^r6demo-'; then echo "demo-test: namespaces left behind" >&2; exit 1; fi

## Benchmarks; writes bench/report.md, bench/report.json, bench/convergence.png
## and bench/scale.png (reduced runs: see the variables in scripts/bench.sh).
bench: deps release
	set -e; for b in $(KERNEL_BOARDS); do $(MAKE) kernel BOARD=$$b; done
	bash scripts/bench.sh

## Simulator sweep (1,000/3,000/10,000 nodes, 30 % random/targeted loss,
## registry down); writes bench/sim.md and bench/sim.json. Not in `make test`.
sim:
	bash scripts/sim.sh

clean:
	$(CARGO) clean

## Debian package target/debian/re6st_VERSION_ARCH.deb (cargo-deb): the
## multi-call binary with its re6stnet, re6st-conf, re6st-registry and
## re6st-ctl links, the systemd units, /etc/re6stnet, the manual pages.
deb:
	CARGO=$(CARGO) bash scripts/deb.sh

## The package's checks (root): lintian, systemd-analyze verify, install in
## a clean Debian 12 root (debootstrap, cached under target/deb-test) and
## start the registry and a node from the installed files; then an
## /etc/re6stnet made by upstream's re6st-conf and registry, served and used
## by the installed binaries. Not in `make test` (see docs/testing.md).
deb-test: deps deb
	bash scripts/deb-test.sh

## Cross builds of the multi-call binary for the boards (see cross/README.md):
## `make cross TARGET=mipsel` -> target/cross/mipsel/re6st (stripped);
## TARGET: x86_64 aarch64 armv7 mipsel. CROSS_OPENSSL=debian (default:
## Debian's libssl3, dynamic) | vendored | debian-static (measurement variants).
.PHONY: cross cross-all cross-check
CROSS_OPENSSL ?= debian
cross:
	@test -n "$(TARGET)" || { echo "usage: make cross TARGET=<x86_64|aarch64|armv7|mipsel>" >&2; exit 2; }
	bash cross/build.sh --openssl=$(CROSS_OPENSSL) $(TARGET)

cross-all:
	bash cross/build.sh --openssl=$(CROSS_OPENSSL) x86_64 aarch64 armv7 mipsel

## file/ABI checks and runs under qemu-user (all built targets, or TARGET=...).
cross-check:
	bash cross/check.sh $(TARGET)

## In `make test`, after smoke, whose images cross-build them: cross/check.sh
## on the x86_64 and aarch64 binaries (ELF, ABI, libraries; usage, every
## command's --help and `re6st conf` against a registry, under qemu-user).
## The 32-bit armv7 and mipsel binaries need their own release builds (LTO,
## one codegen unit; mipsel also builds std): 10 and 19 minutes measured on a
## busy 2-core machine, more than `make test` can afford: `make test-all`.
.PHONY: cross-test cross-test-all
cross-test:
	bash cross/check.sh x86_64 aarch64

cross-test-all:
	bash cross/build.sh --openssl=$(CROSS_OPENSSL) armv7 mipsel
	bash cross/check.sh all

## Firmware images (scripts/image.sh, board/<name>/, rootfs/):
## `make image BOARD=qemu-x86_64` -> target/images/<board>/ (rootfs.squashfs,
## vmlinuz, initramfs.cpio.xz, data.img, manifest.txt, size-report.txt);
## `make test-image BOARD=...` boots it under QEMU (qemu-tests/smoke.sh).
## `make kernel BOARD=...`: the board's router kernel (scripts/kernel.sh,
## cached in ~/.cache/re6st/kernel), which `make image` then uses instead of
## Debian's. Not in `make test` (a build takes minutes); in test-all and bench.
.PHONY: image test-image kernel
BOARD ?= qemu-x86_64
image:
	bash scripts/image.sh $(BOARD)

kernel:
	bash scripts/kernel.sh $(BOARD)

test-image: image
	bash qemu-tests/smoke.sh $(BOARD)

## Multi-router QEMU labs (qemu-tests/lab.py; topologies and format in
## qemu-tests/README.md). Use the images in LAB_IMAGES (default
## target/images: `make image BOARD=...` first) and the registry binary
## RE6ST_HOST_BIN (default target/debug/re6st). Root.
## `make qemu-lab TOPO=qemu-tests/topologies/mixed.toml`: boots it, prints how
## to attach to each console and the overlay (text, DOT, SVG); Ctrl-C tears
## everything down. `make lab-test`: the small topology (for `make test`);
## `make lab-test-all` (for `make test-all`): the mixed topology, then the
## transit one (an armv7 router; the underlay cut and the power-off, on a
## path the topology forces through a router in transit).
## Logs: target/lab/<topology>/ (summary.txt, <scenario>/result.txt, consoles).
.PHONY: qemu-lab lab-test lab-test-all lab-memory
TOPO ?= qemu-tests/topologies/mixed.toml
# In `make test`: (a), the status page on a router's LAN (Chromium's
# screenshot in target/lab/small/status-page/), and (d) with (c). The
# faults (b) need a topology that forces traffic through a router in
# transit: transit.toml, in test-all.
LAB_TEST_SCENARIOS ?= connectivity,status-page,registry-down
LAB_ALL_SCENARIOS ?= connectivity,reboot,registry-down,upgrade
LAB_TRANSIT_SCENARIOS ?= connectivity,cut,poweroff
qemu-lab:
	python3 qemu-tests/lab.py up $(TOPO)

lab-test: build
	python3 qemu-tests/lab.py test qemu-tests/topologies/small.toml $(LAB_TEST_SCENARIOS)

## One router with 12 or more tunnels (memory.toml: 12 nodes on the host,
## client count 10) at 64 MiB for 10 minutes: no OOM kill, no restart,
## MemAvailable >= 16 MiB (LAB_BOARD, QEMU_MEM, LAB_MEMORY_SECONDS change it).
lab-memory: build
	python3 qemu-tests/lab.py test qemu-tests/topologies/memory.toml memory

lab-test-all:
	python3 qemu-tests/lab.py test qemu-tests/topologies/mixed.toml $(LAB_ALL_SCENARIOS)
	python3 qemu-tests/lab.py test qemu-tests/topologies/transit.toml $(LAB_TRANSIT_SCENARIOS)
