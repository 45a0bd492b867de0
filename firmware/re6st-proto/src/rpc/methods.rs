//! The registry's RPC surface: every method upstream's `RegistryServer`
//! exposes, with its parameters in declaration order and their defaults.
//!
//! Both sides use this one table: the client to build a query exactly like
//! upstream's (`getcallargs` then `urlencode`, so defaults are sent too), the
//! server to bind a query to a method.

/// One parameter of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    /// Value used when the caller leaves it out; `None`: required.
    pub default: Option<&'static str>,
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anybody, without a session.
    Open,
    /// A node in its `hello` session: the method's `cn` parameter names the
    /// session, the request and answer carry HMACs.
    Session,
    /// Only clients at the registry's authorized origins (upstream's
    /// `@rpc_private`); no session.
    Private,
}

/// The name of the parameter that names the session.
pub const SESSION_PARAM: &str = "cn";

const fn req(name: &'static str) -> Param {
    Param {
        name,
        default: None,
    }
}

const fn opt(name: &'static str, default: &'static str) -> Param {
    Param {
        name,
        default: Some(default),
    }
}

macro_rules! rpc_table {
    ($($variant:ident $name:literal $access:ident [$($param:expr),*];)*) => {
        /// A registry method.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rpc {
            $($variant,)*
        }

        impl Rpc {
            /// Every method, in upstream's source order.
            pub const ALL: &'static [Rpc] = &[$(Rpc::$variant,)*];

            /// The method's name on the wire (the request path).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Rpc::$variant => $name,)*
                }
            }

            /// Parameters in upstream's declaration order.
            pub const fn params(self) -> &'static [Param] {
                match self {
                    $(Rpc::$variant => {
                        const PARAMS: &[Param] = &[$($param),*];
                        PARAMS
                    })*
                }
            }

            pub const fn access(self) -> Access {
                match self {
                    $(Rpc::$variant => Access::$access,)*
                }
            }
        }
    };
}

rpc_table! {
    Hello "hello" Open [req("client_prefix"), opt("protocol", "1")];
    RequestToken "requestToken" Open [req("email")];
    RequestCertificate "requestCertificate" Open
        [req("token"), req("req"), opt("location", ""), opt("ip", "")];
    RenewCertificate "renewCertificate" Session [req("cn")];
    GetCa "getCa" Open [];
    GetDh "getDh" Session [req("cn")];
    GetNetworkConfig "getNetworkConfig" Session [req("cn")];
    GetCountry "getCountry" Session [req("cn"), req("address")];
    GetBootstrapPeer "getBootstrapPeer" Session [req("cn")];
    Revoke "revoke" Private [req("cn_or_serial")];
    AddToken "addToken" Private [req("email"), req("token")];
    IsToken "isToken" Private [req("token")];
    DeleteToken "deleteToken" Private [req("token")];
    UpdateHmac "updateHMAC" Private [];
    GetNodePrefix "getNodePrefix" Private [req("email")];
    GetIpv6Address "getIPv6Address" Private [req("email")];
    GetIpv4Information "getIPv4Information" Private [req("email")];
    Versions "versions" Private [];
    Topology "topology" Private [];
}

impl Rpc {
    /// The method called `name` on the wire (case-sensitive, like upstream).
    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Position of a parameter in the declaration order.
    pub fn param_index(self, name: &str) -> Option<usize> {
        self.params().iter().position(|p| p.name == name)
    }

    /// Whether calls run in an authenticated session.
    pub const fn needs_session(self) -> bool {
        matches!(self.access(), Access::Session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in Rpc::ALL.iter().enumerate() {
            assert_eq!(Rpc::from_name(m.name()), Some(*m));
            assert!(Rpc::ALL[..i].iter().all(|o| o.name() != m.name()));
        }
        assert_eq!(Rpc::from_name("gethello"), None);
        assert_eq!(Rpc::from_name("getca"), None);
        assert_eq!(Rpc::from_name(""), None);
    }

    #[test]
    fn session_methods_take_cn_first() {
        for m in Rpc::ALL {
            let has_cn = m.param_index(SESSION_PARAM).is_some();
            assert_eq!(has_cn, m.needs_session(), "{m:?}");
            if has_cn {
                assert_eq!(m.param_index(SESSION_PARAM), Some(0), "{m:?}");
            }
        }
    }

    #[test]
    fn defaults_only_trail() {
        // Python forbids a required parameter after one with a default.
        for m in Rpc::ALL {
            let first_default = m.params().iter().position(|p| p.default.is_some());
            if let Some(i) = first_default {
                assert!(m.params()[i..].iter().all(|p| p.default.is_some()));
            }
        }
        assert_eq!(
            Rpc::Hello.params()[1],
            Param {
                name: "protocol",
                default: Some("1")
            }
        );
    }
}
