//! The RPC surface: method names, parameters (with upstream's defaults),
//! which ones are restricted to authorized origins, and the binding of a
//! request target (`/method?a=1&b=2`) to a method and its arguments.
//!
//! A method with a `cn` parameter is authenticated: the request carries an
//! HMAC of the session opened by `hello`.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodId {
    Hello,
    RequestToken,
    RequestCertificate,
    RenewCertificate,
    GetCa,
    GetDh,
    GetNetworkConfig,
    GetCountry,
    GetBootstrapPeer,
    Revoke,
    AddToken,
    IsToken,
    DeleteToken,
    UpdateHmac,
    GetNodePrefix,
    GetIpv6Address,
    GetIpv4Information,
    Versions,
    Topology,
}

/// A parameter and its default value (`None`: required).
type Param = (&'static str, Option<&'static str>);

#[derive(Debug, PartialEq, Eq)]
pub struct Method {
    pub id: MethodId,
    pub name: &'static str,
    pub params: &'static [Param],
    /// Only callable from authorized origins.
    pub private: bool,
}

const fn m(id: MethodId, name: &'static str, params: &'static [Param], private: bool) -> Method {
    Method {
        id,
        name,
        params,
        private,
    }
}

use MethodId::*;

pub const METHODS: &[Method] = &[
    m(
        Hello,
        "hello",
        &[("client_prefix", None), ("protocol", Some("1"))],
        false,
    ),
    m(RequestToken, "requestToken", &[("email", None)], false),
    m(
        RequestCertificate,
        "requestCertificate",
        &[
            ("token", None),
            ("req", None),
            ("location", Some("")),
            ("ip", Some("")),
        ],
        false,
    ),
    m(RenewCertificate, "renewCertificate", &[("cn", None)], false),
    m(GetCa, "getCa", &[], false),
    m(GetDh, "getDh", &[("cn", None)], false),
    m(GetNetworkConfig, "getNetworkConfig", &[("cn", None)], false),
    m(
        GetCountry,
        "getCountry",
        &[("cn", None), ("address", None)],
        false,
    ),
    m(GetBootstrapPeer, "getBootstrapPeer", &[("cn", None)], false),
    m(Revoke, "revoke", &[("cn_or_serial", None)], true),
    m(
        AddToken,
        "addToken",
        &[("email", None), ("token", None)],
        true,
    ),
    m(IsToken, "isToken", &[("token", None)], true),
    m(DeleteToken, "deleteToken", &[("token", None)], true),
    m(UpdateHmac, "updateHMAC", &[], true),
    m(GetNodePrefix, "getNodePrefix", &[("email", None)], true),
    m(GetIpv6Address, "getIPv6Address", &[("email", None)], true),
    m(
        GetIpv4Information,
        "getIPv4Information",
        &[("email", None)],
        true,
    ),
    m(Versions, "versions", &[], true),
    m(Topology, "topology", &[], true),
];

pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindError {
    #[error("request target is not /METHOD[?QUERY]")]
    BadPath,
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("malformed query field {0:?}")]
    BadQuery(String),
    #[error("unexpected parameter {0:?}")]
    Unexpected(String),
    #[error("missing parameter {0:?}")]
    Missing(&'static str),
}

/// A method with every parameter bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub method: &'static Method,
    pub args: BTreeMap<&'static str, String>,
}

impl Bound {
    pub fn arg(&self, name: &str) -> &str {
        self.args.get(name).map_or("", String::as_str)
    }

    /// The session prefix of an authenticated call.
    pub fn cn(&self) -> Option<&str> {
        self.args.get("cn").map(String::as_str)
    }
}

/// Splits a request target into the method name and its query.
pub fn split_target(target: &str) -> Result<(&str, &str), BindError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path.strip_prefix('/') {
        Some(name) if !name.contains('/') => Ok((name, query)),
        _ => Err(BindError::BadPath),
    }
}

/// Parses an `application/x-www-form-urlencoded` query strictly: every
/// field must be `name=value`; later duplicates win.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, BindError> {
    if query.is_empty() {
        return Ok(vec![]);
    }
    query
        .split('&')
        .map(|field| {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| BindError::BadQuery(field.to_owned()))?;
            Ok((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `+` and `%XX`; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The method a request target names.
pub fn method_of(target: &str) -> Result<&'static Method, BindError> {
    let (name, _) = split_target(target)?;
    find(name).ok_or_else(|| BindError::UnknownMethod(name.to_owned()))
}

/// Binds a request target to a method and its arguments.
pub fn bind(target: &str) -> Result<Bound, BindError> {
    let method = method_of(target)?;
    let (_, query) = split_target(target)?;
    let mut given: BTreeMap<String, String> = parse_query(query)?.into_iter().collect();
    let mut args = BTreeMap::new();
    for (p, default) in method.params {
        match given.remove(*p).or_else(|| default.map(str::to_owned)) {
            Some(v) => {
                args.insert(*p, v);
            }
            None => return Err(BindError::Missing(p)),
        }
    }
    if let Some(extra) = given.into_keys().next() {
        return Err(BindError::Unexpected(extra));
    }
    Ok(Bound { method, args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binds_with_defaults() {
        let b = bind("/hello?client_prefix=0101").unwrap();
        assert_eq!(b.method.id, Hello);
        assert_eq!(b.arg("client_prefix"), "0101");
        assert_eq!(b.arg("protocol"), "1");
        assert_eq!(b.cn(), None);
        let b = bind("/requestCertificate?token=&req=-----BEGIN+x%0A&location=&ip=").unwrap();
        assert_eq!(b.arg("req"), "-----BEGIN x\n");
        assert_eq!(b.arg("token"), "");
        let b = bind("/getDh?cn=0101").unwrap();
        assert_eq!(b.cn(), Some("0101"));
        assert!(bind("/getCa").is_ok());
        assert!(bind("/getCa?").is_ok());
    }

    #[test]
    fn rejects_bad_targets() {
        assert_eq!(bind("/nope"), Err(BindError::UnknownMethod("nope".into())));
        assert_eq!(bind("/"), Err(BindError::UnknownMethod("".into())));
        assert_eq!(bind("/a/b"), Err(BindError::BadPath));
        assert_eq!(bind("http://x/getCa"), Err(BindError::BadPath));
        assert_eq!(bind("/getDh"), Err(BindError::Missing("cn")));
        assert_eq!(bind("/getCa?x=1"), Err(BindError::Unexpected("x".into())));
        assert_eq!(bind("/getDh?cn"), Err(BindError::BadQuery("cn".into())));
        assert_eq!(
            bind("/getDh?cn=1&&x=2"),
            Err(BindError::BadQuery("".into()))
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    proptest! {
        #[test]
        fn encoded_values_round_trip(v in ".{0,40}") {
            let enc: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
            prop_assert_eq!(percent_decode(&enc), v);
        }

        #[test]
        fn never_panics(t in "\\PC{0,60}") {
            let _ = bind(&t);
        }
    }
}
