//! Whether Socket Mode can receive anything: the number of open connections that Slack greeted
//! with `hello`, read by `/readyz` and exported as `slackops_socket_connections`.
//!
//! In HTTP mode it is disabled and never makes the service unready. It must never hold anything
//! but counters: no URL, no token.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug)]
pub struct SocketHealth {
    enabled: bool,
    up: AtomicI64,
    ever_up: AtomicBool,
    gauge: Gauge,
}

impl SocketHealth {
    /// `enabled` in Socket Mode; `gauge` is the exported connection count.
    pub fn new(enabled: bool, gauge: Gauge) -> Self {
        Self {
            enabled,
            up: AtomicI64::new(0),
            ever_up: AtomicBool::new(false),
            gauge,
        }
    }

    /// A connection received `hello`.
    pub fn connected(&self) {
        self.ever_up.store(true, Ordering::SeqCst);
        let n = self.up.fetch_add(1, Ordering::SeqCst) + 1;
        self.gauge.set(n);
    }

    /// A connection that had received `hello` closed or was dropped.
    pub fn disconnected(&self) {
        let n = self.up.fetch_sub(1, Ordering::SeqCst) - 1;
        self.gauge.set(n.max(0));
    }

    /// Open, greeted connections.
    pub fn up(&self) -> i64 {
        self.up.load(Ordering::SeqCst).max(0)
    }

    /// `Err(reason)` while Socket Mode cannot receive anything.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.enabled || self.up() > 0 {
            Ok(())
        } else if self.ever_up.load(Ordering::SeqCst) {
            Err("every Slack Socket Mode connection is down")
        } else {
            Err("no Slack Socket Mode connection has received hello yet")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_a_hello_and_unready_when_every_connection_is_down() {
        let gauge = Gauge::default();
        let h = SocketHealth::new(true, gauge.clone());
        assert!(h.readiness().unwrap_err().contains("hello"));
        h.connected();
        h.connected();
        assert_eq!(gauge.get(), 2);
        assert_eq!(h.readiness(), Ok(()));
        h.disconnected();
        assert_eq!(h.readiness(), Ok(()));
        h.disconnected();
        assert_eq!(gauge.get(), 0);
        assert!(h.readiness().unwrap_err().contains("down"));
        assert_eq!(
            SocketHealth::new(false, Gauge::default()).readiness(),
            Ok(())
        );
    }
}
