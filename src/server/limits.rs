//! Per-address connection counting, shared by the mailbox server and the relay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::metrics::Reason;

/// Refused connections are logged at most this often (with counts): an abuser must not be able
/// to fill the server's log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts refused connections; logs the first at once and then at most one line per
/// [`REFUSAL_LOG_INTERVAL`], with the count since the last line and in all.
#[derive(Debug)]
pub struct Refusals {
    server: &'static str,
    counted: Family<Reason, Counter>,
    total: u64,
    unlogged: u64,
    next_log: Option<Instant>,
}

impl Refusals {
    /// Refusals of `server` (its name in the log), also counted by reason in `counted`.
    pub fn new(server: &'static str, counted: Family<Reason, Counter>) -> Refusals {
        Refusals {
            server,
            counted,
            total: 0,
            unlogged: 0,
            next_log: None,
        }
    }

    /// One more refused connection, for `reason` (a metric label), explained by `why`.
    pub fn refused(&mut self, reason: &'static str, why: std::fmt::Arguments<'_>) {
        self.counted.get_or_create(&Reason { reason }).inc();
        self.total += 1;
        self.unlogged += 1;
        let now = Instant::now();
        if self.next_log.is_none_or(|at| now >= at) {
            tracing::warn!(
                "{}: refused {} connection(s) since the last report, {} in all; the latest: {why}",
                self.server,
                self.unlogged,
                self.total
            );
            self.unlogged = 0;
            self.next_log = Some(now + REFUSAL_LOG_INTERVAL);
        }
    }

    /// Connections refused so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Counts open connections per client address; a [`AddressSlot`] holds one until dropped.
#[derive(Debug, Clone)]
pub struct AddressLimit {
    per_address: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection counted against its address.
#[derive(Debug)]
pub struct AddressSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressLimit {
    /// At most `per_address` connections at once from one address.
    pub fn new(per_address: usize) -> AddressLimit {
        AddressLimit {
            per_address,
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `ip`, or `None` if that address has its fill. IPv4
    /// addresses mapped into IPv6 count as IPv4.
    pub fn admit(&self, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            open: self.open.clone(),
        })
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_slots_come_back() {
        let limit = AddressLimit::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = limit.admit(a).unwrap();
        let _s2 = limit.admit(mapped).unwrap();
        assert!(
            limit.admit(a).is_none(),
            "the mapped form counts as the same address"
        );
        assert!(limit.admit(b).is_some(), "other addresses are not affected");
        drop(s1);
        assert!(limit.admit(a).is_some());
    }
}
