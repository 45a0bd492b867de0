//! The peer cache's file in the state directory (`peers.bin`): the cache
//! itself is the core's [`PeerCache`]; this side reads and writes it.

use std::path::Path;

use thiserror::Error;

pub use re6st_node_core::peer_cache::{PeerCache, DEFAULT_CAPACITY};

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("peer cache {0}: {1}")]
    Io(String, std::io::Error),
    #[error("peer cache {0} is corrupt ({1}); starting with an empty cache")]
    Corrupt(String, #[source] re6st_node_core::peer_cache::DecodeError),
}

pub fn save(cache: &PeerCache, path: &Path) -> Result<(), CacheError> {
    super::write_atomic(path, &cache.to_bytes(), 0o600)
        .map_err(|e| CacheError::Io(path.display().to_string(), e))
}

/// Loads the cache. A missing file is an empty cache; a corrupt one
/// gives an empty cache and the error to log.
pub fn load(path: &Path, capacity: usize) -> (PeerCache, Option<CacheError>) {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(data) => match PeerCache::from_bytes(&data, capacity) {
            Ok(c) => (c, None),
            Err(e) => (PeerCache::new(capacity), Some(CacheError::Corrupt(name, e))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (PeerCache::new(capacity), None),
        Err(e) => (PeerCache::new(capacity), Some(CacheError::Io(name, e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use re6st_proto::prefix::Prefix;

    fn p(s: &str) -> Prefix {
        Prefix::from_subnet(s).unwrap()
    }

    #[test]
    fn persistence_and_corruption() {
        let dir = std::env::temp_dir().join(format!("re6st-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.bin");
        let mut r = || 7u64;
        let mut c = PeerCache::new(10);
        c.set_my_address(Some("198.18.0.5,1194,udp".into()));
        c.add_peer(p("1/16"), "198.18.0.1,1194,udp", false, &mut r);
        save(&c, &path).unwrap();
        let (back, err) = load(&path, 10);
        assert!(err.is_none());
        assert_eq!(back.to_bytes(), c.to_bytes());
        let data = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, data.len() - 1] {
            std::fs::write(&path, &data[..cut]).unwrap();
            let (empty, err) = load(&path, 10);
            assert!(
                empty.is_empty() && matches!(err, Some(CacheError::Corrupt(..))),
                "cut at {cut}"
            );
        }
        let (empty, err) = load(&dir.join("missing"), 10);
        assert!(empty.is_empty() && err.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
