//! babeld and the kernel's routes, as the node's effects need them:
//! babeld's configuration lines, dumps for the tunnel manager, and the
//! comparison of babeld's routes with the kernel's.

use std::collections::BTreeMap;

use super::log::log;
use super::node::Node;
use super::tasks::{self, Done, KernelJob, ViewSource};
use crate::babel::kernel_check::{KernelRoute, Net};
use crate::babel::table::Table;

impl Node {
    /// Sends configuration lines to babeld (in order, by a task).
    pub(super) fn tell_babel(&self, lines: &[String]) {
        let _ = self.babel_commands.send(lines.to_vec());
    }

    /// The interfaces babeld was told about, for a babeld (re)started.
    pub(super) fn babel_interfaces(&self) -> Vec<String> {
        self.core
            .babel_interfaces()
            .known()
            .iter()
            .cloned()
            .collect()
    }

    /// Starts comparing babeld's routes with the kernel's (see
    /// [`KernelCheck`]); [`Node::fix_kernel_routes`] gets the result.
    pub(super) fn check_kernel_routes(&mut self) {
        let (source, done) = (self.view_source(), self.done.clone());
        tokio::spawn(async move {
            let _ = done.send(tasks::kernel_and_babel(source).await);
        });
    }

    /// Puts into the kernel the routes babeld believes installed and the
    /// kernel does not hold.
    pub(super) fn fix_kernel_routes(
        &mut self,
        table: &Table,
        kernel: &BTreeMap<(Net, Net), KernelRoute>,
    ) {
        let (v6, v4) = (self.my_ip, self.ipv4.map(|(a, _)| a));
        let pref_src = move |dest: std::net::IpAddr| match dest {
            std::net::IpAddr::V6(_) => Some(std::net::IpAddr::V6(v6)),
            std::net::IpAddr::V4(_) => v4.map(std::net::IpAddr::V4),
        };
        let fixes = self.kernel_check.compare(table.routes(), kernel, &pref_src);
        for op in &fixes {
            log(
                1,
                self.o.verbose,
                format!("the kernel differs from babeld: {op}"),
            );
        }
        if !fixes.is_empty() {
            self.kernel(KernelJob::Apply(fixes));
        }
    }

    pub(super) fn view_source(&self) -> ViewSource {
        ViewSource {
            socket: self.babel_socket.clone(),
            network: self.network,
            me: self.prefix,
            lan: self.o.interfaces.clone(),
        }
    }

    /// Starts a dump for the tunnel manager.
    pub(super) fn request_dump(&mut self) {
        let (source, done) = (self.view_source(), self.done.clone());
        tokio::spawn(async move {
            let _ = done.send(Done::Routes(source.view().await));
        });
    }
}
