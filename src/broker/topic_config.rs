//! Topic-level configs: which Kafka names are accepted, how they are validated,
//! and how they map onto the log settings. Names and units are Kafka's.

use std::collections::BTreeMap;

use crate::config::check_segment_bytes;
use crate::log::LogConfig;

/// Where a reported config value comes from (Kafka's ConfigSource ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG).
    Topic = 1,
    /// Broker default (DEFAULT_CONFIG).
    Default = 5,
}

/// One effective config entry, as reported to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Kafka config name.
    pub name: &'static str,
    /// Effective value.
    pub value: String,
    /// Whether it was set on the topic or comes from the broker.
    pub source: Source,
}

fn int(name: &str, v: &str, min: i64) -> Result<i64, String> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{name} must be an integer, got {v:?}"))?;
    if n < min {
        return Err(format!("{name} must be at least {min}, got {n}"));
    }
    Ok(n)
}

/// An INT config of Kafka's: `min..=i32::MAX`.
fn int32(name: &str, v: &str, min: i64) -> Result<u64, String> {
    let n = int(name, v, min)?;
    if n > i64::from(i32::MAX) {
        return Err(format!("{name} must be at most {}, got {n}", i32::MAX));
    }
    u64::try_from(n).map_err(|_| format!("{name} must not be negative"))
}

/// Names this broker accepts, in the order they are reported.
pub const NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Validates `configs` against `defaults` and returns the effective log settings.
/// Unknown names and values this broker cannot honour are errors (INVALID_CONFIG).
pub fn apply(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    for (name, v) in configs {
        match name.as_str() {
            "retention.ms" => c.retention_ms = int(name, v, -1)?,
            "retention.bytes" => c.retention_bytes = int(name, v, -1)?,
            "segment.bytes" => {
                let n = int(name, v, 0)? as u64;
                check_segment_bytes(n)?;
                c.segment_bytes = n;
            }
            "segment.ms" => c.segment_ms = int(name, v, 1)?,
            // Kafka's INT configs: at most i32::MAX, which also bounds index files.
            "max.message.bytes" => c.max_message_bytes = int32(name, v, 0)?,
            "index.interval.bytes" => c.index_interval_bytes = int32(name, v, 0)?,
            "segment.index.bytes" => {
                c.index_bytes_max = usize::try_from(int32(name, v, 12)?)
                    .map_err(|_| "segment.index.bytes too large")?
            }
            "cleanup.policy" => {
                if v != "delete" {
                    return Err(format!(
                        "cleanup.policy={v} is not supported (log compaction is not implemented)"
                    ));
                }
            }
            "compression.type" => {
                if v != "producer" {
                    return Err(format!(
                        "compression.type={v} is not supported; batches are stored as produced"
                    ));
                }
            }
            "message.timestamp.type" => {
                if v != "CreateTime" {
                    return Err(format!("message.timestamp.type={v} is not supported"));
                }
            }
            "min.insync.replicas" => {
                if int(name, v, 1)? != 1 {
                    return Err("min.insync.replicas must be 1 on a single-replica broker".into());
                }
            }
            "unclean.leader.election.enable" => {
                if v != "true" && v != "false" {
                    return Err(format!("{name} must be true or false"));
                }
            }
            other => return Err(format!("Unknown topic config name: {other}")),
        }
    }
    Ok(c)
}

/// Every accepted config with its effective value and source.
pub fn describe(effective: &LogConfig, configs: &BTreeMap<String, String>) -> Vec<Entry> {
    NAMES
        .iter()
        .map(|&name| {
            let (value, source) = match configs.get(name) {
                Some(v) => (v.clone(), Source::Topic),
                None => {
                    let v = match name {
                        "cleanup.policy" => "delete".to_string(),
                        "compression.type" => "producer".to_string(),
                        "index.interval.bytes" => effective.index_interval_bytes.to_string(),
                        "max.message.bytes" => effective.max_message_bytes.to_string(),
                        "message.timestamp.type" => "CreateTime".to_string(),
                        "min.insync.replicas" => "1".to_string(),
                        "retention.bytes" => effective.retention_bytes.to_string(),
                        "retention.ms" => effective.retention_ms.to_string(),
                        "segment.bytes" => effective.segment_bytes.to_string(),
                        "segment.index.bytes" => effective.index_bytes_max.to_string(),
                        "segment.ms" => effective.segment_ms.to_string(),
                        _ => "false".to_string(),
                    };
                    (v, Source::Default)
                }
            };
            Entry {
                name,
                value,
                source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_configs_apply() {
        let mut m = BTreeMap::new();
        m.insert("retention.ms".to_string(), "1000".to_string());
        m.insert("segment.bytes".to_string(), "4096".to_string());
        let c = apply(&LogConfig::default(), &m).unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.segment_bytes, 4096);
        let d = describe(&c, &m);
        assert_eq!(d.len(), NAMES.len());
        assert!(d
            .iter()
            .any(|e| e.name == "retention.ms" && e.value == "1000" && e.source == Source::Topic));
    }

    #[test]
    fn unknown_and_unsupported_are_errors() {
        for (k, v) in [
            ("no.such", "1"),
            ("retention.ms", "x"),
            ("cleanup.policy", "compact"),
            ("segment.bytes", "10"),
            ("segment.index.bytes", "1000000000000"),
            ("max.message.bytes", "-1"),
        ] {
            let mut m = BTreeMap::new();
            m.insert(k.to_string(), v.to_string());
            assert!(apply(&LogConfig::default(), &m).is_err(), "{k}={v}");
        }
    }
}
