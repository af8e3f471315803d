//! Event times to the nanosecond. The forward protocol carries a time as an integer (seconds)
//! or as the `EventTime` extension (type 0: seconds and nanoseconds, big-endian u32 each); a
//! record carries it in JSON as a decimal number (`1700000000.123456789`), written and read as
//! text so no digit is lost to a float.

/// Seconds since the Unix epoch and nanoseconds within the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTime {
    pub secs: i64,
    pub nanos: u32,
}

impl EventTime {
    pub fn now() -> EventTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        EventTime { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
    }

    /// From float seconds (a float time from a sender; sub-microsecond digits are the float's).
    pub fn from_f64(t: f64) -> Option<EventTime> {
        if !t.is_finite() {
            return None;
        }
        let secs = t.floor();
        let nanos = ((t - secs) * 1e9).round().min(999_999_999.0) as u32;
        Some(EventTime { secs: secs as i64, nanos })
    }

    /// From a forward-protocol time: an integer, a float, or the `EventTime` extension.
    pub fn from_msgpack(v: &rmpv::Value) -> Option<EventTime> {
        match v {
            rmpv::Value::Integer(i) => i.as_i64().map(|secs| EventTime { secs, nanos: 0 }),
            rmpv::Value::F32(f) => EventTime::from_f64(f64::from(*f)),
            rmpv::Value::F64(f) => EventTime::from_f64(*f),
            rmpv::Value::Ext(0, b) if b.len() == 8 => Some(EventTime {
                secs: i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                nanos: u32::from_be_bytes([b[4], b[5], b[6], b[7]]).min(999_999_999),
            }),
            _ => None,
        }
    }

    /// The `EventTime` extension: `d7 00` + seconds + nanoseconds (a time before 1970 or after
    /// 2106 does not fit and is clamped).
    pub fn to_msgpack(self) -> [u8; 10] {
        let secs = self.secs.clamp(0, i64::from(u32::MAX)) as u32;
        let mut b = [0u8; 10];
        b[0] = 0xd7;
        b[1] = 0x00;
        b[2..6].copy_from_slice(&secs.to_be_bytes());
        b[6..10].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    /// As a JSON number: `secs`, or `secs.fraction` with the trailing zeros of the nanoseconds
    /// dropped.
    pub fn write_json(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.secs.to_string().as_bytes());
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push(b'.');
            out.extend_from_slice(frac.trim_end_matches('0').as_bytes());
        }
    }

    /// From the text of a JSON number, exactly when it is plain decimal (`-?digits(.digits)?`),
    /// through a float when it has an exponent.
    pub fn parse_json(text: &[u8]) -> Option<EventTime> {
        let s = std::str::from_utf8(text).ok()?;
        if s.contains(['e', 'E']) || s.starts_with('-') {
            return EventTime::from_f64(s.parse().ok()?);
        }
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: i64 = int.parse().ok()?;
        let mut digits = [b'0'; 9];
        for (d, b) in digits.iter_mut().zip(frac.bytes()) {
            *d = b;
        }
        let nanos: u32 = std::str::from_utf8(&digits).ok()?.parse().ok()?;
        Some(EventTime { secs, nanos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_nanosecond() {
        let t = EventTime { secs: 1_700_000_000, nanos: 123_456_789 };
        let mut json = Vec::new();
        t.write_json(&mut json);
        assert_eq!(json, b"1700000000.123456789");
        assert_eq!(EventTime::parse_json(&json), Some(t));
        let ext = t.to_msgpack();
        let v = rmpv::decode::read_value(&mut &ext[..]).unwrap();
        assert_eq!(EventTime::from_msgpack(&v), Some(t));
        let whole = EventTime { secs: 5, nanos: 0 };
        json.clear();
        whole.write_json(&mut json);
        assert_eq!(json, b"5");
        json.clear();
        EventTime { secs: 5, nanos: 500_000_000 }.write_json(&mut json);
        assert_eq!(json, b"5.5");
        assert_eq!(EventTime::parse_json(b"5.5"), Some(EventTime { secs: 5, nanos: 500_000_000 }));
        assert_eq!(EventTime::parse_json(b"1.7e9"), Some(EventTime { secs: 1_700_000_000, nanos: 0 }));
        assert_eq!(EventTime::parse_json(b"\"x\""), None);
        assert_eq!(EventTime::parse_json(b"1.2.3"), None);
    }
}
