//! The connections on our OpenVPN servers, as the hooks report them.

/// Connections on our servers, as the connect and disconnect hooks report
/// them: the certificate each one uses, so that a revoked certificate's
/// connections are dropped and not a new one of the same node (renewed,
/// same name) that came in meanwhile.
#[derive(Debug, Default)]
pub struct Connections {
    /// (server interface, `ip:port`) to serial.
    serials: std::collections::BTreeMap<(String, String), u64>,
}

/// Connections remembered at most (the servers take `max_clients` each).
pub const MAX_CONNECTIONS: usize = 4096;

impl Connections {
    pub fn connected(&mut self, iface: &str, ip: &str, port: u16, serial: u64) {
        let key = (iface.to_owned(), format!("{ip}:{port}"));
        if self.serials.len() < MAX_CONNECTIONS || self.serials.contains_key(&key) {
            self.serials.insert(key, serial);
        }
    }

    pub fn disconnected(&mut self, iface: &str, ip: &str, port: u16) {
        self.serials
            .remove(&(iface.to_owned(), format!("{ip}:{port}")));
    }

    /// Connections remembered (at most [`MAX_CONNECTIONS`]).
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    /// The servers restarted: nobody is connected.
    pub fn clear(&mut self) {
        self.serials.clear();
    }

    /// The connections using one of `serials`, by server interface.
    pub fn using(
        &self,
        serials: &std::collections::BTreeSet<u64>,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for ((iface, address), serial) in &self.serials {
            if serials.contains(serial) {
                out.entry(iface.clone()).or_default().push(address.clone());
            }
        }
        out
    }
}
