//! What babeld knows, rebuilt from its `dump`/`monitor` lines, and the
//! questions the tunnel manager asks: which nodes are reachable, and
//! which are reached through each neighbour.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use re6st_proto::prefix::Prefix;

use super::control::{Action, Line, Neighbour, Route};

#[derive(Debug, Default, Clone)]
pub struct Table {
    neighbours: BTreeMap<String, Neighbour>,
    /// The routes babeld installed, and those from a neighbour's own node
    /// (refmetric 0: who the neighbour is). Every question below is about
    /// these; the others (a route per prefix and neighbour: most of a
    /// dump) are not kept.
    routes: BTreeMap<String, Route>,
    interfaces: BTreeMap<String, bool>,
}

/// A re6st node prefix from an IPv6 route inside `network`.
pub fn node_prefix(network: &Prefix, (addr, len): (IpAddr, u8)) -> Option<Prefix> {
    let IpAddr::V6(a) = addr else { return None };
    let p = Prefix::from_ipv6(a, len).ok()?;
    (p.starts_with(network) && p.len() > network.len()).then(|| p.suffix_from(network.len()))
}

impl Table {
    /// Applies one line; other lines (ok, greeting...) change nothing.
    pub fn apply(&mut self, line: Line) {
        match line {
            Line::Neighbour {
                action: Action::Flush,
                key,
                ..
            } => {
                self.neighbours.remove(&key);
            }
            Line::Neighbour {
                key,
                neighbour: Some(n),
                ..
            } => {
                self.neighbours.insert(key, n);
            }
            Line::Route {
                action: Action::Flush,
                key,
                ..
            } => {
                self.routes.remove(&key);
            }
            Line::Route {
                key,
                route: Some(r),
                ..
            } => {
                if r.installed || r.refmetric == 0 {
                    self.routes.insert(key, r);
                } else {
                    self.routes.remove(&key);
                }
            }
            Line::Interface {
                action: Action::Flush,
                name,
                ..
            } => {
                self.interfaces.remove(&name);
            }
            Line::Interface { name, up, .. } => {
                self.interfaces.insert(name, up);
            }
            _ => {}
        }
    }

    /// Forgets everything (before a new `dump`).
    pub fn clear(&mut self) {
        *self = Table::default();
    }

    pub fn neighbours(&self) -> impl Iterator<Item = &Neighbour> {
        self.neighbours.values()
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// Node prefixes with an installed route that leads somewhere.
    pub fn reachable(&self, network: &Prefix) -> BTreeSet<Prefix> {
        self.routes
            .values()
            .filter(|r| r.usable())
            .filter_map(|r| node_prefix(network, r.prefix))
            .collect()
    }

    /// For each neighbour (interface, link-local address): its own node
    /// prefix (the route it originates, refmetric 0) if known, and the
    /// node prefixes whose installed routes go through it.
    pub fn by_neighbour(
        &self,
        network: &Prefix,
    ) -> BTreeMap<(String, IpAddr), (Option<Prefix>, BTreeSet<Prefix>)> {
        let mut out: BTreeMap<(String, IpAddr), (Option<Prefix>, BTreeSet<Prefix>)> =
            BTreeMap::new();
        for n in self.neighbours.values() {
            out.entry((n.interface.clone(), n.address)).or_default();
        }
        for r in self.routes.values() {
            let Some(p) = node_prefix(network, r.prefix) else {
                continue;
            };
            let entry = out.entry((r.interface.clone(), r.via)).or_default();
            if r.refmetric == 0 {
                entry.0 = Some(p);
            }
            if r.usable() {
                entry.1.insert(p);
            }
        }
        out
    }

    /// Installed node routes through `interface` (how useful a tunnel is).
    pub fn routes_through(&self, network: &Prefix, interface: &str) -> usize {
        self.routes
            .values()
            .filter(|r| r.usable() && r.interface == interface)
            .filter(|r| node_prefix(network, r.prefix).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::control::parse_line;
    use super::*;

    /// A table made of babeld's lines.
    fn table(lines: &[&str]) -> Table {
        let mut t = Table::default();
        for l in lines {
            t.apply(parse_line(l).unwrap());
        }
        t
    }

    #[test]
    fn neighbours_and_their_routes() {
        let net = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
        let mut t = table(&[
            "add neighbour n1 address fe80::2 if t1 reach ffff ureach 0000 rxcost 96 txcost 96 rtt 0 rttcost 0 cost 96",
            "add route r1 prefix 2001:db8:2::/48 from ::/0 installed yes id a metric 96 refmetric 0 via fe80::2 if t1",
            "add route r2 prefix 2001:db8:3::/48 from ::/0 installed yes id b metric 192 refmetric 96 via fe80::2 if t1",
            "add route r3 prefix 2001:db8:3::/48 from ::/0 installed no id b metric 300 refmetric 200 via fe80::9 if t2",
            "add route r4 prefix ::/0 from 2001:db8::/32 installed yes id c metric 96 refmetric 0 via fe80::2 if t1",
            // Retracted, still installed as unreachable: reaches nobody.
            "add route r5 prefix 2001:db8:5::/48 from ::/0 installed yes id d metric 65535 refmetric 65535 via fe80::2 if t1",
        ]);
        let p = |s: &str| Prefix::from_subnet(s).unwrap();
        assert_eq!(t.reachable(&net), [p("2/16"), p("3/16")].into());
        let by = t.by_neighbour(&net);
        let (own, via) = &by[&("t1".to_string(), "fe80::2".parse().unwrap())];
        assert_eq!(*own, Some(p("2/16")));
        assert_eq!(*via, [p("2/16"), p("3/16")].into());
        assert_eq!(t.routes_through(&net, "t1"), 2);
        t.apply(parse_line("flush route r2 prefix 2001:db8:3::/48").unwrap());
        assert_eq!(t.routes_through(&net, "t1"), 1);
        t.apply(parse_line("flush neighbour n1 address fe80::2 if t1").unwrap());
        assert_eq!(t.neighbours().count(), 0);
    }

    /// A route neither installed nor announced by the neighbour's own
    /// node answers no question: it is not kept, and one that stops being
    /// installed goes. A neighbour's own route is kept installed or not.
    #[test]
    fn only_installed_routes_and_neighbours_own_are_kept() {
        let net = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
        let mut t = table(&[
            "add neighbour n1 address fe80::2 if t1 reach ffff ureach 0000 rxcost 96 txcost 96 rtt 0 rttcost 0 cost 96",
            "add neighbour n2 address fe80::9 if t2 reach ffff ureach 0000 rxcost 96 txcost 96 rtt 0 rttcost 0 cost 96",
            "add route r1 prefix 2001:db8:2::/48 from ::/0 installed yes id a metric 96 refmetric 0 via fe80::2 if t1",
            // node 2 through node 9: neither installed nor node 9's own.
            "add route r2 prefix 2001:db8:2::/48 from ::/0 installed no id a metric 300 refmetric 200 via fe80::9 if t2",
            // node 9's own route, not installed (a better path exists).
            "add route r3 prefix 2001:db8:9::/48 from ::/0 installed no id b metric 96 refmetric 0 via fe80::9 if t2",
            "add route r4 prefix 2001:db8:9::/48 from ::/0 installed yes id b metric 90 refmetric 10 via fe80::2 if t1",
        ]);
        let keys = |t: &Table| t.routes.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&t), ["r1", "r3", "r4"]);
        let p = |s: &str| Prefix::from_subnet(s).unwrap();
        let by = t.by_neighbour(&net);
        assert_eq!(
            by[&("t2".to_string(), "fe80::9".parse().unwrap())].0,
            Some(p("9/16"))
        );
        assert_eq!(t.reachable(&net), [p("2/16"), p("9/16")].into());
        t.apply(parse_line("change route r4 prefix 2001:db8:9::/48 from ::/0 installed no id b metric 90 refmetric 10 via fe80::2 if t1").unwrap());
        assert_eq!(keys(&t), ["r1", "r3"]);
    }
}
