//! The authenticated registry client (upstream's `RegistryClient`): calls
//! whose first argument is `cn` run in a session opened by `hello`, with
//! the request and the answer both authenticated by HMAC.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use re6st_proto::netconfig::{ConfigError, NetworkConfig};
use re6st_proto::prefix::Prefix;
use re6st_proto::rpc::{ClientSession, RpcError, HMAC_HEADER};
use thiserror::Error;

use crate::call::{self, path_and_query, CallError};
use crate::transport::{self, RegistryUrl};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("session: {0}")]
    Session(#[from] RpcError),
    #[error("registry answered nothing to hello")]
    NoHello,
    #[error("registry answered nothing to {0}")]
    Empty(&'static str),
    #[error("network configuration: {0}")]
    Config(#[from] ConfigError),
}

/// A node's client of the registry.
pub struct RegistryClient {
    url: RegistryUrl,
    ca: X509,
    key: PKey<Private>,
    /// Our prefix as a bit string (upstream's `cn` argument).
    cn: String,
    session: ClientSession,
    timeout: Duration,
}

impl RegistryClient {
    pub fn new(
        url: RegistryUrl,
        ca: X509,
        key: PKey<Private>,
        prefix: &Prefix,
        timeout: Duration,
    ) -> Self {
        RegistryClient {
            url,
            ca,
            key,
            cn: prefix.to_string(),
            session: ClientSession::default(),
            timeout,
        }
    }

    /// Forgets the session: the next authenticated call starts with hello.
    pub fn reset_session(&mut self) {
        self.session.reset();
    }

    pub fn url(&self) -> &RegistryUrl {
        &self.url
    }

    /// A call that needs no session.
    pub async fn call(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Option<Bytes>, ClientError> {
        Ok(call::unauthenticated(&self.url, method, args, self.timeout).await?)
    }

    async fn hello(&mut self) -> Result<(), ClientError> {
        let protocol = re6st_proto::PROTOCOL.to_string();
        let answer = self
            .call(
                "hello",
                &[("client_prefix", &self.cn), ("protocol", &protocol)],
            )
            .await?
            .ok_or(ClientError::NoHello)?;
        self.session.accept_hello(&answer, &self.ca, &self.key)?;
        Ok(())
    }

    /// An authenticated call: `args` follow `cn` in upstream's order.
    pub async fn call_authenticated(
        &mut self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Option<Bytes>, ClientError> {
        // A session the registry no longer knows (it restarted) fails once:
        // then a fresh hello, and one more try.
        let had_session = !self.session.needs_hello();
        let mut result = self.try_call_authenticated(method, args).await;
        if result.is_err() {
            self.session.reset();
            if had_session {
                result = self.try_call_authenticated(method, args).await;
                if result.is_err() {
                    self.session.reset();
                }
            }
        }
        result
    }

    async fn try_call_authenticated(
        &mut self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Option<Bytes>, ClientError> {
        if self.session.needs_hello() {
            self.hello().await?;
        }
        let cn = self.cn.clone();
        let mut all = vec![("cn", cn.as_str())];
        all.extend_from_slice(args);
        let target = path_and_query(method, &all);
        let signed = self.session.sign(&target)?;
        let header = HeaderValue::from_str(&signed.header).map_err(|_| RpcError::BadHeader)?;
        let name = HeaderName::from_static("re6sthmac");
        let r = transport::get(&self.url, &target, &[(name, header)], self.timeout)
            .await
            .map_err(CallError::from)?;
        let answer = call::answer(method, r.status, r.body)?;
        let body = answer.clone().unwrap_or_default();
        let mac = r.headers.get(HMAC_HEADER).map(|v| v.as_bytes());
        self.session.verify_response(&signed, &body, mac)?;
        Ok(answer)
    }

    /// `getNetworkConfig`, decoded and with its version signature checked.
    pub async fn network_config(&mut self) -> Result<NetworkConfig, ClientError> {
        let blob = self
            .call_authenticated("getNetworkConfig", &[])
            .await?
            .ok_or(ClientError::Empty("getNetworkConfig"))?;
        let config = NetworkConfig::decode(&blob, &self.key)?;
        config.verify_version(&self.ca)?;
        Ok(config)
    }

    /// `renewCertificate`: the PEM of our (possibly unchanged) certificate.
    pub async fn renew_certificate(&mut self) -> Result<Bytes, ClientError> {
        self.call_authenticated("renewCertificate", &[])
            .await?
            .ok_or(ClientError::Empty("renewCertificate"))
    }

    /// `getDh`: DH parameters for our OpenVPN servers.
    pub async fn dh(&mut self) -> Result<Bytes, ClientError> {
        self.call_authenticated("getDh", &[])
            .await?
            .ok_or(ClientError::Empty("getDh"))
    }

    /// `getCa`: the CA certificate (PEM).
    pub async fn ca(&self) -> Result<Bytes, ClientError> {
        self.call("getCa", &[])
            .await?
            .ok_or(ClientError::Empty("getCa"))
    }

    /// `getBootstrapPeer`: `(prefix, address list)` of a node to connect to,
    /// decrypted with our key; `None` when the registry knows none.
    pub async fn bootstrap_peer(&mut self) -> Result<Option<(String, String)>, ClientError> {
        let Some(enc) = self.call_authenticated("getBootstrapPeer", &[]).await? else {
            return Ok(None);
        };
        let plain = re6st_proto::crypto::decrypt(&self.key, &enc).map_err(RpcError::from)?;
        let text = String::from_utf8_lossy(&plain);
        Ok(text
            .split_once(' ')
            .map(|(p, a)| (p.to_owned(), a.to_owned())))
    }

    /// `getCountry`: the country code the registry sees for `address`.
    pub async fn country(&mut self, address: &str) -> Result<Option<String>, ClientError> {
        Ok(self
            .call_authenticated("getCountry", &[("address", address)])
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}
