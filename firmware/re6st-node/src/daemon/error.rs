//! Why a node's run ends other than by a signal: each set-up step that
//! can fail, with the error of the library that failed it. Only
//! [`NodeError::Restart`] is not a failure.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use re6st_proto::cert::CertError;
use re6st_proto::dh::DhError;
use re6st_proto::peer::PeerError;
use re6st_proto::prefix::PrefixError;
use re6st_registry_client::client::ClientError;
use re6st_registry_client::transport::TransportError;

use super::instance::InstanceError;
use super::options::OptionError;
use crate::kernel::KernelError;
use crate::nat::advertised::IpOptionError;
use crate::underlay::GatewayError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A new network configuration or CA needs a fresh start: everything
    /// was cleaned up, the process starts over with its command line.
    #[error("the node must start over")]
    Restart,
    /// A file or directory the node needs (read, created or bound).
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    /// `--ca`, `--cert` or `--key` is not what it should be.
    #[error("{what}: {source}")]
    Pem {
        what: &'static str,
        source: openssl::error::ErrorStack,
    },
    /// The CA or our certificate does not name a network or prefix.
    #[error("{what}: {source}")]
    Cert {
        what: &'static str,
        source: CertError,
    },
    #[error("--dh {}: {source}", path.display())]
    Dh { path: PathBuf, source: DhError },
    #[error(
        "{} (the registry's, fetched earlier): {source}; or, if the registry serves good \
         ones now, remove this copy",
        path.display()
    )]
    CachedDh { path: PathBuf, source: DhError },
    #[error("DH parameters: {0}")]
    FetchDh(ClientError),
    #[error(
        "DH parameters from the registry (getDh): {0}, on the registry's host, then restart \
         re6st-registry with --dh dh.pem"
    )]
    RegistryDh(DhError),
    #[error("--registry: {0}")]
    RegistryUrl(TransportError),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error(transparent)]
    Ip(#[from] IpOptionError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Our address, from the network and our prefix.
    #[error("our address: {0}")]
    Address(#[from] PrefixError),
    #[error("our certificate and key: {0}")]
    Identity(PeerError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A program the node starts (OpenVPN, babeld, `--up`, `--daemon`).
    #[error("{what}: {source}")]
    Spawn { what: String, source: io::Error },
    #[error("--up command failed ({0})")]
    Up(ExitStatus),
    #[error("UDP port 326: {0}")]
    PeerSocket(io::Error),
    /// The signal handlers, or this program's own path.
    #[error("{what}: {source}")]
    Process {
        what: &'static str,
        source: io::Error,
    },
}

impl NodeError {
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::File { path, source }
    }

    pub fn spawn(what: impl Into<String>) -> impl FnOnce(io::Error) -> NodeError {
        let what = what.into();
        move |source| NodeError::Spawn { what, source }
    }
}
