//! Kafka's consumer protocol as it travels inside JoinGroup and SyncGroup:
//! `ConsumerProtocolSubscription` (v0-v3) and `ConsumerProtocolAssignment`
//! (v0-v3). The classic coordinator treats these bytes as opaque; a group
//! that has both classic and KIP-848 members must read the subscriptions
//! and write the assignments itself, as Kafka's does.
//!
//! Every length is checked against the bytes there are before anything is
//! allocated, so a malformed subscription costs nothing.

use bytes::{BufMut, Bytes, BytesMut};

/// A decoded subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Its version (later versions are read as v3).
    pub version: i16,
    /// Subscribed topic names.
    pub topics: Vec<String>,
    /// Partitions the member owns now (v1+; cooperative clients fill it).
    pub owned: Vec<(String, Vec<i32>)>,
    /// Its rack (v3+).
    pub rack_id: Option<String>,
}

/// A decoded assignment: partitions by topic name, and whether it carried
/// assignor user data (which a server-side assignment would lose).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedAssignment {
    /// Partitions by topic.
    pub partitions: Vec<(String, Vec<i32>)>,
    /// Non-empty user data was present.
    pub user_data: bool,
}

/// A cursor over big-endian Kafka primitives.
struct Reader<'a> {
    /// What is left.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// An array count, bounded by the bytes left (`min` bytes per element).
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.i32()?;
        if n < 0 {
            return Some(0);
        }
        let n = usize::try_from(n).ok()?;
        (n.saturating_mul(min) <= self.rest.len()).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_string())
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        Some(Some(std::str::from_utf8(self.take(len)?).ok()?.to_string()))
    }

    /// Nullable bytes: whether they were present and non-empty.
    fn bytes_present(&mut self) -> Option<bool> {
        let len = self.i32()?;
        if len < 0 {
            return Some(false);
        }
        self.take(usize::try_from(len).ok()?)?;
        Some(len > 0)
    }

    fn topic_partitions(&mut self) -> Option<Vec<(String, Vec<i32>)>> {
        let n = self.count(6)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = self.string()?;
            let m = self.count(4)?;
            let mut ps = Vec::with_capacity(m);
            for _ in 0..m {
                ps.push(self.i32()?);
            }
            out.push((topic, ps));
        }
        Some(out)
    }
}

/// Decodes a subscription; `None` if it does not parse.
pub fn parse_subscription(b: &[u8]) -> Option<Subscription> {
    let mut r = Reader { rest: b };
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let n = r.count(2)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(r.string()?);
    }
    r.bytes_present()?;
    let mut s = Subscription {
        version,
        topics,
        ..Subscription::default()
    };
    if version >= 1 {
        s.owned = r.topic_partitions()?;
    }
    if version >= 2 {
        r.i32()?; // generation id
    }
    if version >= 3 {
        s.rack_id = r.nullable_string()?;
    }
    Some(s)
}

/// Decodes an assignment; empty bytes are no assignment. `None` if it does
/// not parse.
pub fn parse_assignment(b: &[u8]) -> Option<DecodedAssignment> {
    if b.is_empty() {
        return Some(DecodedAssignment::default());
    }
    let mut r = Reader { rest: b };
    if r.i16()? < 0 {
        return None;
    }
    let partitions = r.topic_partitions()?;
    // Version 0 clients may end without user data.
    let user_data = if r.rest.is_empty() {
        false
    } else {
        r.bytes_present()?
    };
    Some(DecodedAssignment {
        partitions,
        user_data,
    })
}

/// Encodes an assignment at `version` (clamped to 0-3, all alike on the
/// wire) with no user data.
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + partitions.len() * 32);
    b.put_i16(version.clamp(0, 3));
    b.put_i32(i32::try_from(partitions.len()).unwrap_or(i32::MAX));
    for (topic, ps) in partitions {
        b.put_i16(i16::try_from(topic.len()).unwrap_or(i16::MAX));
        b.put_slice(topic.as_bytes());
        b.put_i32(i32::try_from(ps.len()).unwrap_or(i32::MAX));
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1); // user data: null
    b.freeze()
}

/// The version a member's metadata declares (0 if it has none).
pub fn version_of(metadata: &[u8]) -> i16 {
    metadata
        .get(0..2)
        .and_then(|v| v.try_into().ok())
        .map_or(0, i16::from_be_bytes)
        .clamp(0, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription_v3(topics: &[&str], owned: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i32(topics.len() as i32);
        for t in topics {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(-1);
        b.put_i32(owned.len() as i32);
        for (t, ps) in owned {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
            b.put_i32(ps.len() as i32);
            for p in *ps {
                b.put_i32(*p);
            }
        }
        b.put_i32(7);
        b.put_i16(-1);
        b.to_vec()
    }

    #[test]
    fn subscriptions_and_assignments_round_trip_and_malformed_ones_are_refused() {
        let raw = subscription_v3(&["a", "b"], &[("a", &[0, 2])]);
        let s = parse_subscription(&raw).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(s.topics, vec!["a", "b"]);
        assert_eq!(s.owned, vec![("a".to_string(), vec![0, 2])]);
        // Every truncation fails cleanly.
        for cut in 0..raw.len() {
            assert_eq!(parse_subscription(&raw[..cut]), None, "cut at {cut}");
        }
        // A count far beyond the bytes allocates nothing and fails.
        let mut huge = raw.clone();
        huge[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(parse_subscription(&huge), None);

        let parts = vec![("a".to_string(), vec![1, 3]), ("b".to_string(), vec![0])];
        let enc = encode_assignment(3, &parts);
        let dec = parse_assignment(&enc).unwrap();
        assert_eq!((dec.partitions, dec.user_data), (parts, false));
        assert_eq!(parse_assignment(&[]).unwrap(), DecodedAssignment::default());
        assert_eq!(version_of(&raw), 3);
    }
}
