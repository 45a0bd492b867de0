//! Issue 16's registry-down recovery, small enough for `make test`: after
//! the best-connected 30 % of the nodes die with the registry's node, every
//! survivor must be back in one component within a minute, with no
//! bootstrap peer to ask. NATed nodes rejoin only through the peers in
//! their cache, which must hold live ones: with only the addresses learnt
//! when their own tunnels were made (the manager before background
//! queries), some of them stayed cut off for good.

use re6st_sim::config::{Loss, SimConfig};
use re6st_sim::run::{run, Options};

#[test]
fn every_survivor_of_a_targeted_loss_rejoins_without_the_registry() {
    // One thread per seed: each run is independent (a simulation's
    // random state is its own) and the cores' handshakes make them slow.
    let runs: Vec<_> = (1..=3)
        .map(|seed| {
            std::thread::spawn(move || {
                let mut cfg = SimConfig::new(400);
                cfg.seed = seed;
                cfg.join_over = 300;
                cfg.tick = 10;
                cfg.loss = Some("targeted:0.3".parse::<Loss>().unwrap());
                cfg.registry_down = true;
                cfg.loss_at = 1800;
                cfg.duration = 2100;
                let r = run(
                    cfg,
                    Options {
                        no_paths: true,
                        ..Default::default()
                    },
                );
                (seed, r.loss.expect("a loss happened"))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (seed, loss) = run.join().expect("a simulation thread");
        let ok = loss.one_component_at_end && loss.reconnected_after_s.is_some_and(|s| s <= 60);
        if !ok {
            failures.push(format!(
                "seed {seed}: one component after {:?} s, {} stranded at the end ({} NATed)",
                loss.reconnected_after_s, loss.stranded_at_end, loss.stranded_nat_at_end
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
