//! Retention: on a fixed cadence, deletes the sealed segments of every partition
//! that are past `retention.ms` or `retention.bytes`.

use std::sync::Weak;
use std::time::Duration;

use super::{PartitionError, Storage};
use crate::clock::now_ms;

/// Applies retention every `interval` until the storage runtime is dropped.
pub(super) async fn run(storage: Weak<Storage>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(s) = storage.upgrade() else {
            return;
        };
        let parts = s.partitions();
        drop(s);
        let res = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            for p in parts {
                match p.apply_retention_blocking(now) {
                    Ok(0) | Err(PartitionError::Deleted | PartitionError::Offline) => {}
                    Ok(n) => tracing::info!(
                        partition = p.index,
                        segments = n,
                        start = p.log_start_offset(),
                        "retention deleted segments"
                    ),
                    Err(e) => tracing::error!(partition = p.index, error = %e, "retention failed"),
                }
            }
        })
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "retention task failed");
        }
    }
}
