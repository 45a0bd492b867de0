//! Set-up as one guard: it records the undo of each [`NetOp`] it carried
//! out and, when dropped, carries those out in reverse order. So a set-up
//! step failing half-way (a `?`), an error later on and the node's normal
//! end all leave the kernel as it was. A panic unwinds through the drop;
//! where panics abort (the release profile), a panic hook does the same
//! before the process ends.

use std::io;
use std::sync::{Arc, Mutex, Once, PoisonError};

use super::{KernelError, NetOp};
use crate::daemon::log::log;

type Exec = Box<dyn FnMut(&NetOp) -> io::Result<()> + Send>;

struct Done {
    /// Undos of what succeeded, in the order it was done.
    undo: Vec<NetOp>,
    exec: Exec,
}

impl Done {
    fn undo_all(&mut self) {
        while let Some(op) = self.undo.pop() {
            let _ = (self.exec)(&op);
        }
    }
}

/// The guards alive, for the panic hook.
static LIVE: Mutex<Vec<Arc<Mutex<Done>>>> = Mutex::new(Vec::new());

/// Undoes what the live guards did (when panics abort, no drop runs).
fn undo_live() {
    // try_lock: the panic may have come while a lock was held.
    if let Ok(live) = LIVE.try_lock() {
        for d in live.iter() {
            if let Ok(mut d) = d.try_lock() {
                d.undo_all();
            }
        }
    }
}

/// What the node set up in the kernel, undone when dropped.
pub struct Setup {
    done: Arc<Mutex<Done>>,
    verbose: u8,
}

impl Setup {
    /// Carries operations out over rtnetlink.
    pub fn new(verbose: u8) -> Setup {
        Setup::with(
            Box::new(|op| super::netlink::Netlink::open()?.apply(op)),
            verbose,
        )
    }

    /// Carries operations out with `exec` (tests).
    pub fn with(exec: Exec, verbose: u8) -> Setup {
        if cfg!(panic = "abort") {
            static HOOK: Once = Once::new();
            HOOK.call_once(|| {
                let prev = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    prev(info);
                    undo_live();
                }));
            });
        }
        let done = Arc::new(Mutex::new(Done {
            undo: Vec::new(),
            exec,
        }));
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(done.clone());
        Setup { done, verbose }
    }

    /// Carries `op` out and remembers its undo. An addition that fails
    /// is retried once after its undo succeeds: holding the run
    /// directory's lock, what is in the way can only be a dead instance's
    /// leftover (a node killed with SIGKILL keeps its address and taps).
    pub fn apply(&mut self, op: NetOp) -> Result<(), KernelError> {
        let mut d = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let undo = op.undo();
        let mut result = (d.exec)(&op);
        if let (Err(_), Some(u)) = (&result, &undo) {
            if (d.exec)(u).is_ok() {
                log(
                    1,
                    self.verbose,
                    format!("removed what a previous run left: {u}"),
                );
                result = (d.exec)(&op);
            }
        }
        result.map_err(|source| KernelError {
            op: op.to_string(),
            source,
        })?;
        log(3, self.verbose, &op);
        d.undo.extend(undo);
        Ok(())
    }

    /// The undos pending, in the order they will run.
    pub fn pending(&self) -> Vec<NetOp> {
        let d = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        d.undo.iter().rev().cloned().collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .undo_all();
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|d| !Arc::ptr_eq(d, &self.done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::op::{Addr, Route, PROTO_BOOT};

    /// An executor that records what it was asked, failing the
    /// operations `fails` names (by their `ip` command).
    fn recording(fails: &'static [&'static str]) -> (Exec, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let exec: Exec = Box::new(move |op: &NetOp| {
            let s = op.to_string();
            l.lock().unwrap().push(s.clone());
            if fails.contains(&s.as_str()) {
                Err(io::ErrorKind::AlreadyExists.into())
            } else {
                Ok(())
            }
        });
        (exec, log)
    }

    fn addr() -> NetOp {
        NetOp::AddrAdd(Addr {
            ip: "2001:db8::1".parse().unwrap(),
            len: 64,
            dev: "eth0".into(),
        })
    }

    fn route() -> NetOp {
        NetOp::RouteAdd(Route::unreachable(
            "2001:db8::".parse().unwrap(),
            48,
            PROTO_BOOT,
        ))
    }

    #[test]
    fn a_step_failing_half_way_undoes_the_earlier_ones_in_reverse() {
        let (exec, log) = recording(&["ip tuntap add dev re6stnet2 mode tap"]);
        let result = (|| {
            let mut s = Setup::with(exec, 0);
            s.apply(addr())?;
            s.apply(route())?;
            s.apply(NetOp::LinkUp {
                dev: "eth0".into(),
                mtu: None,
            })?;
            s.apply(NetOp::TapAdd("re6stnet1".into()))?;
            s.apply(NetOp::TapAdd("re6stnet2".into()))?;
            Ok::<_, KernelError>(s)
        })();
        let e = result.err().unwrap();
        assert!(
            e.to_string()
                .starts_with("ip tuntap add dev re6stnet2 mode tap failed"),
            "{e}"
        );
        assert_eq!(
            log.lock().unwrap().join("\n"),
            "ip -6 addr add 2001:db8::1/64 dev eth0\n\
             ip -6 route add unreachable 2001:db8::/48 proto 3\n\
             ip link set eth0 up\n\
             ip tuntap add dev re6stnet1 mode tap\n\
             ip tuntap add dev re6stnet2 mode tap\n\
             ip tuntap del dev re6stnet2 mode tap\n\
             ip tuntap add dev re6stnet2 mode tap\n\
             ip tuntap del dev re6stnet1 mode tap\n\
             ip -6 route del unreachable 2001:db8::/48 proto 3\n\
             ip -6 addr del 2001:db8::1/64 dev eth0"
        );
    }

    #[test]
    fn a_leftover_in_the_way_is_removed_and_the_addition_retried_once() {
        static CALLS: Mutex<usize> = Mutex::new(0);
        let exec: Exec = Box::new(|op| {
            let mut n = CALLS.lock().unwrap();
            *n += 1;
            // The first addition fails, its undo and the retry succeed.
            match (*n, op) {
                (1, NetOp::AddrAdd(_)) => Err(io::ErrorKind::AlreadyExists.into()),
                _ => Ok(()),
            }
        });
        let mut s = Setup::with(exec, 0);
        s.apply(addr()).unwrap();
        assert_eq!(*CALLS.lock().unwrap(), 3);
        assert_eq!(s.pending(), vec![addr().undo().unwrap()], "undone once");
    }

    #[test]
    fn a_panic_after_set_up_undoes_it() {
        let (exec, log) = recording(&[]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut s = Setup::with(exec, 0);
            s.apply(route()).unwrap();
            panic!("after set-up");
        }));
        assert!(r.is_err());
        assert_eq!(
            log.lock().unwrap().last().unwrap(),
            "ip -6 route del unreachable 2001:db8::/48 proto 3"
        );
    }

    #[test]
    fn the_normal_end_undoes_everything_and_unregisters() {
        let (exec, log) = recording(&[]);
        let s = {
            let mut s = Setup::with(exec, 0);
            s.apply(addr()).unwrap();
            s.apply(route()).unwrap();
            s
        };
        let live = LIVE
            .lock()
            .unwrap()
            .iter()
            .filter(|d| Arc::ptr_eq(d, &s.done))
            .count();
        assert_eq!(live, 1);
        assert_eq!(
            s.pending(),
            vec![route().undo().unwrap(), addr().undo().unwrap()]
        );
        drop(s);
        assert_eq!(log.lock().unwrap().len(), 4);
    }
}
