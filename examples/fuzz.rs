//! The request fuzzer against a running broker: `cargo run --release --example
//! fuzz -- 127.0.0.1:9092 [cases] [seed]`. Used for long runs and by
//! `compat-tests/test_fuzz.py`, which then reads every partition back with
//! stock clients. Exits non-zero (with the case) on a malformed answer or a hang.

#[path = "../tests/common/fuzz.rs"]
mod fuzz;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: fuzz HOST:PORT [cases] [seed]");
    let cases: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let seed: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut stats = fuzz::Stats::default();
    for case in 0..cases {
        fuzz::run_case(addr, case, seed, &mut stats).await;
        if case % 500 == 499 {
            fuzz::probe(addr).await;
        }
    }
    fuzz::probe(addr).await;
    println!(
        "fuzz: {} cases (seed {seed}): {} answered, {} refused (closed), {} parked",
        stats.cases, stats.answered, stats.closed, stats.parked
    );
}
