//! Tidy tests: the invariants docs/ARCHITECTURE.md states about module boundaries.

use std::collections::BTreeSet;
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

/// `(path relative to src/, text)` of every source file.
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

/// The top-level module a source file belongs to (`log/segment.rs` -> `log`).
fn module_of(path: &str) -> &str {
    path.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .trim_end_matches("/mod")
}

/// The layers, each with the modules it may import. Downward only: log <-
/// storage <- group <- broker <- handlers <- net <- server; `protocol` sits
/// beside them, importing only `log` (file ranges); `http` (metrics and health
/// endpoints) sits beside `handlers`, over `broker`; `auth` (SASL mechanisms,
/// pure) sits under `broker`. `config`, `clock`, `sys`,
/// `alloc` and `metrics` are leaves anyone but `log` may import; `log` imports nothing.
const LAYERS: &[(&str, &[&str])] = &[
    ("log", &[]),
    ("storage", &["log"]),
    ("group", &["storage", "log"]),
    ("txn", &["storage", "log"]),
    ("auth", &[]),
    ("quota", &[]),
    (
        "broker",
        &["group", "txn", "storage", "log", "auth", "quota"],
    ),
    ("protocol", &["log"]),
    (
        "handlers",
        &[
            "broker", "group", "txn", "storage", "log", "protocol", "auth", "quota",
        ],
    ),
    ("net", &["handlers", "protocol", "broker", "log", "auth"]),
    ("server", &["net", "broker"]),
    (
        "http",
        &["broker", "group", "storage", "log", "auth", "quota"],
    ),
    ("cli", &["broker", "auth", "log"]),
    ("config", &["log"]),
    ("clock", &[]),
    ("sys", &[]),
    ("alloc", &[]),
    ("metrics", &[]),
    ("waiters", &[]),
];

/// Leaves every layer but `log` may use.
const SHARED: &[&str] = &["config", "clock", "sys", "alloc", "metrics", "waiters"];

/// Code without comments, so prose may name any module.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// Every `crate::<module>` a file names, in `use` lines and inline paths,
/// including grouped imports such as `use crate::{a, b}`.
fn crate_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for part in group.split([',', '}']) {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn layers_import_only_downward() {
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut violations = Vec::new();
    for (path, text) in sources() {
        if path == "lib.rs" || path == "main.rs" {
            continue;
        }
        let module = module_of(&path);
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| *m == module) else {
            panic!("src/{path}: module `{module}` is not in the LAYERS table of tests/tidy.rs");
        };
        assert!(
            !text.contains("super::super::"),
            "src/{path}: `super::super::` hides a cross-layer import; name it with `crate::`"
        );
        for used in crate_modules(&text) {
            let ok = used == module
                || allowed.contains(&used.as_str())
                || (module != "log" && SHARED.contains(&used.as_str()));
            if !ok {
                violations.push(format!("src/{path} ({module}) imports crate::{used}"));
            }
            assert!(
                known.contains(used.as_str()),
                "src/{path} names crate::{used}, which is not a module in the table"
            );
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_parser_sees_every_form() {
    let text = "use crate::log::{A, B};\nuse crate::{broker, group::X};\nlet x = crate::clock::now_ms();\n// crate::server in a comment\n";
    let found = crate_modules(text);
    let want: BTreeSet<String> = ["log", "broker", "group", "clock"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
}

#[test]
fn only_protocol_and_handlers_name_kafka_protocol() {
    for (path, text) in sources() {
        let module = module_of(&path);
        if module != "protocol" && module != "handlers" {
            assert!(
                !code_lines(&text).any(|l| l.contains("kafka_protocol")),
                "{path} names kafka_protocol types"
            );
        }
    }
}

#[test]
fn log_is_synchronous_and_wire_free() {
    for (path, text) in sources() {
        if module_of(&path) == "log" {
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
