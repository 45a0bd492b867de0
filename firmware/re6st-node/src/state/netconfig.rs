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

/// The cached configuration; `Err` says why it is unusable (missing,
/// corrupt), for the log.
pub fn load(path: &Path) -> Result<NetworkConfig, String> {
    decode(&std::fs::read(path).map_err(|e| e.to_string())?)
}

/// Decodes the file's content (what [`encode`] wrote, or garbage).
pub fn decode(data: &[u8]) -> Result<NetworkConfig, String> {
    let body = data.strip_prefix(&MAGIC[..]).ok_or("bad magic")?;
    postcard::from_bytes(body).map_err(|e| format!("corrupt: {e}"))
}
