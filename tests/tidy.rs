//! Tidy tests: the invariants docs/ARCHITECTURE.md states about module boundaries.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn only_protocol_and_handlers_name_kafka_protocol() {
    for (path, text) in sources() {
        let allowed = path == "protocol.rs" || path.starts_with("handlers/");
        if !allowed {
            assert!(
                !text.contains("kafka_protocol"),
                "{path} names kafka_protocol types"
            );
        }
    }
}

#[test]
fn log_is_synchronous_and_wire_free() {
    for (path, text) in sources() {
        if path.starts_with("log/") {
            for banned in ["tokio", "kafka_protocol", "async fn", ".await"] {
                assert!(!text.contains(banned), "{path} uses {banned}");
            }
        }
    }
}

#[test]
fn no_todo_on_any_path() {
    for (path, text) in sources() {
        for banned in ["todo!(", "unimplemented!("] {
            assert!(!text.contains(banned), "{path} contains {banned}");
        }
    }
}
