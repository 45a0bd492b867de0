//! Country and continent of an IP address, from a MaxMind DB file
//! (`GEOIP2_MMDB`), for community selection and `getCountry`.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("GeoIP database: {0}")]
pub struct GeoIpError(String);

pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

/// Unknown location, as upstream spells it.
pub const UNKNOWN: &str = "*";

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        let bytes =
            std::fs::read(path).map_err(|e| GeoIpError(format!("{}: {e}", path.display())))?;
        GeoIp::from_bytes(bytes)
    }

    /// The whole database is verified once here (search tree and data
    /// section), so that a corrupt file is refused at start-up rather than
    /// met later in a lookup.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, GeoIpError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoIpError(e.to_string()))?;
        reader.verify().map_err(|e| GeoIpError(e.to_string()))?;
        Ok(GeoIp { reader })
    }

    /// (ISO country code, continent code) of `address`; `*` for what is
    /// unknown or when the address does not parse.
    pub fn lookup(&self, address: &str) -> (String, String) {
        let unknown = || (UNKNOWN.to_owned(), UNKNOWN.to_owned());
        let Ok(ip) = address.trim().parse::<IpAddr>() else {
            return unknown();
        };
        let found = self
            .reader
            .lookup(ip)
            .and_then(|r| r.decode::<geoip2::Country>());
        match found {
            Ok(Some(c)) => (
                c.country.iso_code.unwrap_or(UNKNOWN).to_owned(),
                c.continent.code.unwrap_or(UNKNOWN).to_owned(),
            ),
            _ => unknown(),
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    /// Found by fuzzing (registry_files, now the geoip target): maxminddb
    /// 0.24 panics (a slice index out of range while decoding the
    /// metadata) on this corrupt database instead of returning an error.
    /// The release build aborts on panic, so a corrupt GEOIP2_MMDB stopped
    /// the registry. Fixed by maxminddb 0.32 and verifying at load.
    #[test]
    fn corrupt_database_is_an_error() {
        let db = include_bytes!("../tests/data/geoip-corrupt.mmdb");
        assert!(super::GeoIp::from_bytes(db.to_vec()).is_err());
    }
}
