#!/usr/bin/env bash
# `make deb`: target/debian/re6st_VERSION_ARCH.deb with cargo-deb (metadata
# in firmware/re6st/Cargo.toml), the manual pages generated from the
# command-line definitions (firmware/re6st/examples/manpages.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

# cargo-deb from crates.io, pinned; installed here only, once (it takes
# minutes to build, and `make test` does not need it).
CARGO_DEB_VERSION=3.8.0
if ! "$CARGO" deb --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION\$"; then
  echo "deb: installing cargo-deb $CARGO_DEB_VERSION"
  "$CARGO" install --locked "cargo-deb@$CARGO_DEB_VERSION"
fi

# The pages go to target/man whatever CARGO_TARGET_DIR is: the package's
# assets name that place.
rm -rf target/man
"$CARGO" run -q -p re6st --example manpages -- target/man
gzip -9n target/man/*.[18]

# The C that is compiled in (SQLite) gets Debian's hardening flags
# (fortified functions, stack protector); the Rust code does not use them.
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
export CFLAGS
mkdir -p target/debian
"$CARGO" deb -p re6st --output target/debian/
ls -l target/debian/re6st_*.deb
