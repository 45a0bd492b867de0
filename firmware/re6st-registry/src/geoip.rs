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
        Reader::open_readfile(path)
            .map(|reader| GeoIp { reader })
            .map_err(|e| GeoIpError(e.to_string()))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, GeoIpError> {
        Reader::from_source(bytes)
            .map(|reader| GeoIp { reader })
            .map_err(|e| GeoIpError(e.to_string()))
    }

    /// (ISO country code, continent code) of `address`; `*` for what is
    /// unknown or when the address does not parse.
    pub fn lookup(&self, address: &str) -> (String, String) {
        let unknown = || (UNKNOWN.to_owned(), UNKNOWN.to_owned());
        let Ok(ip) = address.trim().parse::<IpAddr>() else {
            return unknown();
        };
        match self.reader.lookup::<geoip2::Country>(ip) {
            Ok(c) => (
                c.country
                    .and_then(|c| c.iso_code)
                    .unwrap_or(UNKNOWN)
                    .to_owned(),
                c.continent
                    .and_then(|c| c.code)
                    .unwrap_or(UNKNOWN)
                    .to_owned(),
            ),
            Err(_) => unknown(),
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    /// Found by fuzzing (registry_files, now the geoip target): maxminddb
    /// 0.24 panics (a slice index out of range while decoding the
    /// metadata) on this corrupt database instead of returning an error.
    /// The release build aborts on panic, so a corrupt GEOIP2_MMDB stops
    /// the registry. Open: needs a maxminddb that checks its bounds.
    #[test]
    #[ignore = "open: maxminddb 0.24 panics on this corrupt database"]
    fn corrupt_database_is_an_error() {
        let db = include_bytes!("../tests/data/geoip-corrupt.mmdb");
        assert!(super::GeoIp::from_bytes(db.to_vec()).is_err());
    }
}
