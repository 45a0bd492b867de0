//! Diffie-Hellman parameters for the nodes' OpenVPN servers (`--dh`,
//! `getDh`). OpenSSL 3 at Debian's default security level refuses fewer
//! than 2048 bits ("dh key too small"): an OpenVPN server given such
//! parameters dies at start, so they are refused where they enter, with
//! the command that makes good ones.

use openssl::dh::Dh;
use thiserror::Error;

/// Fewest bits of the prime accepted.
pub const MIN_BITS: u32 = 2048;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DhError {
    #[error("not DH parameters in PEM format ({0}); make good ones with: {1}")]
    Invalid(String, String),
    #[error(
        "{bits}-bit DH parameters are too small: OpenVPN servers refuse fewer than \
         {MIN_BITS} bits (\"dh key too small\") and die at start; make good ones with: {command}"
    )]
    TooSmall { bits: u32, command: String },
}

/// The command that writes good parameters to `file`.
pub fn make_command(file: &str) -> String {
    format!("openssl dhparam -out {file} {MIN_BITS}")
}

/// Checks PEM DH parameters (plain or X9.42) meant for `file` (named in
/// the advice); returns the prime's size in bits.
pub fn check(pem: &[u8], file: &str) -> Result<u32, DhError> {
    let dh = Dh::params_from_pem(pem)
        .map_err(|e| DhError::Invalid(e.to_string(), make_command(file)))?;
    let bits = dh.prime_p().num_bits().max(0) as u32;
    if bits < MIN_BITS {
        return Err(DhError::TooSmall {
            bits,
            command: make_command(file),
        });
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(bits: u32) -> Vec<u8> {
        // DSA-style generation: fast, and the X9.42 form `openssl dhparam
        // -dsaparam` writes.
        let p = openssl::dsa::Dsa::generate_params(bits).unwrap();
        let dh = Dh::from_pqg(
            p.p().to_owned().unwrap(),
            Some(p.q().to_owned().unwrap()),
            p.g().to_owned().unwrap(),
        )
        .unwrap();
        dh.params_to_pem().unwrap()
    }

    #[test]
    fn small_parameters_are_refused_with_the_command_that_makes_good_ones() {
        assert_eq!(check(&params(2048), "dh.pem"), Ok(2048));
        let e = check(&params(1024), "/etc/re6stnet/dh.pem").unwrap_err();
        assert_eq!(
            e,
            DhError::TooSmall {
                bits: 1024,
                command: "openssl dhparam -out /etc/re6stnet/dh.pem 2048".into()
            }
        );
        let text = e.to_string();
        assert!(
            text.starts_with("1024-bit DH parameters are too small"),
            "{text}"
        );
        assert!(
            text.ends_with("openssl dhparam -out /etc/re6stnet/dh.pem 2048"),
            "{text}"
        );
        let e = check(b"not a PEM", "dh.pem").unwrap_err().to_string();
        assert!(e.ends_with("openssl dhparam -out dh.pem 2048"), "{e}");
    }
}
