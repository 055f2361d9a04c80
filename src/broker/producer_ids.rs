//! Producer ids: never handed out twice, in this life or an earlier one. Ids are
//! reserved on disk in blocks, so a restart skips to the next block.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::meta::{read_properties, write_properties};
use crate::log::Fs;

/// The reservation file in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids.properties";
/// Producer ids reserved on disk at a time: one fsync per this many producers.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The allocator. Its async mutex serialises block reservations (file I/O on the
/// blocking pool); no `std` lock is held across an await.
#[derive(Debug)]
pub struct ProducerIds {
    /// Where blocks are recorded.
    fs: Arc<dyn Fs>,
    /// `producer-ids.properties`.
    path: PathBuf,
    /// Next id to hand out, and the end of the block reserved on disk.
    range: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// An allocator whose first call reserves a block.
    pub fn new(fs: Arc<dyn Fs>, data_dir: &std::path::Path) -> ProducerIds {
        ProducerIds {
            fs,
            path: data_dir.join(PRODUCER_IDS_FILE),
            range: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// A producer id never handed out before.
    pub async fn next(&self) -> io::Result<i64> {
        let mut ids = self.range.lock().await;
        if ids.0 >= ids.1 {
            let fs = self.fs.clone();
            let path = self.path.clone();
            let (start, end) = crate::clock::work::blocking(move || -> io::Result<(i64, i64)> {
                let start = if fs.exists(&path) {
                    read_properties(fs.as_ref(), &path)?
                        .get("next.block")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                let end = start + PRODUCER_ID_BLOCK;
                let mut props = BTreeMap::new();
                props.insert("next.block".to_string(), end.to_string());
                write_properties(fs.as_ref(), &path, &props)?;
                Ok((start, end))
            })
            .await
            .map_err(io::Error::other)??;
            *ids = (start, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}
