//! What Pulsar's WebSocket API needs beyond Sluice's own frames: its topic
//! paths, its message ids and its timestamps.
//!
//! A Pulsar `messageId` is the base64 of a protobuf `MessageIdData`
//! (`1: ledgerId`, `2: entryId`, `3: partition`, `4: batch_index`, all
//! varints). Clients treat it as opaque and echo it in acks, so Sluice puts
//! the Kafka partition in `ledgerId` and `partition` and the offset in `entryId`.

use base64::Engine;

/// A Pulsar persistent topic path, `persistent/{tenant}/{namespace}/{topic}`:
/// the Kafka topic, when the tenant and namespace are Pulsar's defaults
/// (`public/default`), the only ones Sluice maps.
pub fn topic_of(domain: &str, tenant: &str, namespace: &str, topic: &str) -> Option<String> {
    (domain == "persistent" && tenant == "public" && namespace == "default" && !topic.is_empty())
        .then(|| topic.to_string())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The message id of `offset` in `partition`.
pub fn message_id(partition: i32, offset: i64) -> String {
    let mut b = Vec::with_capacity(16);
    b.push(0x08);
    put_varint(&mut b, partition as u64);
    b.push(0x10);
    put_varint(&mut b, offset as u64);
    b.push(0x18);
    // int32 in protobuf: negative values take ten bytes (sign-extended).
    put_varint(&mut b, i64::from(partition) as u64);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The (partition, offset) of a message id this gateway handed out.
pub fn parse_message_id(id: &str) -> Option<(i32, i64)> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(id.trim())
        .ok()?;
    let (mut ledger, mut entry, mut at) = (None, None, 0usize);
    while at < b.len() {
        let key = get_varint(&b, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => ledger = Some(get_varint(&b, &mut at)?),
            (2, 0) => entry = Some(get_varint(&b, &mut at)?),
            (_, 0) => {
                get_varint(&b, &mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(get_varint(&b, &mut at)?).ok()?;
                at = at.checked_add(len).filter(|e| *e <= b.len())?;
            }
            _ => return None,
        }
    }
    Some((i32::try_from(ledger?).ok()?, i64::try_from(entry?).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_read_pulsars() {
        for (p, o) in [(0, 0), (3, 1), (11, 1 << 40)] {
            assert_eq!(parse_message_id(&message_id(p, o)), Some((p, o)));
        }
        // Pulsar's documented example: ledger 0, entry 3.
        assert_eq!(parse_message_id("CAAQAw=="), Some((0, 3)));
        assert_eq!(parse_message_id("not base64!"), None);
        assert_eq!(parse_message_id("CA=="), None);
    }

    #[test]
    fn only_the_default_namespace_maps() {
        assert_eq!(
            topic_of("persistent", "public", "default", "t"),
            Some("t".into())
        );
        assert_eq!(topic_of("persistent", "acme", "default", "t"), None);
        assert_eq!(topic_of("non-persistent", "public", "default", "t"), None);
    }
}
