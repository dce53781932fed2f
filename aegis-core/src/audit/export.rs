//! Records as CloudEvents 1.0 (JSON event format), one per line: what governance pipelines
//! ingest.

use serde_json::{json, Value as Json};

use super::record::AuditRecord;

/// The CloudEvents `type` prefix of Aegis records.
pub const EVENT_TYPE_PREFIX: &str = "dev.aegis.";

/// A record as a CloudEvent from the log named `origin`.
pub fn cloud_event(origin: &str, record: &AuditRecord) -> Json {
    let subject = record.str("task_id").or_else(|| record.str("approval_id")).or_else(|| record.str("break_glass_id"));
    let mut event = json!({
        "specversion": "1.0",
        "id": format!("{origin}/{}", record.seq),
        "source": format!("aegis:{origin}"),
        "type": format!("{EVENT_TYPE_PREFIX}{}", record.kind),
        "time": rfc3339(record.time_ms),
        "datacontenttype": "application/json",
        "aegisleafhash": super::b64_encode(&record.leaf_hash),
        "data": Json::Object(record.fields.clone()),
    });
    if let (Some(subject), Some(map)) = (subject, event.as_object_mut()) {
        map.insert("subject".into(), subject.into());
    }
    event
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-12-02T18:22:43.123Z`).
pub fn rfc3339(time_ms: i64) -> String {
    let (secs, ms) = (time_ms.div_euclid(1000), time_ms.rem_euclid(1000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_235_763_000), "2026-12-02T18:22:43.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
