#!/usr/bin/env python3
"""Offline checks of the br2-external tree, run by ../check.sh.

  check.py [--buildroot DIR]

Nothing is built or downloaded. Each problem is printed as "FAIL: ..." and
makes the exit status 1.

1. Kconfig, against a stub of Buildroot (always): our Config.in files parse
   without warnings under a small top-level Kconfig modelling the Buildroot
   symbols they depend on or select (STUB below, incl. which architectures
   Buildroot's Rust supports); every symbol they reference is defined;
   every symbol they define is ours (BR2_PACKAGE_RE6ST*); each defconfig
   loads and keeps the values it gives our symbols.
2. re6st.mk, evaluated by make with Buildroot's package macros stubbed
   (mk_check.mk): version, site, license, dependencies, which
   infrastructure is used, the cargo options against the workspace.
3. Paths: every $(BR2_EXTERNAL_RE6ST_PATH)/... named in the defconfigs,
   Kconfig and make files and the repository paths the scripts name exist;
   each defconfig's board has its board.conf, profile and kernel fragment.
4. With --buildroot DIR (a Buildroot source tree): Buildroot's own
   br2-external script accepts the tree, and each defconfig loaded into
   DIR's real Kconfig keeps every value it sets (an unknown or dependency-
   starved BR2_ option is dropped silently by `make defconfig`); the paths
   it names inside Buildroot exist; DIR's Rust is new enough.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib

import kconfiglib

EXT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(EXT)
OURS = "BR2_PACKAGE_RE6ST"
# Locked dependencies need this Rust (igd-next, postcard, icu_* declare it).
MIN_RUST = (1, 88)

# Buildroot's .config has no CONFIG_ prefix.
os.environ["CONFIG_"] = ""

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def note(msg):
    print(f"  {msg}")


def rel(path):
    return os.path.relpath(path, REPO)


# A model of the Buildroot symbols our Config.in files use, reduced to our
# four boards; from Buildroot 2025.08 (arch/Config.in*, toolchain/,
# package/rustc/Config.in.host, package/openssl/Config.in ...).
STUB = r"""
mainmenu "Stub of Buildroot for the RE6ST br2-external check"

choice
	prompt "Target Architecture"
config BR2_arm
	bool "ARM (little endian)"
config BR2_aarch64
	bool "AArch64 (little endian)"
config BR2_mipsel
	bool "MIPS (little endian)"
config BR2_x86_64
	bool "x86_64"
endchoice

config BR2_cortex_a15
	bool "cortex-A15"
	depends on BR2_arm
	select BR2_ARM_CPU_ARMV7A
config BR2_ARM_CPU_ARMV7A
	bool
config BR2_ARM_EABIHF
	bool "EABIhf"
	depends on BR2_arm
config BR2_cortex_a57
	bool "cortex-A57"
	depends on BR2_aarch64
config BR2_mips_32r2
	bool "Generic MIPS32R2"
	depends on BR2_mipsel
config BR2_MIPS_SOFT_FLOAT
	bool "Use soft-float"
	default y
	depends on BR2_mipsel
config BR2_USE_MMU
	def_bool y

choice
	prompt "C library"
config BR2_TOOLCHAIN_BUILDROOT_GLIBC
	bool "glibc"
	select BR2_TOOLCHAIN_USES_GLIBC
config BR2_TOOLCHAIN_BUILDROOT_MUSL
	bool "musl"
endchoice
config BR2_TOOLCHAIN_USES_GLIBC
	bool

# package/rustc/Config.in.host: the Rust targets Buildroot has a standard
# library for (tier 1 and 2); no MIPS since 2024.08.
config BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS
	bool
	default y if BR2_x86_64 && BR2_TOOLCHAIN_USES_GLIBC
	default y if BR2_aarch64 && BR2_TOOLCHAIN_USES_GLIBC
	default y if BR2_ARM_CPU_ARMV7A && BR2_ARM_EABIHF && BR2_TOOLCHAIN_USES_GLIBC
config BR2_PACKAGE_HOST_RUSTC
	bool "host rustc"

config BR2_ROOTFS_MERGED_USR
	bool "Use symlinks to /usr for /bin, /sbin and /lib"
config BR2_PACKAGE_BUSYBOX
	bool "BusyBox"
	default y
config BR2_PACKAGE_OPENSSL
	bool "openssl support"
config BR2_PACKAGE_OPENSSL_FORCE_LIBOPENSSL
	bool
config BR2_PACKAGE_OPENVPN
	bool "openvpn"
	depends on BR2_USE_MMU
config BR2_PACKAGE_BABELD
	bool "babeld"
	depends on BR2_USE_MMU

menu "External options"
source "$BR2_EXTERNAL_RE6ST_PATH/Config.in"
endmenu
"""

ASSIGN = re.compile(r"^(BR2_\w+)=(.*)$")
UNSET = re.compile(r"^# (BR2_\w+) is not set$")


def defconfigs():
    d = os.path.join(EXT, "configs")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith("_defconfig"))


def parse_defconfig(path):
    """[(line number, symbol, wanted value as Kconfig shows it)]"""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = ASSIGN.match(line)
            if m:
                v = m.group(2)
                if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                    v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                out.append((n, m.group(1), v))
                continue
            m = UNSET.match(line)
            if m:
                out.append((n, m.group(1), "n"))
            elif line.startswith("BR2_"):
                fail(f"{rel(path)}:{n}: unparsable line {line!r}")
    return out


def our_file(filename):
    return os.path.abspath(filename).startswith(EXT + os.sep)


def load(kconf, path, only=None):
    """Loads a defconfig; fails on each assignment that does not hold."""
    name = os.path.basename(path)
    kconf.load_config(path, replace=True)
    bad = 0
    for n, sym, want in parse_defconfig(path):
        if only and not sym.startswith(only):
            continue
        s = kconf.syms.get(sym)
        if s is None or not s.nodes:
            fail(f"{name}:{n}: {sym} is not a known symbol")
            bad += 1
        elif s.str_value != want:
            why = f"depends on {kconfiglib.expr_str(s.direct_dep)}" if s.direct_dep is not kconf.y else ""
            fail(f"{name}:{n}: {sym}={want!r} does not hold, got {s.str_value!r} {why}".rstrip())
            bad += 1
    return bad


# --- 1. Kconfig against the stub -----------------------------------------

def check_stub():
    print("kconfig (stub of Buildroot):")
    os.environ["BR2_EXTERNAL_RE6ST_PATH"] = EXT
    with tempfile.TemporaryDirectory() as tmp:
        top = os.path.join(tmp, "Config.in")
        with open(top, "w") as f:
            f.write(STUB)
        try:
            kconf = kconfiglib.Kconfig(top, warn_to_stderr=False)
        except kconfiglib.KconfigError as e:
            fail(f"our Kconfig files do not parse: {e}")
            return
    for w in kconf.warnings:
        fail(f"kconfig warning: {w}")
    undefined = sorted(s.name for s in kconf.syms.values() if not s.nodes and s is not kconf.modules)
    if undefined:
        fail(f"symbols referenced but defined neither by our files nor by the stub "
             f"(a typo, or add them to STUB in tools/check.py): {', '.join(undefined)}")
    ours = sorted({n.item.name for n in kconf.node_iter()
                   if isinstance(n.item, kconfiglib.Symbol) and our_file(n.filename)})
    for s in ours:
        if not s.startswith(OURS):
            fail(f"{s} is defined by our Config.in but is not in our namespace {OURS}*")
    note(f"our symbols: {' '.join(ours)}")

    def names(items):
        return {i.name for i in items}
    re6st = kconf.syms.get(OURS)
    if re6st is None or not re6st.nodes:
        fail(f"{OURS} is not defined")
        return
    want = {"BR2_PACKAGE_OPENSSL", "BR2_PACKAGE_OPENVPN", "BR2_PACKAGE_BABELD"}
    got = names(sel for sel, _ in re6st.selects)
    if not want <= got:
        fail(f"{OURS} must select {', '.join(sorted(want - got))}")
    src = kconf.syms.get(OURS + "_FROM_SOURCE")
    if src is None or "BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS" not in names(kconfiglib.expr_items(src.direct_dep)):
        fail(f"{OURS}_FROM_SOURCE must depend on BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS")
    elif "BR2_PACKAGE_HOST_RUSTC" not in names(sel for sel, _ in src.selects):
        fail(f"{OURS}_FROM_SOURCE must select BR2_PACKAGE_HOST_RUSTC")

    for path in defconfigs():
        name = os.path.basename(path)
        before = len(kconf.warnings)
        if load(kconf, path, only=OURS):
            continue
        for w in kconf.warnings[before:]:
            if OURS in w:
                fail(f"{name}: {w}")
        if kconf.syms[OURS].str_value != "y":
            fail(f"{name}: does not enable {OURS}")
            continue
        mode = [s for s in ("FROM_SOURCE", "PREBUILT") if kconf.syms[f"{OURS}_{s}"].str_value == "y"]
        if mode == ["PREBUILT"] and not kconf.syms[f"{OURS}_PREBUILT_PATH"].str_value:
            fail(f"{name}: {OURS}_PREBUILT without {OURS}_PREBUILT_PATH")
        STUB_RESULTS[name] = summary(kconf)
        note(f"{name}: {STUB_RESULTS[name]}")


# name -> summary() under the stub, compared with the real Kconfig's.
STUB_RESULTS = {}


def summary(kconf):
    """What a configuration means for us, in words."""
    arch = next((a for a in ("BR2_x86_64", "BR2_aarch64", "BR2_arm", "BR2_mipsel")
                 if kconf.syms[a].str_value == "y"), "?")
    mode = [s for s in ("FROM_SOURCE", "PREBUILT") if kconf.syms[f"{OURS}_{s}"].str_value == "y"]
    return (f"{arch[4:]}, re6st={kconf.syms[OURS].str_value} {'/'.join(mode) or 'no binary'}, "
            f"Buildroot Rust supports the target: {kconf.syms['BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS'].str_value}")


# --- 2. the package makefile ---------------------------------------------

def make_vars(**config):
    cmd = ["make", "--no-print-directory", "-s", "-f", os.path.join(EXT, "tools", "mk_check.mk"),
           f"BR2_EXTERNAL_RE6ST_PATH={EXT}"] + [f"{k}={v}" for k, v in config.items()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        fail(f"re6st.mk does not evaluate ({' '.join(cmd[5:])}): {p.stderr.strip()}")
        return {}
    out, key = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^@@(\w+)@@=(.*)$", line)
        if m:
            key = m.group(1)
            out[key] = m.group(2)
        elif key:
            out[key] += "\n" + line
    return out


def check_mk():
    print("package/re6st/re6st.mk:")
    mk = os.path.join(EXT, "package", "re6st", "re6st.mk")
    text = open(mk).read()
    for var in ("RE6ST_VERSION", "RE6ST_SITE", "RE6ST_SITE_METHOD", "RE6ST_LICENSE", "RE6ST_DEPENDENCIES"):
        if not re.search(rf"^{var}\s*\+?=", text, re.M):
            fail(f"re6st.mk does not set {var}")
    if not re.search(r"^\$\(eval \$\(cargo-package\)\)$", text, re.M):
        fail("re6st.mk does not call $(eval $(cargo-package))")

    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        ws = tomllib.load(f)
    with open(os.path.join(REPO, "firmware", "re6st", "Cargo.toml"), "rb") as f:
        crate = tomllib.load(f)
    wsp = ws["workspace"]["package"]
    release = ws["profile"]["release"]

    for mode, config in (("from source", {"BR2_PACKAGE_RE6ST_FROM_SOURCE": "y"}),
                         ("prebuilt", {"BR2_PACKAGE_RE6ST_PREBUILT": "y",
                                       "BR2_PACKAGE_RE6ST_PREBUILT_PATH": '"/prebuilt/re6st"'})):
        v = make_vars(BR2_PACKAGE_RE6ST="y", BR2_PACKAGE_BUSYBOX="y", **config)
        if not v:
            continue
        if v.get("RE6ST_VERSION") != wsp["version"]:
            fail(f"{mode}: RE6ST_VERSION={v.get('RE6ST_VERSION')!r}, Cargo.toml says {wsp['version']!r}")
        if os.path.realpath(v.get("RE6ST_SITE", "")) != os.path.realpath(REPO):
            fail(f"{mode}: RE6ST_SITE={v.get('RE6ST_SITE')!r} is not the repository root")
        if v.get("RE6ST_SITE_METHOD") != "local":
            fail(f"{mode}: RE6ST_SITE_METHOD={v.get('RE6ST_SITE_METHOD')!r}, want local")
        if v.get("RE6ST_LICENSE") != wsp["license"]:
            fail(f"{mode}: RE6ST_LICENSE={v.get('RE6ST_LICENSE')!r}, Cargo.toml says {wsp['license']!r}")
        deps = v.get("RE6ST_DEPENDENCIES", "").split()
        want = ["openssl", "busybox"] + (["host-pkgconf"] if mode == "from source" else [])
        for d in want:
            if d not in deps:
                fail(f"{mode}: RE6ST_DEPENDENCIES lacks {d}: {deps}")
        infra = v.get("RE6ST_INFRA", "").split()
        if infra != (["cargo"] if mode == "from source" else ["generic"]):
            fail(f"{mode}: package infrastructures evaluated: {infra}")
        cmds = v.get("RE6ST_INSTALL_TARGET_CMDS", "")
        for piece in ("/TARGET/usr/bin/re6st", "../usr/bin/re6st /TARGET/sbin/init"):
            if piece not in cmds:
                fail(f"{mode}: RE6ST_INSTALL_TARGET_CMDS lacks {piece!r}:\n{cmds}")
        if mode == "prebuilt" and v.get("RE6ST_BIN") != "/prebuilt/re6st":
            fail(f"prebuilt: RE6ST_BIN={v.get('RE6ST_BIN')!r}")
        if mode == "from source":
            bins = [b["name"] for b in crate.get("bin", [])]
            opts = v.get("RE6ST_CARGO_BUILD_OPTS", "")
            if f"--package {crate['package']['name']} --bin re6st" not in opts or "re6st" not in bins:
                fail(f"RE6ST_CARGO_BUILD_OPTS={opts!r} does not build the re6st binary of "
                     f"{crate['package']['name']} (bins: {bins})")
            env = dict(kv.split("=", 1) for kv in v.get("RE6ST_CARGO_ENV", "").split())
            lto = release.get("lto")
            expect = {"CARGO_PROFILE_RELEASE_OPT_LEVEL": str(release.get("opt-level")),
                      "CARGO_PROFILE_RELEASE_LTO": {True: "true", False: "false"}.get(lto, str(lto)),
                      "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": str(release.get("codegen-units"))}
            for k, want_v in expect.items():
                if env.get(k) != want_v:
                    fail(f"RE6ST_CARGO_ENV {k}={env.get(k)!r}, the workspace's [profile.release] says {want_v!r}")
            if "RE6ST_CARGO_FETCH" not in v.get("RE6ST_PRE_BUILD_HOOKS", ""):
                fail("no cargo fetch hook: the local site method gets no vendored crates")
        note(f"{mode}: version {v.get('RE6ST_VERSION')}, license {v.get('RE6ST_LICENSE')}, "
             f"dependencies {' '.join(deps)}, infrastructure {' '.join(infra)}")

    # The local site method copies the checkout with rsync through our
    # filter: the workspace must come through whole, and nothing else.
    v = make_vars(BR2_PACKAGE_RE6ST="y", BR2_PACKAGE_RE6ST_FROM_SOURCE="y")
    members = ws["workspace"]["members"]
    filters = shlex.split(v.get("RE6ST_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS", ""))
    if shutil.which("rsync"):
        with tempfile.TemporaryDirectory() as tmp:
            p = subprocess.run(["rsync", "-an", "--out-format=%n"] + filters + [REPO + "/", tmp + "/"],
                               capture_output=True, text=True, timeout=20)
        copied = set(p.stdout.split())
        if p.returncode != 0:
            fail(f"rsync with RE6ST_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS {filters}: {p.stderr.strip()}")
        for f in ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members] + ["firmware/re6st/src/main.rs"]:
            if f not in copied:
                fail(f"the source copy (RE6ST_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS) lacks {f}")
        extra = sorted({c.split("/")[0] for c in copied} - {"./", ".", "Cargo.toml", "Cargo.lock", "firmware"})
        if extra:
            fail(f"the source copy takes more than the workspace: {extra}")
        note(f"source copy (rsync filter): {len(copied)} entries, the workspace's {len(members)} members")
    else:
        outside = [m for m in members if not m.startswith("firmware/")]
        if outside:
            fail(f"workspace members outside firmware/, which the source copy leaves out: {outside}")
        note("rsync not installed: source copy filter checked against the member list only")

    # The symlinks installed by BR2_PACKAGE_RE6ST_COMMAND_LINKS are the
    # binary's argv[0] names.
    v = make_vars(BR2_PACKAGE_RE6ST="y", BR2_PACKAGE_RE6ST_FROM_SOURCE="y", BR2_PACKAGE_RE6ST_COMMAND_LINKS="y")
    main = open(os.path.join(REPO, "firmware", "re6st", "src", "main.rs")).read()
    names = set(re.findall(r'^\s*\("([\w-]+)", "[\w-]+", ', main, re.M)) - {"init"}
    if not names or set(v.get("RE6ST_COMMANDS", "").split()) != names:
        fail(f"RE6ST_COMMANDS={v.get('RE6ST_COMMANDS')!r}, firmware/re6st/src/main.rs has {sorted(names)}")
    links = v.get("RE6ST_INSTALL_TARGET_CMDS", "")
    for c in names:
        if f"ln -sf re6st /TARGET/usr/bin/{c}" not in links:
            fail(f"command links: no /usr/bin/{c}")
    v = make_vars(BR2_PACKAGE_RE6ST="y", BR2_PACKAGE_RE6ST_FROM_SOURCE="y", BR2_ROOTFS_MERGED_USR="y")
    if "ln -sf ../bin/re6st /TARGET/sbin/init" not in v.get("RE6ST_INSTALL_TARGET_CMDS", ""):
        fail("merged /usr: /sbin/init (in /usr/sbin) must link to ../bin/re6st")


# --- 3. paths --------------------------------------------------------------

EXT_REF = re.compile(r"\$\(BR2_EXTERNAL_RE6ST_PATH\)(/[\w./+-]*)")
SH_REF = re.compile(r'\$(REPO_DIR|EXT_DIR)(/[\w./+-]*)')


def check_paths():
    print("paths:")
    files = defconfigs() + [os.path.join(r, f) for r, _, fs in os.walk(EXT) for f in fs
                            if f in ("Config.in", "external.mk") or f.endswith((".mk", ".sh"))]
    files = [f for f in files if "/tools/" not in f]
    seen = set()
    for path in files:
        text = open(path).read()
        refs = [(m.group(1), os.path.normpath(EXT + m.group(1))) for m in EXT_REF.finditer(text)]
        for m in SH_REF.finditer(text):
            base = EXT if m.group(1) == "EXT_DIR" else REPO
            refs.append((m.group(0), os.path.normpath(base + m.group(2))))
        for ref, target in refs:
            if target.startswith(os.path.join(REPO, "target") + os.sep):
                note(f"{rel(path)}: {ref}: build output (make cross), not checked")
                continue
            if not os.path.exists(target.rstrip("/")):
                fail(f"{rel(path)}: {ref} -> {rel(target)} does not exist")
            seen.add(target)
    note(f"{len(seen)} distinct paths exist")
    for f in ("sbin/ip", "etc/udhcpc/default.script"):
        if not os.access(os.path.join(REPO, "rootfs", f), os.X_OK):
            fail(f"rootfs/{f} is not executable (post-build.sh checks it on the target)")
    for s in ("post-build.sh", "post-image.sh"):
        if not os.access(os.path.join(EXT, "board", "common", s), os.X_OK):
            fail(f"board/common/{s} is not executable: Buildroot runs it directly")
    for path in defconfigs():
        conf = dict((s, v) for _, s, v in parse_defconfig(path))
        board = conf.get("BR2_ROOTFS_POST_SCRIPT_ARGS", "")
        name = os.path.basename(path)
        dirs = [d for d in (os.path.join(REPO, "board", board), os.path.join(EXT, "board", board))
                if board and os.path.isfile(os.path.join(d, "board.conf"))]
        if not dirs:
            fail(f"{name}: board {board!r} has no board.conf in board/ or buildroot-external/board/")
            continue
        if not os.path.isfile(os.path.join(dirs[0], "profile")):
            fail(f"{name}: {rel(dirs[0])} has no profile")
        frag = f"$(BR2_EXTERNAL_RE6ST_PATH)/board/{board}/linux.fragment"
        if frag not in conf.get("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", ""):
            fail(f"{name}: the kernel fragments do not include {frag}")
        note(f"{name}: board {board} from {rel(dirs[0])}")
        # A custom kernel version needs its tarball's hash when hashes are
        # enforced (the kernel and, as its headers, linux-headers).
        if conf.get("BR2_DOWNLOAD_FORCE_CHECK_HASHES") == "y":
            tarball = f"linux-{conf.get('BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE')}.tar.xz"
            pdir = conf.get("BR2_GLOBAL_PATCH_DIR", "").replace("$(BR2_EXTERNAL_RE6ST_PATH)", EXT)
            for pkg in ("linux", "linux-headers"):
                hfile = os.path.join(pdir, pkg, f"{pkg}.hash")
                ok = os.path.isfile(hfile) and any(
                    re.match(rf"^sha256\s+[0-9a-f]{{64}}\s+{re.escape(tarball)}$", line)
                    for line in open(hfile))
                if not ok:
                    fail(f"{name}: no sha256 of {tarball} in {rel(hfile)} (BR2_DOWNLOAD_FORCE_CHECK_HASHES)")


# --- 4. the real Buildroot ------------------------------------------------

def check_buildroot(br):
    print(f"buildroot ({br}):")
    br = os.path.abspath(br)
    if not os.path.isfile(os.path.join(br, "Config.in")) or not os.path.isdir(os.path.join(br, "package")):
        fail(f"{br} is not a Buildroot source tree")
        return
    mk = open(os.path.join(br, "Makefile")).read()
    m = re.search(r"^export BR2_VERSION := (\S+)", mk, re.M)
    version = m.group(1) if m else "?"
    m = re.search(r"^RUST_VERSION = (\d+)\.(\d+)", open(os.path.join(br, "package", "rust", "rust.mk")).read(), re.M)
    rust = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if rust < MIN_RUST:
        fail(f"Buildroot {version} ships Rust {rust[0]}.{rust[1]}; Cargo.lock needs "
             f"{MIN_RUST[0]}.{MIN_RUST[1]} (Buildroot 2025.08 or newer)")
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run(["bash", "support/scripts/br2-external", "-d", out, EXT],
                           cwd=br, capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            fail(f"Buildroot's br2-external script rejects the tree: {p.stderr.strip()}")
            return
        env = dict(BR2_VERSION_FULL=version, HOSTARCH="x86_64", BASE_DIR=out, BR2_BASE_DIR=out,
                   HOST_GCC_VERSION="12 2", BR2_DEFCONFIG="", BR2_SKIP_LEGACY="",
                   BR2_EXTERNAL_RE6ST_PATH=EXT, srctree=br)
        os.environ.update(env)
        cwd = os.getcwd()
        os.chdir(br)
        try:
            kconf = kconfiglib.Kconfig("Config.in", warn_to_stderr=False)
        except kconfiglib.KconfigError as e:
            fail(f"Buildroot's Kconfig with our tree does not parse: {e}")
            return
        finally:
            os.chdir(cwd)
    for w in kconf.warnings:
        if EXT in w or OURS in w:
            fail(f"kconfig warning: {w}")
    note(f"Buildroot {version}, Rust {rust[0]}.{rust[1]}, {len(kconf.syms)} symbols")
    for path in defconfigs():
        name = os.path.basename(path)
        if load(kconf, path) == 0:
            note(f"{name}: every line holds; {summary(kconf)}")
        for sym in ("BR2_TOOLCHAIN_USES_GLIBC", "BR2_PACKAGE_LIBOPENSSL", "BR2_PACKAGE_OPENVPN",
                    "BR2_PACKAGE_BABELD", "BR2_PACKAGE_BUSYBOX", "BR2_INIT_NONE",
                    "BR2_PACKAGE_HOST_UTIL_LINUX"):
            if kconf.syms[sym].str_value != "y":
                fail(f"{name}: {sym} is {kconf.syms[sym].str_value!r} in Buildroot's Kconfig")
        if kconf.syms[f"{OURS}_FROM_SOURCE"].str_value == "y" and kconf.syms["BR2_PACKAGE_HOST_RUSTC"].str_value != "y":
            fail(f"{name}: built from source without BR2_PACKAGE_HOST_RUSTC")
        if name in STUB_RESULTS and STUB_RESULTS[name] != summary(kconf):
            fail(f"{name}: the stub says {STUB_RESULTS[name]!r}, Buildroot {summary(kconf)!r}: update STUB")
        for _, sym, v in parse_defconfig(path):
            if sym.endswith(("_CONFIG_FILE", "_CONFIG_FRAGMENT_FILES")):
                for f in v.split():
                    if "$(" not in f and not os.path.exists(os.path.join(br, f)):
                        fail(f"{name}: {sym}: {f} is not in {br}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buildroot", metavar="DIR", help="also check against this Buildroot source tree")
    args = ap.parse_args()
    check_stub()
    check_mk()
    check_paths()
    if args.buildroot:
        check_buildroot(args.buildroot)
    if failures:
        print(f"{len(failures)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
