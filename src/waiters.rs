//! Parked waiters: requests that wait for something to happen (a Fetch for
//! an append, a ShareFetch for a record offered again) register a `Notify`
//! here and are woken all together when it happens. One mechanism, below
//! every feature that parks.
//!
//! Only weak references are held, so a request that gave up (its deadline
//! passed, its connection closed) costs nothing beyond a pruned entry.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Each request parks at most one waiter per list and connections are
/// bounded, so the list is too; past this many entries dead ones are pruned
/// before another is added.
const PRUNE_AT: usize = 64;

/// A list of parked waiters.
#[derive(Debug, Default)]
pub struct Waiters(Mutex<Vec<Weak<Notify>>>);

impl Waiters {
    /// An empty list.
    pub fn new() -> Waiters {
        Waiters::default()
    }

    /// Parks `n` until the next [`Waiters::wake`]. Register before checking
    /// the condition, so an event between the check and the wait still wakes.
    pub fn register(&self, n: &Arc<Notify>) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= PRUNE_AT {
            w.retain(|x| x.strong_count() > 0);
        }
        w.push(Arc::downgrade(n));
    }

    /// Wakes every parked waiter (each keeps a permit if not yet waiting).
    pub fn wake(&self) {
        let waiters = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for w in waiters {
            if let Some(n) = w.upgrade() {
                n.notify_one();
            }
        }
    }
}
