//! The broker's small metadata files: `meta.properties` (cluster and node id),
//! `topic.meta`, `producer-ids.properties`, all in Java properties syntax, and
//! the record files of the security stores (`scram-credentials`, `acls`,
//! `client-quotas`); all replaced atomically (temp file, fsync, rename,
//! directory fsync).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::log::fs::{read_file, write_file_atomic, Fs};

/// Cluster and node identity, at the top of the data directory.
pub const META_FILE: &str = "meta.properties";

/// Reads a properties file.
pub fn read_properties(fs: &dyn Fs, path: &Path) -> io::Result<BTreeMap<String, String>> {
    let bytes = read_file(fs, path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| io::Error::other(format!("{} is not UTF-8", path.display())))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Writes a properties file atomically and durably.
pub fn write_properties(
    fs: &dyn Fs,
    path: &Path,
    props: &BTreeMap<String, String>,
) -> io::Result<()> {
    let mut text = String::new();
    for (k, v) in props {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    write_file_atomic(fs, path, text.as_bytes())
}

/// Reads a record file: a `version=1` line, then one record per line of
/// `fields` space-separated fields, each turned into a value by `parse` (or
/// refused with why). No file: no records. A damaged file is an error, not
/// an empty store: starting without users, ACLs or quotas changes who may do
/// what.
pub fn read_records<T>(
    fs: &dyn Fs,
    path: &Path,
    fields: usize,
    mut parse: impl FnMut(&[&str]) -> Result<T, String>,
) -> io::Result<Vec<T>> {
    if !fs.exists(path) {
        return Ok(Vec::new());
    }
    let bad = |why: &str| io::Error::other(format!("{}: {why}", path.display()));
    let bytes = read_file(fs, path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some("version=1") {
        return Err(bad("unknown version"));
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != fields {
                return Err(bad(&format!("a line without {fields} fields")));
            }
            parse(&f).map_err(|why| bad(&why))
        })
        .collect()
}

/// Writes a record file (see [`read_records`]) atomically and durably: each
/// record is one line of space-separated fields.
pub fn write_records(
    fs: &dyn Fs,
    path: &Path,
    records: impl IntoIterator<Item = String>,
) -> io::Result<()> {
    let mut text = String::from("version=1\n");
    for r in records {
        text.push_str(&r);
        text.push('\n');
    }
    write_file_atomic(fs, path, text.as_bytes())
}

/// A record field's text, from the base64 it is stored as.
pub fn decode_text(v: &str) -> Result<String, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "bad base64".to_string())
}

/// Unpadded base64url, as Kafka writes cluster ids.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The cluster id of the data directory `dir`, created on first start. Fails if
/// the directory belongs to another node id.
pub fn cluster_id(fs: &dyn Fs, dir: &Path, node_id: i32) -> io::Result<String> {
    let path = dir.join(META_FILE);
    if fs.exists(&path) {
        let props = read_properties(fs, &path)?;
        let node: i32 = props
            .get("node.id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        if node != node_id {
            return Err(io::Error::other(format!(
                "data dir belongs to node.id {node}, but --node-id is {node_id}"
            )));
        }
        return props
            .get("cluster.id")
            .cloned()
            .ok_or_else(|| io::Error::other("meta.properties lacks cluster.id"));
    }
    let id = base64url(Uuid::new_v4().as_bytes());
    let mut props = BTreeMap::new();
    props.insert("version".into(), "1".into());
    props.insert("cluster.id".into(), id.clone());
    props.insert("node.id".into(), node_id.to_string());
    write_properties(fs, &path, &props)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sim::SimFs;

    #[test]
    fn cluster_id_is_22_chars_and_kept() {
        assert_eq!(base64url(Uuid::new_v4().as_bytes()).len(), 22);
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("d")).unwrap();
        let id = cluster_id(&fs, Path::new("d"), 1).unwrap();
        assert_eq!(cluster_id(&fs, Path::new("d"), 1).unwrap(), id);
        assert!(cluster_id(&fs, Path::new("d"), 2).is_err());
    }
}
