//! The fault switchboard: the fsync stall gate and the counters `status` reports.
//!
//! A stalled fsync is parked here as a closure that holds its FUSE reply, so no request thread
//! waits on it: reads, writes and lookups keep flowing while the caller of fsync sits blocked in
//! the kernel. One worker thread releases parked fsyncs, in arrival order, when the stall ends
//! (its deadline passes or `unstall` arrives). This module never touches files itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::inode::lock;

/// A parked fsync: runs the fsync and sends its reply.
pub type Parked = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Gate {
    until: Option<Instant>,
    until_wall: Option<SystemTime>,
    parked: VecDeque<Parked>,
}

impl Gate {
    fn stalled(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| u > now)
    }
}

/// Counters, all monotonic.
#[derive(Default)]
pub struct Counters {
    /// fsync/fdatasync/fsyncdir requests completed (stalled or not).
    pub fsyncs: AtomicU64,
    /// Of those requests, how many were parked by a stall.
    pub fsyncs_stalled: AtomicU64,
    /// `drop` commands served.
    pub drops: AtomicU64,
    /// Dirty bytes discarded by all drops.
    pub dropped_bytes: AtomicU64,
    /// Files with discarded state, summed over all drops.
    pub dropped_files: AtomicU64,
}

/// The stall state and counters shared by the filesystem and the control socket.
#[derive(Default)]
pub struct Faults {
    gate: Mutex<Gate>,
    wake: Condvar,
    /// Counters reported by `status`.
    pub counters: Counters,
}

/// A snapshot of the stall for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallState {
    /// Milliseconds until the stall ends, if one is active.
    pub remaining_ms: Option<u64>,
    /// When the stall ends, as Unix milliseconds, if one is active.
    pub until_unix_ms: Option<u64>,
    /// fsyncs parked right now.
    pub waiting: usize,
}

impl Faults {
    /// Stalls every fsync from now until `duration` passes (replacing any current stall).
    pub fn stall(&self, duration: Duration) {
        let mut gate = lock(&self.gate);
        gate.until = Some(Instant::now() + duration);
        gate.until_wall = Some(SystemTime::now() + duration);
        self.wake.notify_all();
    }

    /// Ends the stall now; returns how many parked fsyncs are released.
    pub fn unstall(&self) -> usize {
        let mut gate = lock(&self.gate);
        gate.until = None;
        gate.until_wall = None;
        self.wake.notify_all();
        gate.parked.len()
    }

    /// Parks `op` if a stall is active and returns `None`; otherwise hands `op` back for the
    /// caller to run at once.
    pub fn gate(&self, op: Parked) -> Option<Parked> {
        let mut gate = lock(&self.gate);
        if !gate.stalled(Instant::now()) {
            return Some(op);
        }
        gate.parked.push_back(op);
        self.counters.fsyncs_stalled.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_all();
        None
    }

    /// The current stall.
    pub fn stall_state(&self) -> StallState {
        let gate = lock(&self.gate);
        let now = Instant::now();
        let active = gate.stalled(now);
        StallState {
            remaining_ms: gate
                .until
                .filter(|_| active)
                .map(|u| u.saturating_duration_since(now).as_millis() as u64),
            until_unix_ms: gate
                .until_wall
                .filter(|_| active)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            waiting: gate.parked.len(),
        }
    }

    /// The worker loop: waits for parked fsyncs and runs them once the stall is over. Never returns.
    pub fn release_parked_forever(&self) -> ! {
        loop {
            let batch: Vec<Parked> = {
                let mut gate = lock(&self.gate);
                loop {
                    let now = Instant::now();
                    if !gate.parked.is_empty() && !gate.stalled(now) {
                        break;
                    }
                    gate = match gate.until.filter(|&u| u > now && !gate.parked.is_empty()) {
                        Some(until) => {
                            self.wake
                                .wait_timeout(gate, until - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                        None => self.wake.wait(gate).unwrap_or_else(|e| e.into_inner()),
                    };
                }
                gate.parked.drain(..).collect()
            };
            for op in batch {
                op();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn fsync_runs_inline_without_a_stall() {
        let faults = Faults::default();
        assert!(faults.gate(Box::new(|| {})).is_some());
        assert_eq!(faults.counters.fsyncs_stalled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stalled_fsyncs_wait_for_unstall_then_run_in_order() {
        let faults = Arc::new(Faults::default());
        let worker = faults.clone();
        std::thread::spawn(move || worker.release_parked_forever());
        faults.stall(Duration::from_secs(3600));
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            assert!(faults.gate(Box::new(move || tx.send(i).unwrap())).is_none());
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "parked while stalled"
        );
        assert_eq!(faults.stall_state().waiting, 3);
        assert!(faults.stall_state().remaining_ms.unwrap() > 3_000_000);
        assert_eq!(faults.unstall(), 3);
        let got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(faults.stall_state().remaining_ms, None);
        assert_eq!(faults.counters.fsyncs_stalled.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_stall_ends_by_itself_when_its_time_passes() {
        let faults = Arc::new(Faults::default());
        let worker = faults.clone();
        std::thread::spawn(move || worker.release_parked_forever());
        let start = Instant::now();
        faults.stall(Duration::from_millis(300));
        let (tx, rx) = mpsc::channel();
        assert!(
            faults
                .gate(Box::new(move || tx.send(Instant::now()).unwrap()))
                .is_none()
        );
        let ran = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(ran.duration_since(start) >= Duration::from_millis(300));
        assert!(
            faults.gate(Box::new(|| {})).is_some(),
            "no stall afterwards"
        );
    }
}
