//! babeld's local control protocol (`-G PATH`): after a greeting
//! (`BABEL 1.0`, informational lines, `ok`), each request is answered by
//! lines ending with `ok`, `no` or `bad`; `dump` and `monitor` produce
//! lines such as
//!
//! ```text
//! add neighbour 55e5.. address fe80::1 if re6stnet1 reach ff00 ureach 0000 rxcost 96 txcost 96 rtt 0.2 rttcost 0 cost 96
//! add route 55e5.. prefix 2001:db8:1::/48 from ::/0 installed yes id 44:cf:.. metric 96 refmetric 0 via fe80::1 if re6stnet1
//! flush neighbour 55e5.. address fe80::1 if re6stnet1 ...
//! ```
//!
//! Parsing is pure and total: any line gives a [`Line`] or an error.

use std::net::IpAddr;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error("empty line")]
    Empty,
    #[error("unknown line {0:?}")]
    Unknown(String),
    #[error("{kind} line without {field}: {line:?}")]
    Missing {
        kind: &'static str,
        field: &'static str,
        line: String,
    },
    #[error("bad {field} in {line:?}")]
    Bad { field: &'static str, line: String },
}

/// What a `add`/`change`/`flush` line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Change,
    Flush,
}

/// A babel neighbour, as babeld reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub address: IpAddr,
    pub interface: String,
    /// Reachability bitmap of the neighbour's hellos (0 when not said).
    pub reach: u16,
    pub rxcost: u32,
    pub txcost: u32,
    pub cost: u32,
}

/// A route babeld learned (not one it redistributes itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// babeld's identifier of the route (used by change/flush lines).
    pub key: String,
    pub prefix: (IpAddr, u8),
    pub from: (IpAddr, u8),
    pub installed: bool,
    /// Router id of the originator.
    pub router_id: String,
    pub metric: u32,
    /// Metric announced by the neighbour: 0 when the neighbour originates it.
    pub refmetric: u32,
    pub via: IpAddr,
    pub interface: String,
}

/// babeld's metric for a retracted route.
pub const INFINITY: u32 = 0xFFFF;

impl Route {
    /// Installed and leading somewhere: babeld keeps a retracted route
    /// installed (as unreachable, metric infinity) for minutes, and that
    /// one reaches nobody.
    pub fn usable(&self) -> bool {
        self.installed && self.metric < INFINITY
    }
}

/// One line from babeld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `BABEL 1.0`
    Greeting(String),
    /// `version ...`, `host ...`, `my-id ...`
    Info(String, String),
    Ok,
    No,
    Bad,
    Interface {
        action: Action,
        name: String,
        up: bool,
    },
    Neighbour {
        action: Action,
        key: String,
        neighbour: Option<Neighbour>,
    },
    Route {
        action: Action,
        key: String,
        route: Option<Route>,
    },
    /// Our own redistributed routes (`xroute`): not needed by the node.
    XRoute,
}

/// The value after `name` among babeld's `name value` pairs (the last
/// one, should a line say it twice). A lookup instead of a map of the
/// pairs: babeld's dumps are thousands of lines, and a map of owned
/// strings per line made nearly half of the node's allocations.
fn field<'a>(pairs: &[&'a str], name: &str) -> Option<&'a str> {
    pairs
        .chunks_exact(2)
        .rev()
        .find(|c| c[0] == name)
        .map(|c| c[1])
}

/// `2001:db8::/48` as an address and a length.
pub fn prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    let a: IpAddr = a.parse().ok()?;
    let l: u8 = l.parse().ok()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    (l <= max).then_some((a, l))
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<Line, ControlError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(&first) = words.first() else {
        return Err(ControlError::Empty);
    };
    let unknown = || ControlError::Unknown(line.chars().take(200).collect());
    let action = match first {
        "ok" if words.len() == 1 => return Ok(Line::Ok),
        "no" => return Ok(Line::No),
        "bad" => return Ok(Line::Bad),
        "BABEL" => return Ok(Line::Greeting(words.get(1).unwrap_or(&"").to_string())),
        "version" | "host" | "my-id" => {
            return Ok(Line::Info(first.to_owned(), words[1..].join(" ")));
        }
        "add" => Action::Add,
        "change" => Action::Change,
        "flush" => Action::Flush,
        _ => return Err(unknown()),
    };
    let (Some(&kind), Some(&key)) = (words.get(1), words.get(2)) else {
        return Err(unknown());
    };
    let f = |name| field(&words[3..], name);
    let bad = |field| ControlError::Bad {
        field,
        line: line.chars().take(200).collect(),
    };
    let get = |kind: &'static str, field: &'static str| {
        f(field).ok_or_else(|| ControlError::Missing {
            kind,
            field,
            line: line.chars().take(200).collect(),
        })
    };
    let num = |kind, field| -> Result<u32, ControlError> {
        get(kind, field)?.parse().map_err(|_| bad(field))
    };
    match kind {
        "interface" => Ok(Line::Interface {
            action,
            name: key.to_owned(),
            up: f("up").is_some_and(|v| v == "true"),
        }),
        "neighbour" => {
            let neighbour = if action == Action::Flush {
                None
            } else {
                Some(Neighbour {
                    address: get("neighbour", "address")?
                        .parse()
                        .map_err(|_| bad("address"))?,
                    interface: get("neighbour", "if")?.to_owned(),
                    reach: match f("reach") {
                        Some(r) => u16::from_str_radix(r, 16).map_err(|_| bad("reach"))?,
                        None => 0,
                    },
                    rxcost: num("neighbour", "rxcost")?,
                    txcost: num("neighbour", "txcost")?,
                    cost: num("neighbour", "cost")?,
                })
            };
            Ok(Line::Neighbour {
                action,
                key: key.to_owned(),
                neighbour,
            })
        }
        "route" => {
            let route = if action == Action::Flush {
                None
            } else {
                Some(Route {
                    key: key.to_owned(),
                    prefix: prefix(get("route", "prefix")?).ok_or_else(|| bad("prefix"))?,
                    from: match f("from") {
                        Some(s) => prefix(s).ok_or_else(|| bad("from"))?,
                        None => (IpAddr::from([0u16; 8]), 0),
                    },
                    installed: get("route", "installed")? == "yes",
                    router_id: get("route", "id")?.to_owned(),
                    metric: num("route", "metric")?,
                    refmetric: num("route", "refmetric")?,
                    via: get("route", "via")?.parse().map_err(|_| bad("via"))?,
                    interface: get("route", "if")?.to_owned(),
                })
            };
            Ok(Line::Route {
                action,
                key: key.to_owned(),
                route,
            })
        }
        "xroute" => Ok(Line::XRoute),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_field_said_twice_counts_once_the_last_and_odd_words_are_ignored() {
        let Line::Route {
            route: Some(r), ..
        } = parse_line("add route 1 prefix 2001:db8:1::/48 installed no installed yes id x metric 96 refmetric 0 via fe80::1 if re6stnet0 trailing").unwrap()
        else {
            panic!("not a route")
        };
        assert!(r.installed);
        assert_eq!(r.interface, "re6stnet0");
        assert!(parse_line("add route 1 prefix 2001:db8:1::/48 installed yes id x metric 96 refmetric 0 via fe80::1 if").is_err());
    }

    #[test]
    fn real_lines() {
        assert_eq!(
            parse_line("BABEL 1.0").unwrap(),
            Line::Greeting("1.0".into())
        );
        assert_eq!(parse_line("ok").unwrap(), Line::Ok);
        assert_eq!(
            parse_line("my-id 44:cf:29:9a:db:e6:c0:35").unwrap(),
            Line::Info("my-id".into(), "44:cf:29:9a:db:e6:c0:35".into())
        );
        let n = parse_line("add neighbour 555ee61ea120 address fe80::a04c:52ff:fe12:382c if va reach f000 ureach 0000 rxcost 4096 txcost 96 rtt 0.237 rttcost 0 cost 96").unwrap();
        let Line::Neighbour {
            action: Action::Add,
            neighbour: Some(n),
            ..
        } = n
        else {
            panic!()
        };
        assert_eq!(
            (n.interface.as_str(), n.rxcost, n.txcost, n.cost),
            ("va", 4096, 96, 96)
        );
        let r = parse_line("add route 5570 prefix 2001:db8:2::/48 from ::/0 installed yes id 44:cf:29:9a:db:e6:c0:36 metric 96 price 0 refmetric 0 via fe80::a04c:52ff:fe12:382c if va").unwrap();
        let Line::Route { route: Some(r), .. } = r else {
            panic!()
        };
        assert_eq!(r.prefix, ("2001:db8:2::".parse().unwrap(), 48));
        assert!(r.installed && r.refmetric == 0 && r.metric == 96);
        assert!(matches!(
            parse_line("flush route 5570 prefix 2001:db8:2::/48").unwrap(),
            Line::Route {
                action: Action::Flush,
                route: None,
                ..
            }
        ));
        assert!(matches!(
            parse_line("add interface va up true ipv6 fe80::1").unwrap(),
            Line::Interface { up: true, .. }
        ));
        for bad in [
            "",
            "hello",
            "add",
            "add route x prefix nope",
            "add neighbour k address x if y rxcost 1 txcost 1 cost 1",
            "add route k prefix ::/129 installed no id a metric 1 refmetric 1 via ::1 if x",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_line(&s);
        }

        #[test]
        fn never_panics_on_plausible_lines(words in proptest::collection::vec(prop_oneof![
            Just("add"), Just("route"), Just("neighbour"), Just("prefix"), Just("via"), Just("if"),
            Just("metric"), Just("1"), Just("fe80::1"), Just("::/0"), Just("installed"), Just("yes")], 0..20)) {
            let _ = parse_line(&words.join(" "));
        }
    }
}
