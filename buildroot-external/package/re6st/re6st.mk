################################################################################
#
# re6st
#
################################################################################

# The source is this checkout, the directory above the br2-external tree;
# the version is the Cargo workspace's.
RE6ST_SITE = $(BR2_EXTERNAL_RE6ST_PATH)/..
RE6ST_SITE_METHOD = local
RE6ST_VERSION = $(shell sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' $(BR2_EXTERNAL_RE6ST_PATH)/../Cargo.toml)
# As declared by Cargo.toml ([workspace.package] license). The repository
# has no license text yet, hence no RE6ST_LICENSE_FILES.
RE6ST_LICENSE = GPL-2.0-or-later

# Copy only the Cargo workspace (every member is under firmware/): the
# checkout also holds build outputs (target/ alone can be gigabytes),
# Python venvs, and maybe Buildroot and its output directory.
RE6ST_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--include=/Cargo.toml --include=/Cargo.lock --include='/firmware/***' \
	--exclude='*'

RE6ST_DEPENDENCIES = openssl
# After busybox, so that our /sbin/init wins should its init applet be on
# (board/common/busybox.fragment turns it off).
RE6ST_DEPENDENCIES += $(if $(BR2_PACKAGE_BUSYBOX),busybox)

# /sbin/init -> /usr/bin/re6st (relative, as scripts/image.sh links it).
# With a merged /usr the link lives in /usr/sbin, one level less deep.
RE6ST_INIT_LINK = $(if $(BR2_ROOTFS_MERGED_USR),../bin/re6st,../usr/bin/re6st)

# argv[0] names of the multi-call binary (firmware/re6st/src/main.rs),
# `init` aside.
RE6ST_COMMANDS = re6stnet re6st-conf re6st-registry re6st-ctl re6st-lan re6st-ovpn-hook

ifeq ($(BR2_PACKAGE_RE6ST_COMMAND_LINKS),y)
define RE6ST_INSTALL_COMMAND_LINKS
	$(foreach c,$(RE6ST_COMMANDS),ln -sf re6st $(TARGET_DIR)/usr/bin/$(c)$(sep))
endef
endif

define RE6ST_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(RE6ST_BIN) $(TARGET_DIR)/usr/bin/re6st
	mkdir -p $(TARGET_DIR)/sbin
	ln -sf $(RE6ST_INIT_LINK) $(TARGET_DIR)/sbin/init
	$(RE6ST_INSTALL_COMMAND_LINKS)
endef

ifeq ($(BR2_PACKAGE_RE6ST_PREBUILT),y)

# A binary built outside Buildroot (mipsel: `make cross TARGET=mipsel`).
RE6ST_BIN = $(call qstrip,$(BR2_PACKAGE_RE6ST_PREBUILT_PATH))

define RE6ST_BUILD_CMDS
	@test -n "$(RE6ST_BIN)" || \
		{ echo "re6st: BR2_PACKAGE_RE6ST_PREBUILT_PATH is empty" >&2; exit 1; }
	@test -f "$(RE6ST_BIN)" || \
		{ echo "re6st: no $(RE6ST_BIN) (build it first: make cross TARGET=...)" >&2; exit 1; }
endef

$(eval $(generic-package))

else # build from source with cargo

RE6ST_DEPENDENCIES += host-pkgconf

# Only the multi-call binary, not the whole workspace (tests, simulator,
# benchmarks).
RE6ST_CARGO_BUILD_OPTS = --package re6st --bin re6st

# Buildroot's PKG_CARGO_ENV sets every cargo profile from BR2_OPTIMIZE_* and
# BR2_ENABLE_LTO (16 codegen units, no LTO); put back the workspace's
# [profile.release] (opt-level z, fat LTO, one codegen unit; panic=abort
# and strip are not overridden). Later assignments win. openssl-sys finds
# the target's OpenSSL through Buildroot's pkg-config, never a vendored copy.
RE6ST_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
	OPENSSL_NO_VENDOR=1

RE6ST_BIN = $(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/re6st

# Cargo.lock pulls crates that declare rust-version 1.88 (igd-next,
# postcard, icu_*): say so instead of failing deep inside cargo.
RE6ST_MIN_RUST = 1.88
define RE6ST_CHECK_RUSTC
	@v=$$($(HOST_DIR)/bin/rustc --version | cut -d' ' -f2); \
	if [ "$$(printf '%s\n' $(RE6ST_MIN_RUST) "$$v" | sort -V | head -n1)" != $(RE6ST_MIN_RUST) ]; then \
		echo "re6st: needs Rust >= $(RE6ST_MIN_RUST); this Buildroot has $$v (use Buildroot 2025.08 or newer)" >&2; \
		exit 1; \
	fi
endef
RE6ST_PRE_BUILD_HOOKS += RE6ST_CHECK_RUSTC

# The cargo infrastructure vendors crates at download time, which the local
# site method skips: fetch them into Buildroot's cargo home (needs network
# on the first build) so that `cargo build --offline --locked` finds them.
define RE6ST_CARGO_FETCH
	cd $(@D) && $(HOST_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		cargo fetch --locked --manifest-path Cargo.toml
endef
RE6ST_PRE_BUILD_HOOKS += RE6ST_CARGO_FETCH

$(eval $(cargo-package))

endif
