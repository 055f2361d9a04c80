//! Wall-clock time. The coordinators never read the clock themselves: their
//! async shells call [`now_ms`] and pass the value in, so tests inject time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Work time: how long the broker's threads spend on one request, excluding
/// the time it is parked (a long-poll fetch, an fsync wait, a group join),
/// which is what Kafka's request quota (`request_percentage`) measures as
/// handler-thread time. [`metered`] times the polls of a request's future;
/// [`blocking`] adds the time of work it hands to the blocking pool.
pub mod work {
    use std::cell::Cell;
    use std::future::{poll_fn, Future};
    use std::pin::pin;
    use std::time::Instant;

    tokio::task_local! {
        /// Nanoseconds of work counted for the request the task is running.
        static WORK_NS: Cell<u64>;
    }

    fn add(ns: u64) {
        // Outside a metered request there is nothing to count into.
        let _ = WORK_NS.try_with(|w| w.set(w.get().saturating_add(ns)));
    }

    fn elapsed_ns(since: Instant) -> u64 {
        u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs `fut`, answering its output and the nanoseconds spent polling it
    /// (plus the [`blocking`] work it awaited).
    pub async fn metered<F: Future>(fut: F) -> (F::Output, u64) {
        WORK_NS
            .scope(Cell::new(0), async {
                let mut fut = pin!(fut);
                let out = poll_fn(|cx| {
                    let start = Instant::now();
                    let r = fut.as_mut().poll(cx);
                    add(elapsed_ns(start));
                    r
                })
                .await;
                (out, WORK_NS.with(Cell::get))
            })
            .await
    }

    /// `tokio::task::spawn_blocking`, with the closure's run time counted as
    /// work of the metered request awaiting it (if any).
    pub async fn blocking<T, F>(f: F) -> Result<T, tokio::task::JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (out, ns) = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let out = f();
            (out, elapsed_ns(start))
        })
        .await?;
        add(ns);
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        #[tokio::test]
        async fn parked_time_is_not_work_but_blocking_work_is() {
            let ((), ns) = metered(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
            })
            .await;
            // Counting the park would make it at least the sleep's length.
            assert!(ns < 200_000_000, "a parked sleep counted {ns} ns");
            let ((), ns) = metered(async {
                blocking(|| std::thread::sleep(Duration::from_millis(30)))
                    .await
                    .unwrap();
            })
            .await;
            assert!(ns >= 30_000_000, "blocking work counted only {ns} ns");
            let ((), ns) = metered(async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
            })
            .await;
            assert!(ns >= 20_000_000, "busy polling counted only {ns} ns");
        }
    }
}
