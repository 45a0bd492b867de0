//! The last network configuration obtained from the registry, so that a
//! node restarts without it.

use std::path::Path;

use re6st_proto::netconfig::NetworkConfig;

const MAGIC: &[u8; 8] = b"re6stnc1";

pub fn save(path: &Path, config: &NetworkConfig) -> std::io::Result<()> {
    super::write_atomic(path, &encode(config)?, 0o600)
}

/// The bytes [`save`] writes.
pub fn encode(config: &NetworkConfig) -> std::io::Result<Vec<u8>> {
    let mut data = MAGIC.to_vec();
    data.extend(postcard::to_allocvec(config).map_err(std::io::Error::other)?);
    Ok(data)
}

/// Why the cached configuration is unusable, for the log.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("bad magic")]
    BadMagic,
    #[error("corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
}

/// The cached configuration.
pub fn load(path: &Path) -> Result<NetworkConfig, CacheError> {
    decode(&std::fs::read(path)?)
}

/// Decodes the file's content (what [`encode`] wrote, or garbage).
pub fn decode(data: &[u8]) -> Result<NetworkConfig, CacheError> {
    let body = data.strip_prefix(&MAGIC[..]).ok_or(CacheError::BadMagic)?;
    Ok(postcard::from_bytes(body)?)
}
