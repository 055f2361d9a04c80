//! The broker's small metadata files: `meta.properties` (cluster and node id),
//! `topic.meta`, `producer-ids.properties`, all in Java properties syntax and
//! replaced atomically (temp file, fsync, rename, directory fsync).

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
