//! Request targets (`/method?query`) as upstream writes and reads them.
//!
//! Client: Python's `urlencode` of every parameter (defaults included) in
//! declaration order, each value quoted like `quote_plus`. Server: Python's
//! `parse_qsl(..., keep_blank_values=True, strict_parsing=True)` then
//! binding to the method's parameters, the last of duplicate fields winning.

use thiserror::Error;

use super::methods::{Rpc, SESSION_PARAM};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    #[error("request target is not /METHOD[?QUERY]")]
    BadPath,
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("malformed query field {0:?}")]
    BadField(String),
    #[error("{0} has no parameter {1:?}")]
    UnknownParam(&'static str, String),
    #[error("{0}: parameter {1:?} given twice")]
    DuplicateParam(&'static str, &'static str),
    #[error("{0}: missing parameter {1:?}")]
    MissingParam(&'static str, &'static str),
    #[error("{0}: empty session name")]
    EmptySession(&'static str),
}

/// Appends `value` quoted like Python's `quote_plus`: ASCII letters, digits
/// and `_.-~` stay, space becomes `+`, every other byte `%XX`.
pub fn form_encode(value: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes a query component like Python's `parse_qsl`: `+` is a space,
/// valid `%XX` a byte, anything else stays; invalid UTF-8 becomes U+FFFD.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = match c {
            b'%' => b
                .get(i + 1)
                .and_then(|&h| hex_digit(h))
                .zip(b.get(i + 2).and_then(|&l| hex_digit(l))),
            _ => None,
        };
        match (c, escaped) {
            (_, Some((h, l))) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Orders named arguments like the method's parameters, filling in
/// defaults; `None` for a required parameter nobody gave.
fn bind<'a>(
    rpc: Rpc,
    named: impl IntoIterator<Item = (&'a str, String)>,
    last_wins: bool,
) -> Result<Vec<String>, TargetError> {
    let params = rpc.params();
    let mut values: Vec<Option<String>> = vec![None; params.len()];
    for (name, value) in named {
        let i = rpc
            .param_index(name)
            .ok_or_else(|| TargetError::UnknownParam(rpc.name(), name.to_owned()))?;
        let slot = values
            .get_mut(i)
            .ok_or_else(|| TargetError::UnknownParam(rpc.name(), name.to_owned()))?;
        if slot.is_some() && !last_wins {
            let p = params.get(i).map_or("", |p| p.name);
            return Err(TargetError::DuplicateParam(rpc.name(), p));
        }
        *slot = Some(value);
    }
    params
        .iter()
        .zip(values)
        .map(|(p, v)| {
            v.or_else(|| p.default.map(str::to_owned))
                .ok_or(TargetError::MissingParam(rpc.name(), p.name))
        })
        .collect()
}

/// The request target upstream's client sends for `rpc` with the named
/// arguments (any order; left-out ones take their defaults):
/// `/method?p1=v1&p2=v2`, or `/method` for a method without parameters.
///
/// This is also the text the session HMAC covers.
pub fn request_target(rpc: Rpc, args: &[(&str, &str)]) -> Result<String, TargetError> {
    let values = bind(rpc, args.iter().map(|&(k, v)| (k, v.to_owned())), false)?;
    let mut target = format!("/{}", rpc.name());
    for (i, (p, v)) in rpc.params().iter().zip(&values).enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        form_encode(p.name.as_bytes(), &mut target);
        target.push('=');
        form_encode(v.as_bytes(), &mut target);
    }
    Ok(target)
}

/// A request target bound to a method: every parameter has a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub rpc: Rpc,
    /// One value per parameter, in declaration order.
    values: Vec<String>,
}

impl Request {
    /// The value of a parameter (`None` if the method has no such one).
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.rpc
            .param_index(name)
            .and_then(|i| self.values.get(i))
            .map(String::as_str)
    }

    /// The session the request claims (the client prefix as a bit string),
    /// for methods that run in one.
    pub fn session(&self) -> Option<&str> {
        if self.rpc.needs_session() {
            self.arg(SESSION_PARAM)
        } else {
            None
        }
    }

    /// `(name, value)` pairs in declaration order.
    pub fn args(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.rpc
            .params()
            .iter()
            .zip(&self.values)
            .map(|(p, v)| (p.name, v.as_str()))
    }
}

/// Binds a request target as upstream's server does. Stricter than
/// upstream in one way: a session method called with an empty `cn` is
/// refused (upstream would run it without authentication).
pub fn parse_target(target: &str) -> Result<Request, TargetError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let name = match path.strip_prefix('/') {
        Some(name) if !name.contains('/') => name,
        _ => return Err(TargetError::BadPath),
    };
    let rpc = Rpc::from_name(name).ok_or_else(|| TargetError::UnknownMethod(name.to_owned()))?;
    let mut fields = Vec::new();
    if !query.is_empty() {
        for field in query.split('&') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| TargetError::BadField(field.to_owned()))?;
            fields.push((form_decode(k), form_decode(v)));
        }
    }
    let values = bind(
        rpc,
        fields.iter().map(|(k, v)| (k.as_str(), v.clone())),
        true,
    )?;
    let request = Request { rpc, values };
    if request.session() == Some("") {
        return Err(TargetError::EmptySession(rpc.name()));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_like_python() {
        let mut s = String::new();
        form_encode("x y/~é\u{7f}".as_bytes(), &mut s);
        assert_eq!(s, "x+y%2F~%C3%A9%7F");
        s.clear();
        form_encode(b"\xff-_.~!*()", &mut s);
        assert_eq!(s, "%FF-_.~%21%2A%28%29");
    }

    #[test]
    fn decodes_like_python() {
        assert_eq!(form_decode("%zz+%C3%A9%FF"), "%zz é\u{fffd}");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("a%2Bb+c"), "a+b c");
    }

    #[test]
    fn targets_in_declaration_order_with_defaults() {
        assert_eq!(request_target(Rpc::GetCa, &[]).unwrap(), "/getCa");
        assert_eq!(
            request_target(Rpc::Hello, &[("client_prefix", "0101")]).unwrap(),
            "/hello?client_prefix=0101&protocol=1"
        );
        assert_eq!(
            request_target(Rpc::GetCountry, &[("address", "1.2.3.4"), ("cn", "01")]).unwrap(),
            "/getCountry?cn=01&address=1.2.3.4"
        );
        assert_eq!(
            request_target(Rpc::RequestCertificate, &[("req", "a b"), ("token", "")]).unwrap(),
            "/requestCertificate?token=&req=a+b&location=&ip="
        );
        assert_eq!(
            request_target(Rpc::GetDh, &[]),
            Err(TargetError::MissingParam("getDh", "cn"))
        );
        assert_eq!(
            request_target(Rpc::GetDh, &[("cn", "1"), ("x", "2")]),
            Err(TargetError::UnknownParam("getDh", "x".into()))
        );
        assert_eq!(
            request_target(Rpc::GetDh, &[("cn", "1"), ("cn", "2")]),
            Err(TargetError::DuplicateParam("getDh", "cn"))
        );
    }

    #[test]
    fn parses_like_upstream() {
        let r = parse_target("/hello?client_prefix=01").unwrap();
        assert_eq!(r.rpc, Rpc::Hello);
        assert_eq!(r.arg("protocol"), Some("1"));
        assert_eq!(r.session(), None);
        let r = parse_target("/getNetworkConfig?cn=01&cn=10").unwrap();
        assert_eq!(r.session(), Some("10"));
        let r = parse_target("/getCa?").unwrap();
        assert_eq!(r.args().count(), 0);
        let r = parse_target("/revoke?cn_or_serial=12").unwrap();
        assert_eq!(r.session(), None);
        for (bad, why) in [
            ("getCa", TargetError::BadPath),
            ("/a/getCa", TargetError::BadPath),
            ("/", TargetError::UnknownMethod(String::new())),
            (
                "/getCert?client_prefix=1",
                TargetError::UnknownMethod("getCert".into()),
            ),
            ("/getDh?cn", TargetError::BadField("cn".into())),
            ("/getDh?cn=1&", TargetError::BadField(String::new())),
            ("/getDh", TargetError::MissingParam("getDh", "cn")),
            (
                "/getDh?cn=1&x=2",
                TargetError::UnknownParam("getDh", "x".into()),
            ),
            ("/getDh?cn=", TargetError::EmptySession("getDh")),
        ] {
            assert_eq!(parse_target(bad), Err(why), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn target_round_trip(
            m in 0..Rpc::ALL.len(),
            values in proptest::collection::vec(".{0,12}", 4),
        ) {
            let rpc = Rpc::ALL[m];
            let mut args: Vec<(&str, &str)> = rpc.params().iter().zip(&values)
                .map(|(p, v)| (p.name, v.as_str())).collect();
            if rpc.needs_session() {
                args[0].1 = "0101";
            }
            args.reverse();
            let target = request_target(rpc, &args).unwrap();
            prop_assert!(target.is_ascii());
            let r = parse_target(&target).unwrap();
            prop_assert_eq!(r.rpc, rpc);
            for (name, value) in args {
                prop_assert_eq!(r.arg(name), Some(value));
            }
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = parse_target(&s);
            let _ = form_decode(&s);
        }
    }
}
