//! re6st-sim: thousands of re6st nodes, each running the node's real
//! sans-IO core ([`re6st_node_core::node::NodeCore`]: its tunnel manager,
//! peer protocol, registry calls and timers), over
//! a modelled routing layer and in simulated time. It measures what the
//! rewiring of re6st gives at scale: diameter, stretch, connectivity
//! under loss, recovery, control traffic. See docs/simulator.md for what
//! is modelled and what is not.

pub mod check;
pub mod config;
pub mod graph;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod pki;
pub mod report;
pub mod rng;
pub mod routing;
pub mod run;
pub mod table;
pub mod wire;
