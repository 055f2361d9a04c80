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

/// `ms` since the epoch as ISO-8601 in UTC with milliseconds
/// (`2024-05-01T12:34:56.789Z`), the form Pulsar's `publishTime` takes.
pub fn iso_time(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
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
