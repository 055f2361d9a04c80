//! Fuzzing the decoder and the request paths, in-process: thousands of mutated
//! frames (see `common/fuzz.rs`) through the real server. No input may panic,
//! hang, or make the broker allocate more than a fixed bound (measured with a
//! counting allocator around the broker's own), and afterwards every stored
//! batch reads back whole and valid: bad input is refused, never stored.
//!
//! `SLUICE_FUZZ_CASES` (default 3000) and `SLUICE_FUZZ_SEED` set the run; the
//! long run is in docs/testing.md.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use common::fuzz::{self, Stats};
use common::TestBroker;
use sluice::alloc::{is_lazy_block, LazyLargeAlloc};
use sluice::config::Config;
use sluice::log::batch;
use sluice::log::records;

/// Counts the bytes held in allocations the process is charged for; lazily
/// mapped reservations (address space only) are counted apart.
struct Counting;

static INNER: LazyLargeAlloc = LazyLargeAlloc;
/// Bytes held now.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Most bytes held since the last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Lazily mapped reservations made, and the largest.
static LAZY_COUNT: AtomicU64 = AtomicU64::new(0);
static LAZY_MAX: AtomicUsize = AtomicUsize::new(0);

fn add(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn note(p: *mut u8, size: usize) {
    if p.is_null() {
        return;
    }
    if is_lazy_block(p, size) {
        LAZY_COUNT.fetch_add(1, Ordering::Relaxed);
        LAZY_MAX.fetch_max(size, Ordering::Relaxed);
    } else {
        add(size);
    }
}

// SAFETY: forwards every call to `LazyLargeAlloc` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc(layout) };
        note(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc_zeroed(layout) };
        note(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if !is_lazy_block(p, layout.size()) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { INNER.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was_lazy = is_lazy_block(p, layout.size());
        let q = unsafe { INNER.realloc(p, layout, new_size) };
        if !q.is_null() {
            if !was_lazy {
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            note(q, new_size);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a single case may make the process hold at once, beyond what it
/// held before: a request is at most 1 MiB here, and nothing the broker does for
/// one may be worth more than a few copies of it.
const CASE_BYTES_MAX: usize = 48 << 20;

/// Panics anywhere in the process (the broker's tasks included).
static PANICS: AtomicU64 = AtomicU64::new(0);

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_test(dir.to_path_buf());
    c.request_bytes_max = 1 << 20;
    c.fetch_wait_ms_max = 50;
    c.request_read_timeout_ms = 300;
    c.partitions_max = 16;
    c.decompressed_batch_bytes_max = 1 << 20;
    c.group_initial_rebalance_delay_ms = 0;
    c.group_session_timeout_ms_min = 100;
    c.group_session_timeout_ms_max = 10_000;
    c.segment_bytes = 256 << 10;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_are_refused_never_stored() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        hook(info);
    }));
    let _ = sluice::sys::raise_open_files_limit();
    let cases: u64 = std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut stats = Stats::default();
    let mut worst = 0usize;
    for case in 0..cases {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        fuzz::run_case(b.addr, case, seed, &mut stats).await;
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        worst = worst.max(grew);
        assert!(
            grew <= CASE_BYTES_MAX,
            "case {case} (seed {seed}): the process held {grew} bytes more than before it"
        );
        if case % 200 == 199 {
            fuzz::probe(b.addr).await;
        }
    }
    fuzz::probe(b.addr).await;
    // Everything stored reads back whole: headers, CRCs, records.
    let mut batches = 0u64;
    for t in b.broker.topics() {
        for p in &t.partitions {
            let p = p.clone();
            batches += tokio::task::spawn_blocking(move || {
                let mut n = 0;
                let mut next = p.log_start_offset();
                while next < p.high_watermark() {
                    let slice = p.read_blocking(next, 1 << 20).unwrap().unwrap();
                    let bytes = slice.read_to_vec().unwrap();
                    for (at, h) in records::split_stored(&bytes) {
                        let b = &bytes[at..at + h.total_bytes()];
                        batch::validate(b).unwrap();
                        records::for_each_record(b, &h, 1 << 20, &mut |_| Ok(())).unwrap();
                        next = h.next_offset();
                        n += 1;
                    }
                }
                n
            })
            .await
            .unwrap();
        }
    }
    eprintln!(
        "fuzz: {} cases (seed {seed}): {} answered, {} refused (closed), {} parked; \
         {batches} stored batches read back valid; worst case held {} KiB more; \
         {} lazy reservations (largest {} MiB, never touched)",
        stats.cases,
        stats.answered,
        stats.closed,
        stats.parked,
        worst >> 10,
        LAZY_COUNT.load(Ordering::Relaxed),
        LAZY_MAX.load(Ordering::Relaxed) >> 20,
    );
    assert!(
        stats.answered > stats.cases / 4,
        "too few requests were answered: {stats:?}"
    );
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "something panicked");
    b.stop().await;
}
