# Evaluates the tree's package makefiles with Buildroot's package macros
# replaced by stand-ins, and prints the variables tools/check.py looks at
# as @@NAME@@=value (multi-line values follow on their own lines):
#
#   make -s -f mk_check.mk BR2_EXTERNAL_RE6ST_PATH=DIR [BR2_...=y ...]
#
# Nothing is built; a syntax error in a .mk file fails here too.

# As Buildroot defines them (package/pkg-utils.mk, support/misc/utils.mk).
pkgdir = $(dir $(lastword $(MAKEFILE_LIST)))
pkgname = $(lastword $(subst /, ,$(pkgdir)))
UPPERCASE = $(shell echo '$(1)' | tr 'a-z-' 'A-Z_')
qstrip = $(strip $(subst ",,$(1)))
define sep


endef

# Stand-ins: record which infrastructure a package called.
generic-package = $(call UPPERCASE,$(pkgname))_INFRA += generic
cargo-package = $(call UPPERCASE,$(pkgname))_INFRA += cargo

# Readable placeholders for Buildroot's own variables.
TARGET_DIR = /TARGET
HOST_DIR = /HOST
INSTALL = install

include $(BR2_EXTERNAL_RE6ST_PATH)/external.mk

VARS = RE6ST_VERSION RE6ST_SITE RE6ST_SITE_METHOD RE6ST_LICENSE \
	RE6ST_DEPENDENCIES RE6ST_INFRA RE6ST_CARGO_BUILD_OPTS RE6ST_CARGO_ENV \
	RE6ST_BIN RE6ST_COMMANDS RE6ST_PRE_BUILD_HOOKS RE6ST_INSTALL_TARGET_CMDS \
	RE6ST_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS

print:
	$(foreach v,$(VARS),$(info @@$(v)@@=$(strip $($(v)))))@:

.DEFAULT_GOAL := print
