//! The tunnel graph: every OpenVPN tunnel (one client, one server), whether
//! it is up and whether its client drains it, and the adjacency of the
//! tunnels that carry routes (up, both ends alive). Indices are `u32`.

use std::collections::HashMap;

/// An OpenVPN tunnel, from the attempt to its end.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub client: u32,
    pub server: u32,
    /// The client's interface (`re6stnetN`), as the manager named it.
    pub iface: String,
    /// 0: UDP, 1: TCP (each server has its own `max_clients`).
    pub proto: u8,
    /// The current attempt; events of older attempts are stale.
    pub attempt: u64,
    /// Established (both ends were told).
    pub up: bool,
    /// In the adjacency: up and both ends alive.
    pub linked: bool,
    /// Being drained (its client's babel silent on it).
    pub drained: bool,
}

/// A linked tunnel as seen from one end. The drain flag is kept here too,
/// so that route searches read only the adjacency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub peer: u32,
    pub tunnel: u32,
    pub drained: bool,
}

#[derive(Debug, Default)]
pub struct Graph {
    tunnels: Vec<Option<Tunnel>>,
    free: Vec<u32>,
    by_pair: HashMap<(u32, u32), u32>,
    /// Every tunnel record of a node, as client or server.
    of_node: Vec<Vec<u32>>,
    /// Linked tunnels of each node.
    adj: Vec<Vec<Link>>,
    links: usize,
    /// Bumped on every change of the adjacency.
    version: u64,
}

impl Graph {
    pub fn new(nodes: u32) -> Graph {
        Graph {
            of_node: vec![Vec::new(); nodes as usize],
            adj: vec![Vec::new(); nodes as usize],
            ..Default::default()
        }
    }

    pub fn nodes(&self) -> u32 {
        self.adj.len() as u32
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn links(&self) -> usize {
        self.links
    }

    pub fn adj(&self, n: u32) -> &[Link] {
        &self.adj[n as usize]
    }

    pub fn degree(&self, n: u32) -> usize {
        self.adj[n as usize].len()
    }

    pub fn tunnel(&self, t: u32) -> Option<&Tunnel> {
        self.tunnels.get(t as usize).and_then(Option::as_ref)
    }

    pub fn tunnel_mut(&mut self, t: u32) -> Option<&mut Tunnel> {
        self.tunnels.get_mut(t as usize).and_then(Option::as_mut)
    }

    pub fn by_pair(&self, client: u32, server: u32) -> Option<u32> {
        self.by_pair.get(&(client, server)).copied()
    }

    pub fn of_node(&self, n: u32) -> &[u32] {
        &self.of_node[n as usize]
    }

    /// The client tunnel of `client` on interface `iface`.
    pub fn by_iface(&self, client: u32, iface: &str) -> Option<u32> {
        self.of_node[client as usize].iter().copied().find(|&t| {
            self.tunnel(t)
                .is_some_and(|x| x.client == client && x.iface == iface)
        })
    }

    /// A new attempt from `client` to `server` (replacing a previous one
    /// between them, which must not be linked).
    pub fn attempt(
        &mut self,
        client: u32,
        server: u32,
        iface: &str,
        proto: u8,
        attempt: u64,
    ) -> u32 {
        if let Some(t) = self.by_pair(client, server) {
            self.unlink(t);
            let x = self.tunnel_mut(t).expect("indexed tunnel exists");
            x.iface = iface.to_owned();
            x.proto = proto;
            x.attempt = attempt;
            x.up = false;
            x.drained = false;
            return t;
        }
        let tunnel = Tunnel {
            client,
            server,
            iface: iface.to_owned(),
            proto,
            attempt,
            up: false,
            linked: false,
            drained: false,
        };
        let t = match self.free.pop() {
            Some(t) => {
                self.tunnels[t as usize] = Some(tunnel);
                t
            }
            None => {
                self.tunnels.push(Some(tunnel));
                (self.tunnels.len() - 1) as u32
            }
        };
        self.by_pair.insert((client, server), t);
        self.of_node[client as usize].push(t);
        self.of_node[server as usize].push(t);
        t
    }

    /// The tunnel is established: it carries routes.
    pub fn link(&mut self, t: u32) {
        let Some(x) = self.tunnel_mut(t) else { return };
        x.up = true;
        if x.linked {
            return;
        }
        x.linked = true;
        let (c, s, drained) = (x.client, x.server, x.drained);
        let link = |peer| Link {
            peer,
            tunnel: t,
            drained,
        };
        self.adj[c as usize].push(link(s));
        self.adj[s as usize].push(link(c));
        self.links += 1;
        self.version += 1;
    }

    /// Takes the tunnel out of the routing graph (an end died); the record
    /// stays until both managers know.
    pub fn unlink(&mut self, t: u32) {
        let Some(x) = self.tunnel_mut(t) else { return };
        if !x.linked {
            return;
        }
        x.linked = false;
        let (c, s) = (x.client, x.server);
        for n in [c, s] {
            let a = &mut self.adj[n as usize];
            if let Some(k) = a.iter().position(|l| l.tunnel == t) {
                a.swap_remove(k);
            }
        }
        self.links -= 1;
        self.version += 1;
    }

    pub fn remove(&mut self, t: u32) -> Option<Tunnel> {
        self.unlink(t);
        let x = self.tunnels.get_mut(t as usize)?.take()?;
        self.by_pair.remove(&(x.client, x.server));
        for n in [x.client, x.server] {
            let v = &mut self.of_node[n as usize];
            if let Some(k) = v.iter().position(|&id| id == t) {
                v.swap_remove(k);
            }
        }
        self.free.push(t);
        Some(x)
    }

    pub fn set_drained(&mut self, t: u32, drained: bool) {
        let Some(x) = self.tunnel_mut(t) else { return };
        if x.drained == drained {
            return;
        }
        x.drained = drained;
        let (c, s, linked) = (x.client, x.server, x.linked);
        if linked {
            for n in [c, s] {
                for l in &mut self.adj[n as usize] {
                    if l.tunnel == t {
                        l.drained = drained;
                    }
                }
            }
            self.version += 1;
        }
    }

    /// Whether one of the node's linked tunnels is being drained (by
    /// either end): its manager polls babel often then.
    pub fn drains(&self, n: u32) -> bool {
        self.adj[n as usize].iter().any(|l| l.drained)
    }

    /// Linked (client, server) pairs, sorted: a snapshot of the overlay.
    pub fn edge_set(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .tunnels
            .iter()
            .flatten()
            .filter(|x| x.linked)
            .map(|x| (x.client.min(x.server), x.client.max(x.server)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Connected components of the linked graph among `alive` nodes (the
/// others are left out, with their tunnels).
#[derive(Debug, Default, Clone)]
pub struct Components {
    /// Component of each node (`u32::MAX` for dead nodes).
    pub label: Vec<u32>,
    pub sizes: Vec<u32>,
    stack: Vec<u32>,
}

impl Components {
    pub fn compute(&mut self, g: &Graph, alive: &[bool]) {
        let n = g.nodes() as usize;
        self.label.clear();
        self.label.resize(n, u32::MAX);
        self.sizes.clear();
        for s in 0..n {
            if !alive[s] || self.label[s] != u32::MAX {
                continue;
            }
            let c = self.sizes.len() as u32;
            self.label[s] = c;
            let mut size = 1;
            self.stack.push(s as u32);
            while let Some(x) = self.stack.pop() {
                for l in g.adj(x) {
                    let y = l.peer;
                    if alive[y as usize] && self.label[y as usize] == u32::MAX {
                        self.label[y as usize] = c;
                        size += 1;
                        self.stack.push(y);
                    }
                }
            }
            self.sizes.push(size);
        }
    }

    pub fn same(&self, a: u32, b: u32) -> bool {
        let l = self.label[a as usize];
        l != u32::MAX && l == self.label[b as usize]
    }

    pub fn largest(&self) -> u32 {
        self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Ordered pairs of distinct nodes that can reach each other.
    pub fn reachable_pairs(&self) -> u64 {
        self.sizes
            .iter()
            .map(|&s| u64::from(s) * u64::from(s.saturating_sub(1)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_unlink_remove_and_components() {
        let mut g = Graph::new(5);
        let a = g.attempt(0, 1, "re6stnet1", 0, 1);
        let b = g.attempt(1, 2, "re6stnet1", 0, 2);
        let c = g.attempt(3, 4, "re6stnet1", 1, 3);
        for t in [a, b, c] {
            g.link(t);
        }
        assert_eq!(g.links(), 3);
        let alive = [true; 5];
        let mut comp = Components::default();
        comp.compute(&g, &alive);
        assert_eq!(comp.sizes, vec![3, 2]);
        assert!(comp.same(0, 2) && !comp.same(0, 3));
        assert_eq!(comp.reachable_pairs(), 3 * 2 + 2);
        assert_eq!(g.by_iface(1, "re6stnet1"), Some(b));
        g.set_drained(b, true);
        assert!(g.drains(1) && g.drains(2) && !g.drains(0));
        assert!(g.adj(2).iter().all(|l| l.drained));
        g.unlink(b);
        comp.compute(&g, &alive);
        assert_eq!(comp.largest(), 2);
        assert!(g.tunnel(b).is_some(), "record kept until removed");
        g.remove(b);
        assert!(g.tunnel(b).is_none() && g.by_pair(1, 2).is_none());
        // A freed slot is reused.
        assert_eq!(g.attempt(2, 0, "re6stnet1", 0, 4), b);
        assert_eq!(g.edge_set(), vec![(0, 1), (3, 4)]);
    }
}
