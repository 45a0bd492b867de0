//! Signed image manifests: what `re6st init upgrade` checks before it
//! writes a byte.
//!
//! `scripts/image.sh` writes `rootfs.squashfs.manifest` next to each image
//! and signs it with the build's Ed25519 key; the public half is in the
//! image (`/etc/re6st/upgrade-key.pem`), so a router accepts only images
//! signed by the key of the image it runs. Text of a manifest:
//! ```text
//! re6st-image 1
//! board=qemu-x86_64
//! arch=amd64
//! version=1a2b3c4 2026-12-06T05:00:00Z
//! length=8388608
//! sha256=<hex of the image>
//! key=<first 16 hex of the SHA-256 of the signing key's DER public key>
//! signature=<base64 Ed25519 signature of every line above, newlines included>
//! ```

use std::path::Path;

use openssl::pkey::{PKey, Public};
use openssl::sign::Verifier;
use thiserror::Error;

pub const MAGIC: &str = "re6st-image 1";
/// The running image's trusted key and its identity, relative to the root.
pub const TRUSTED_KEY: &str = "etc/re6st/upgrade-key.pem";
pub const RELEASE: &str = "etc/re6st-release";
/// A manifest is a few hundred bytes; anything much larger is not one.
pub const MAX_MANIFEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub board: String,
    pub arch: String,
    pub version: String,
    pub length: u64,
    pub sha256: String,
    /// Identity of the key that signed it (as the manifest says).
    pub key: String,
}

/// What the running image accepts: its board and architecture and the key
/// its builder signs with.
pub struct Trust {
    pub board: String,
    pub arch: String,
    pub key: PKey<Public>,
    pub key_id: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("unsigned image: {0}")]
    Unsigned(String),
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error(
        "the manifest's signature does not verify with this router's key {trusted} (the manifest names key {named}): signed by another key, or altered"
    )]
    BadSignature { trusted: String, named: String },
    #[error("the image is for board {image}, this router is {running}")]
    Board { image: String, running: String },
    #[error("the image is for architecture {image}, this router is {running}")]
    Arch { image: String, running: String },
    #[error("truncated image: {got} bytes, its manifest says {want}")]
    Truncated { got: u64, want: u64 },
    #[error("the image is longer than its manifest says ({want} bytes)")]
    TooLong { want: u64 },
    #[error("the image's sha256 is {got}, its signed manifest says {want}")]
    Digest { got: String, want: String },
    #[error("this router trusts no upgrade key: {0}")]
    NoTrust(String),
}

/// First 16 hex digits of the SHA-256 of a public key's DER encoding
/// (`openssl pkey -pubin -outform DER | sha256sum`).
pub fn key_id(key: &PKey<Public>) -> Result<String, openssl::error::ErrorStack> {
    let der = key.public_key_to_der()?;
    Ok(hex::encode(openssl::sha::sha256(&der))[..16].to_owned())
}

impl Trust {
    pub fn new(board: &str, arch: &str, pem: &[u8]) -> Result<Trust, ManifestError> {
        let key = PKey::public_key_from_pem(pem)
            .map_err(|e| ManifestError::NoTrust(format!("unreadable key: {e}")))?;
        let key_id = key_id(&key).map_err(|e| ManifestError::NoTrust(e.to_string()))?;
        Ok(Trust {
            board: board.to_owned(),
            arch: arch.to_owned(),
            key,
            key_id,
        })
    }

    /// From the running image under `root`: `etc/re6st-release` (BOARD=,
    /// ARCH=) and `etc/re6st/upgrade-key.pem`.
    pub fn load(root: &Path) -> Result<Trust, ManifestError> {
        let release_path = root.join(RELEASE);
        let release = std::fs::read_to_string(&release_path)
            .map_err(|e| ManifestError::NoTrust(format!("{}: {e}", release_path.display())))?;
        let get = |k: &str| {
            release
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ManifestError::NoTrust(format!("no {k}= in {}", release_path.display()))
                })
        };
        let (board, arch) = (get("BOARD")?, get("ARCH")?);
        let key_path = root.join(TRUSTED_KEY);
        let pem = std::fs::read(&key_path).map_err(|e| {
            ManifestError::NoTrust(format!(
                "{}: {e} (an image built before signed upgrades)",
                key_path.display()
            ))
        })?;
        Trust::new(board, arch, &pem)
    }

    /// Parses `text`, checks its signature with our key, then that it is
    /// for our board and architecture.
    pub fn check(&self, text: &[u8]) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST {
            return Err(ManifestError::Malformed(format!(
                "{} bytes, more than {MAX_MANIFEST}",
                text.len()
            )));
        }
        let text = std::str::from_utf8(text)
            .map_err(|_| ManifestError::Malformed("not UTF-8 text".into()))?;
        if text.lines().next() != Some(MAGIC) {
            return Err(ManifestError::Malformed(format!(
                "no \"{MAGIC}\" header (is it a manifest?)"
            )));
        }
        let (body, signature) = match text.find("\nsignature=") {
            Some(at) => text.split_at(at + 1),
            None => {
                return Err(ManifestError::Unsigned(
                    "the manifest has no signature= line".into(),
                ))
            }
        };
        let manifest = parse_body(body)?;
        let signature = signature
            .strip_prefix("signature=")
            .unwrap_or_default()
            .trim_end();
        let signature = openssl::base64::decode_block(signature)
            .map_err(|_| ManifestError::Malformed("signature is not base64".into()))?;
        let verified = Verifier::new_without_digest(&self.key)
            .and_then(|mut v| v.verify_oneshot(&signature, body.as_bytes()))
            .unwrap_or(false);
        if !verified {
            return Err(ManifestError::BadSignature {
                trusted: self.key_id.clone(),
                named: manifest.key,
            });
        }
        if manifest.board != self.board {
            return Err(ManifestError::Board {
                image: manifest.board,
                running: self.board.clone(),
            });
        }
        if manifest.arch != self.arch {
            return Err(ManifestError::Arch {
                image: format!("{} ({})", manifest.arch, manifest.board),
                running: self.arch.clone(),
            });
        }
        Ok(manifest)
    }
}

fn parse_body(body: &str) -> Result<Manifest, ManifestError> {
    let get = |k: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| ManifestError::Malformed(format!("no {k}=")))
    };
    let length = get("length")?;
    let length = length
        .parse()
        .map_err(|_| ManifestError::Malformed(format!("length={length}")))?;
    let sha256 = get("sha256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ManifestError::Malformed(format!("sha256={sha256}")));
    }
    Ok(Manifest {
        board: get("board")?,
        arch: get("arch")?,
        version: get("version")?,
        length,
        sha256,
        key: get("key").unwrap_or_else(|_| "-".into()),
    })
}

/// Signs a manifest body as `scripts/sign-image.sh` does (tests).
#[cfg(test)]
pub fn sign(body: &str, key: &PKey<openssl::pkey::Private>) -> String {
    let sig = openssl::sign::Signer::new_without_digest(key)
        .and_then(|mut s| s.sign_oneshot_to_vec(body.as_bytes()))
        .unwrap();
    format!("{body}signature={}\n", openssl::base64::encode_block(&sig))
}

#[cfg(test)]
pub fn body(board: &str, arch: &str, image: &[u8], key_id: &str) -> String {
    format!(
        "{MAGIC}\nboard={board}\narch={arch}\nversion=test\nlength={}\nsha256={}\nkey={key_id}\n",
        image.len(),
        hex::encode(openssl::sha::sha256(image))
    )
}

#[cfg(test)]
pub fn test_key() -> (PKey<openssl::pkey::Private>, Vec<u8>) {
    let key = PKey::generate_ed25519().unwrap();
    let pem = key.public_key_to_pem().unwrap();
    (key, pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(pem: &[u8]) -> Trust {
        Trust::new("qemu-x86_64", "amd64", pem).unwrap()
    }

    #[test]
    fn a_manifest_signed_by_the_trusted_key_for_this_board_passes() {
        let (key, pem) = test_key();
        let t = trust(&pem);
        let text = sign(&body("qemu-x86_64", "amd64", b"image", &t.key_id), &key);
        let m = t.check(text.as_bytes()).unwrap();
        assert_eq!((m.length, m.board.as_str()), (5, "qemu-x86_64"));
        assert_eq!(m.sha256, hex::encode(openssl::sha::sha256(b"image")));
    }

    #[test]
    fn foreign_unsigned_altered_or_other_keys_manifests_are_refused() {
        let (key, pem) = test_key();
        let t = trust(&pem);
        let good = body("qemu-x86_64", "amd64", b"image", &t.key_id);
        let e = t
            .check(
                sign(
                    &body("qemu-aarch64-virt", "arm64", b"image", &t.key_id),
                    &key,
                )
                .as_bytes(),
            )
            .unwrap_err();
        assert!(matches!(e, ManifestError::Board { .. }), "{e}");
        assert!(e.to_string().contains("qemu-aarch64-virt"), "{e}");
        let e = t
            .check(sign(&body("qemu-x86_64", "arm64", b"image", &t.key_id), &key).as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("architecture arm64"), "{e}");
        let e = t.check(good.as_bytes()).unwrap_err();
        assert!(matches!(e, ManifestError::Unsigned(_)), "{e}");
        let (other, _) = test_key();
        let e = t.check(sign(&good, &other).as_bytes()).unwrap_err();
        assert!(matches!(e, ManifestError::BadSignature { .. }), "{e}");
        assert!(e.to_string().contains(&t.key_id), "{e}");
        let altered = sign(&good, &key).replace("length=5", "length=6");
        let e = t.check(altered.as_bytes()).unwrap_err();
        assert!(matches!(e, ManifestError::BadSignature { .. }), "{e}");
        let e = t.check(b"hsqs\0\0").unwrap_err();
        assert!(matches!(e, ManifestError::Malformed(_)), "{e}");
        let e = t
            .check(sign(&good.replace("length=5\n", ""), &key).as_bytes())
            .unwrap_err();
        assert_eq!(e, ManifestError::Malformed("no length=".into()));
    }

    proptest::proptest! {
        /// A manifest comes from the network: any bytes are refused
        /// cleanly, and no change to a signed one (one byte altered,
        /// inserted or removed) still verifies as a different manifest.
        #[test]
        fn arbitrary_or_altered_manifests_never_pass(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            at in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
            how in 0u8..3,
        ) {
            let (key, pem) = fixed_key();
            let t = trust(&pem);
            proptest::prop_assert!(t.check(&bytes).is_err());
            let good = sign(&body("qemu-x86_64", "amd64", b"image", &t.key_id), &key).into_bytes();
            let want = t.check(&good).unwrap();
            let mut bad = good.clone();
            let at = at % bad.len();
            match how {
                0 => bad[at] = byte,
                1 => bad.insert(at, byte),
                _ => { bad.remove(at); }
            }
            if let Ok(m) = t.check(&bad) {
                // Only changes the signature does not cover may pass
                // (e.g. a trailing newline): the same manifest.
                proptest::prop_assert_eq!(m, want);
            }
        }
    }

    /// One key for all proptest cases (generating one per case is slow).
    fn fixed_key() -> (PKey<openssl::pkey::Private>, Vec<u8>) {
        static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let der = KEY.get_or_init(|| test_key().0.private_key_to_der().unwrap());
        let key = PKey::private_key_from_der(der).unwrap();
        let pem = key.public_key_to_pem().unwrap();
        (key, pem)
    }

    #[test]
    fn the_trust_comes_from_the_running_image() {
        let dir = tempfile::tempdir().unwrap();
        let e = Trust::load(dir.path()).err().unwrap();
        assert!(matches!(e, ManifestError::NoTrust(_)), "{e}");
        std::fs::create_dir_all(dir.path().join("etc/re6st")).unwrap();
        std::fs::write(
            dir.path().join(RELEASE),
            "BOARD=qemu-x86_64\nARCH=amd64\nKERNEL=6.1\n",
        )
        .unwrap();
        let e = Trust::load(dir.path()).err().unwrap();
        assert!(e.to_string().contains("upgrade-key.pem"), "{e}");
        let (_, pem) = test_key();
        std::fs::write(dir.path().join(TRUSTED_KEY), &pem).unwrap();
        let t = Trust::load(dir.path()).unwrap();
        assert_eq!(
            (t.board.as_str(), t.arch.as_str()),
            ("qemu-x86_64", "amd64")
        );
    }
}
