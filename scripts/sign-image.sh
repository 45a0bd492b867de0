#!/usr/bin/env bash
# Signs a firmware root filesystem image for `re6st init upgrade`.
#
#   scripts/sign-image.sh IMAGE BOARD ARCH VERSION   writes IMAGE.manifest
#   scripts/sign-image.sh --public-key               prints the public key's path
#
# The key pair (Ed25519) is made once, at the first build, in
# RE6ST_SIGNING_DIR (default ~/.cache/re6st/signing: outside the
# repository, kept across builds and `make clean`): upgrade-key.pem (private,
# mode 600) and upgrade-key.pub.pem, which scripts/image.sh puts in every
# image as /etc/re6st/upgrade-key.pem. A router accepts only images whose
# manifest verifies with the key of the image it runs: lose the private key
# and routers need a reflash (or an image signed with it) to change keys.
# Manifest format: firmware/re6st-init/src/manifest.rs.
set -euo pipefail

DIR=${RE6ST_SIGNING_DIR:-${HOME:-/root}/.cache/re6st/signing}
KEY=$DIR/upgrade-key.pem
PUB=$DIR/upgrade-key.pub.pem
die() { echo "sign-image: error: $*" >&2; exit 1; }

if [ ! -f "$KEY" ]; then
  mkdir -p "$DIR"
  (umask 077 && openssl genpkey -algorithm ed25519 -out "$KEY.tmp") || die "openssl genpkey failed"
  mv "$KEY.tmp" "$KEY"
  echo "sign-image: new signing key $KEY" >&2
fi
[ -f "$PUB" ] || openssl pkey -in "$KEY" -pubout -out "$PUB"

if [ "${1:-}" = --public-key ]; then
  echo "$PUB"
  exit 0
fi
[ $# = 4 ] || die "usage: $0 IMAGE BOARD ARCH VERSION | --public-key"
IMAGE=$1 BOARD=$2 ARCH=$3 VERSION=$4
[ -f "$IMAGE" ] || die "no $IMAGE"
KEY_ID=$(openssl pkey -pubin -in "$PUB" -outform DER | sha256sum | cut -c1-16)
BODY=$(mktemp)
SIG=$(mktemp)
trap 'rm -f "$BODY" "$SIG"' EXIT
{
  echo "re6st-image 1"
  echo "board=$BOARD"
  echo "arch=$ARCH"
  echo "version=$VERSION"
  echo "length=$(stat -c %s "$IMAGE")"
  echo "sha256=$(sha256sum "$IMAGE" | cut -d' ' -f1)"
  echo "key=$KEY_ID"
} > "$BODY"
openssl pkeyutl -sign -inkey "$KEY" -rawin -in "$BODY" -out "$SIG" || die "openssl pkeyutl -sign failed"
{ cat "$BODY"; echo "signature=$(base64 -w0 "$SIG")"; } > "$IMAGE.manifest.tmp"
mv "$IMAGE.manifest.tmp" "$IMAGE.manifest"
