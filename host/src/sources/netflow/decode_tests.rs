use super::*;

const R1: &str = "192.0.2.1:2055";
const R2: &str = "192.0.2.2:2055";

fn from(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Bytes of a packet, big-endian, built field by field.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn u8(mut self, v: u8) -> P {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> P {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> P {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> P {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> P {
        self.0.extend_from_slice(v);
        self
    }
    /// A set (flowset) with this id around `content`.
    fn set(self, id: u16, content: P) -> P {
        let len = content.0.len() as u16 + 4;
        self.u16(id).u16(len).bytes(&content.0)
    }
}

/// A v9 packet: header (uptime 10 000 ms, unix time 1 700 000 000 s) and flowsets.
fn v9(source_id: u32, sets: P) -> Vec<u8> {
    P::default().u16(9).u16(1).u32(10_000).u32(1_700_000_000).u32(1).u32(source_id).bytes(&sets.0).0
}

/// An IPFIX message: header with its length, and sets.
fn ipfix(domain: u32, sets: P) -> Vec<u8> {
    let len = 16 + sets.0.len() as u16;
    P::default().u16(10).u16(len).u32(1_700_000_000).u32(1).u32(domain).bytes(&sets.0).0
}

fn decode(c: &mut Collector, exporter: &str, packet: &[u8]) -> Vec<serde_json::Value> {
    let mut batch = Batch::default();
    c.packet(from(exporter), packet, Instant::now(), &mut batch);
    (0..batch.len()).map(|i| serde_json::from_str(batch.record(i)).expect(batch.record(i))).collect()
}

/// v9 template 256: source/destination IPv4, ports, protocol, packets, bytes, start/end uptime.
fn v9_template() -> P {
    P::default()
        .u16(256)
        .u16(9)
        .u16(8)
        .u16(4)
        .u16(12)
        .u16(4)
        .u16(7)
        .u16(2)
        .u16(11)
        .u16(2)
        .u16(4)
        .u16(1)
        .u16(2)
        .u16(4)
        .u16(1)
        .u16(4)
        .u16(22)
        .u16(4)
        .u16(21)
        .u16(4)
}

fn v9_record(p: P, src: [u8; 4], packets: u32) -> P {
    p.bytes(&src).bytes(&[10, 0, 0, 9]).u16(40000).u16(443).u8(6).u32(packets).u32(packets * 100).u32(4_000).u32(9_500)
}

#[test]
fn v5_records_carry_iana_names_absolute_times_and_sampling() {
    let mut p = P::default().u16(5).u16(2).u32(60_000).u32(1_700_000_000).u32(500_000_000).u32(7).u8(1).u8(2);
    p = p.u16(0x4000 | 100); // sampling mode 1, 1 in 100
    for i in 0..2u8 {
        p = p
            .bytes(&[10, 0, 0, 1 + i])
            .bytes(&[10, 0, 1, 1])
            .bytes(&[0, 0, 0, 0])
            .u16(3)
            .u16(4)
            .u32(5)
            .u32(700)
            .u32(50_000)
            .u32(59_000)
            .u16(1234)
            .u16(80)
            .u8(0)
            .u8(0x1b)
            .u8(6)
            .u8(0)
            .u16(65001)
            .u16(65002)
            .u8(24)
            .u8(16)
            .u16(0);
    }
    let mut c = Collector::new(Limits::default());
    let r = decode(&mut c, R1, &p.0);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1]["sourceIPv4Address"], "10.0.0.2");
    assert_eq!(r[0]["destinationTransportPort"], 80);
    assert_eq!(r[0]["tcpControlBits"], 0x1b);
    assert_eq!(r[0]["octetDeltaCount"], 700);
    assert_eq!(r[0]["bgpDestinationAsNumber"], 65002);
    // boot = 1 700 000 000 500 ms - 60 000 ms uptime; first packet at uptime 50 000.
    assert_eq!(r[0]["flowStartMilliseconds"], 1_700_000_000_500i64 - 10_000);
    assert_eq!(r[0]["flowDurationMilliseconds"], 9_000);
    assert_eq!(r[0]["samplingInterval"], 100);
    assert_eq!(r[0]["exporterIPv4Address"], "192.0.2.1");
    assert_eq!(r[0]["engineId"], 2);
}

#[test]
fn v5_count_beyond_the_packet_is_an_error_record() {
    let p = P::default().u16(5).u16(3).u32(0).u32(0).u32(0).u32(0).u16(0).u16(0).bytes(&[0; 48]);
    let mut c = Collector::new(Limits::default());
    let mut batch = Batch::default();
    c.packet(from(R1), &p.0, Instant::now(), &mut batch);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.bad.len(), 1);
    assert!(batch.bad[0].1.contains("counts 3 records"), "{}", batch.bad[0].1);
    let v: serde_json::Value = serde_json::from_str(batch.record(0)).unwrap();
    assert!(v["packet_base64"].as_str().unwrap().len() > 90);
    assert_eq!(c.report.malformed, 1);
}

#[test]
fn v9_template_and_data_in_one_packet() {
    let sets = P::default()
        .set(0, v9_template())
        .set(256, v9_record(v9_record(P::default(), [10, 0, 0, 1], 3), [10, 0, 0, 2], 4));
    let mut c = Collector::new(Limits::default());
    let r = decode(&mut c, R1, &v9(0, sets));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["sourceIPv4Address"], "10.0.0.1");
    assert_eq!(r[1]["packetDeltaCount"], 4);
    assert_eq!(r[1]["octetDeltaCount"], 400);
    assert_eq!(r[0]["flowStartSysUpTime"], 4_000);
    // boot = 1 700 000 000 000 - 10 000 ms.
    assert_eq!(r[0]["flowStartMilliseconds"], 1_699_999_994_000i64);
    assert_eq!(r[0]["flowEndMilliseconds"], 1_699_999_999_500i64);
    assert_eq!(r[0]["flowDurationMilliseconds"], 5_500);
    assert!(r[0].get("observationDomainId").is_none(), "domain 0 is not written");
    let mut batch = Batch::default();
    c.packet(
        from(R1),
        &v9(0, P::default().set(256, v9_record(P::default(), [10, 0, 0, 1], 3))),
        Instant::now(),
        &mut batch,
    );
    assert!(
        batch.record(0).starts_with(
            r#"{"sourceIPv4Address":"10.0.0.1","destinationIPv4Address":"10.0.0.9","sourceTransportPort":40000,"#
        ),
        "template order: {}",
        batch.record(0)
    );
}

#[test]
fn data_before_its_template_is_held_then_decoded() {
    let mut c = Collector::new(Limits::default());
    let data = v9(7, P::default().set(256, v9_record(P::default(), [10, 0, 0, 1], 3)));
    assert!(decode(&mut c, R1, &data).is_empty());
    assert_eq!(c.held(), 1);
    let r = decode(&mut c, R1, &v9(7, P::default().set(0, v9_template())));
    assert_eq!(r.len(), 1, "the held set is decoded when its template comes");
    assert_eq!(r[0]["packetDeltaCount"], 3);
    assert_eq!(r[0]["observationDomainId"], 7);
    assert_eq!(c.held(), 0);
    assert_eq!(c.report, Report::default());
}

#[test]
fn held_data_expires_and_is_counted_and_bytes_are_bounded() {
    let limits = Limits { hold_timeout: Duration::from_secs(5), hold_max_bytes: 64, ..Limits::default() };
    let mut c = Collector::new(limits);
    let data = v9(0, P::default().set(256, v9_record(P::default(), [10, 0, 0, 1], 3)));
    for _ in 0..3 {
        decode(&mut c, R1, &data); // 29 bytes each: the third pushes the first out
    }
    assert_eq!((c.held(), c.report.no_template), (2, 1));
    c.expire(Instant::now() + Duration::from_secs(6));
    assert_eq!((c.held(), c.report.no_template), (0, 3));
}

#[test]
fn templates_are_per_exporter_and_domain_and_expire() {
    let limits = Limits { template_timeout: Duration::from_secs(60), ..Limits::default() };
    let mut c = Collector::new(limits);
    decode(&mut c, R1, &v9(0, P::default().set(0, v9_template())));
    let data = v9(0, P::default().set(256, v9_record(P::default(), [10, 0, 0, 1], 3)));
    assert_eq!(decode(&mut c, R1, &data).len(), 1);
    assert!(decode(&mut c, R2, &data).is_empty(), "another exporter's template 256 is not R1's");
    assert!(decode(&mut c, R1, &v9(1, P::default().set(256, v9_record(P::default(), [1, 1, 1, 1], 1)))).is_empty());
    assert_eq!(c.templates(), 1);
    c.expire(Instant::now() + Duration::from_secs(61));
    assert_eq!(c.templates(), 0);
    assert!(decode(&mut c, R1, &data).is_empty(), "an expired template is not used");
}

#[test]
fn template_limit_refuses_new_templates() {
    let limits = Limits { max_templates: 1, ..Limits::default() };
    let mut c = Collector::new(limits);
    decode(&mut c, R1, &v9(0, P::default().set(0, v9_template())));
    let mut other = v9_template();
    other.0[..2].copy_from_slice(&257u16.to_be_bytes());
    decode(&mut c, R1, &v9(0, P::default().set(0, other)));
    assert_eq!((c.templates(), c.report.template_limit), (1, 1));
    decode(&mut c, R1, &v9(0, P::default().set(0, v9_template())));
    assert_eq!(c.report.template_limit, 1, "refreshing a held template is not a new one");
}

#[test]
fn exporter_sessions_are_bounded_too() {
    let limits = Limits { max_templates: 2, template_timeout: Duration::from_secs(60), ..Limits::default() };
    let mut c = Collector::new(limits);
    let packet = v9(0, P::default().set(0, v9_template()).set(256, v9_record(P::default(), [10, 0, 0, 1], 3)));
    assert_eq!(decode(&mut c, R1, &packet).len(), 1);
    assert_eq!(decode(&mut c, R2, &packet).len(), 1);
    assert!(decode(&mut c, "192.0.2.3:2055", &packet).is_empty(), "a third exporter is over the bound");
    assert_eq!(c.report.session_limit, 1);
    assert_eq!(decode(&mut c, R1, &packet).len(), 1, "known exporters go on");
    c.expire(Instant::now() + Duration::from_secs(61));
    assert_eq!(decode(&mut c, "192.0.2.3:2055", &packet).len(), 1, "room again once the others expired");
}

#[test]
fn v9_options_give_the_sampling_interval() {
    // Options template 300: scope System (4 bytes); samplingInterval (4), samplingAlgorithm (1).
    let options = P::default().u16(300).u16(4).u16(8).u16(1).u16(4).u16(34).u16(4).u16(35).u16(1).u16(0);
    let option_data = P::default().u32(0).u32(64).u8(2).bytes(&[0, 0, 0]);
    let sets = P::default()
        .set(1, options)
        .set(300, option_data)
        .set(0, v9_template())
        .set(256, v9_record(P::default(), [10, 0, 0, 1], 3));
    let mut c = Collector::new(Limits::default());
    let r = decode(&mut c, R1, &v9(0, sets));
    assert_eq!(r.len(), 1, "options records are read, not emitted: {r:?}");
    assert_eq!(r[0]["samplingInterval"], 64);
    assert_eq!(c.report.options_records, 1);
}

/// IPFIX template 400: sourceIPv4Address, octetDeltaCount (reduced to 4 bytes), a reverse
/// octetDeltaCount, interfaceName (variable length), an enterprise field, sourceIPv4Address
/// again, flowStartSysUpTime, flowEndMilliseconds, tcpControlBits (2 bytes).
fn ipfix_template() -> P {
    P::default()
        .u16(400)
        .u16(9)
        .u16(8)
        .u16(4)
        .u16(1)
        .u16(4)
        .u16(0x8000 | 1)
        .u16(8)
        .u32(REVERSE_PEN)
        .u16(82)
        .u16(0xffff)
        .u16(0x8000 | 77)
        .u16(2)
        .u32(9)
        .u16(8)
        .u16(4)
        .u16(22)
        .u16(4)
        .u16(153)
        .u16(8)
        .u16(6)
        .u16(2)
}

fn ipfix_record(p: P, name: &[u8]) -> P {
    let p =
        p.bytes(&[10, 1, 1, 1]).u32(1500).u64(99).u8(name.len() as u8).bytes(name).u16(0xbeef).bytes(&[10, 2, 2, 2]);
    p.u32(2_000).u64(1_700_000_003_000).u16(0x0012)
}

#[test]
fn ipfix_variable_length_enterprise_reverse_and_repeated_fields() {
    // Options template 500 (scope meteringProcessId): systemInitTimeMilliseconds.
    let options = P::default().u16(500).u16(2).u16(1).u16(143).u16(4).u16(160).u16(8);
    let sets = P::default()
        .set(3, options)
        .set(500, P::default().u32(1).u64(1_700_000_000_000))
        .set(2, ipfix_template())
        .set(400, ipfix_record(ipfix_record(P::default(), b"eth0"), b"a\"b\0\0").bytes(&[0, 0, 0]));
    let mut c = Collector::new(Limits::default());
    let r = decode(&mut c, R1, &ipfix(3, sets));
    assert_eq!(r.len(), 2, "three bytes of padding end the set: {r:?}");
    assert_eq!(r[0]["octetDeltaCount"], 1500);
    assert_eq!(r[0]["reverseOctetDeltaCount"], 99);
    assert_eq!(r[0]["interfaceName"], "eth0");
    assert_eq!(r[1]["interfaceName"], "a\"b", "escaped, trailing NULs removed");
    assert_eq!(r[0]["e9_77"], "beef");
    assert_eq!(r[0]["sourceIPv4Address_2"], "10.2.2.2");
    assert_eq!(r[0]["tcpControlBits"], 0x12);
    assert_eq!(r[0]["flowStartMilliseconds"], 1_700_000_002_000i64, "from the exporter's system init time");
    assert_eq!(r[0]["flowEndMilliseconds"], 1_700_000_003_000i64);
    assert!(r[0].get("flowEndMilliseconds_2").is_none());
    assert_eq!(r[0]["flowDurationMilliseconds"], 1_000);
    assert_eq!(r[0]["observationDomainId"], 3);
}

#[test]
fn ipfix_withdrawal_removes_templates() {
    let mut c = Collector::new(Limits::default());
    decode(&mut c, R1, &ipfix(0, P::default().set(2, ipfix_template())));
    assert_eq!(c.templates(), 1);
    decode(&mut c, R1, &ipfix(0, P::default().set(2, P::default().u16(2).u16(0))));
    assert_eq!(c.templates(), 0);
}

#[test]
fn faults_keep_the_records_before_them() {
    let mut c = Collector::new(Limits::default());
    let good = P::default().set(2, ipfix_template()).set(400, ipfix_record(P::default(), b"x"));
    // A set claiming more bytes than the message has.
    let p = ipfix(0, good.u16(400).u16(200).u32(0));
    let mut batch = Batch::default();
    c.packet(from(R1), &p, Instant::now(), &mut batch);
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.bad.len(), 1);
    assert_eq!(batch.bad[0].0, 1);
    assert!(batch.bad[0].1.contains("claims 200 bytes"), "{}", batch.bad[0].1);
    // A record cut short.
    let p = ipfix(0, P::default().set(400, P::default().bytes(&[10, 1, 1, 1]).u32(1).u64(2).u8(50).bytes(&[b'a'; 30])));
    let mut batch = Batch::default();
    c.packet(from(R1), &p, Instant::now(), &mut batch);
    assert_eq!((batch.len(), batch.bad.len()), (1, 1));
    assert!(batch.bad[0].1.contains("cut short"), "{}", batch.bad[0].1);
    for bad in [
        &b"\x00\x07"[..],
        b"\x00",
        b"\x00\x0a\x00\x05abc",
        &v9(0, P::default().set(0, P::default().u16(256).u16(1).u16(8).u16(0))),
    ] {
        let mut batch = Batch::default();
        c.packet(from(R1), bad, Instant::now(), &mut batch);
        assert_eq!(batch.bad.len(), 1, "{bad:?}");
    }
    assert_eq!(c.report.malformed, 6);
}

#[test]
fn values_by_kind() {
    let w = |kind, v: &[u8]| {
        let mut out = Vec::new();
        write_value(&mut out, kind, v);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(w(Kind::Signed, &[0xff, 0xfe]), "-2");
    assert_eq!(w(Kind::Float, &1.5f32.to_be_bytes()), "1.5");
    assert_eq!(w(Kind::Float, &f64::NAN.to_be_bytes()), "null");
    assert_eq!(w(Kind::Boolean, &[2]), "false");
    assert_eq!(w(Kind::Mac, &[2, 0, 0, 0, 0, 0xab]), "\"02:00:00:00:00:ab\"");
    assert_eq!(w(Kind::Ipv6, &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "\"fd00::1\"");
    assert_eq!(w(Kind::Ipv4, &[1, 2, 3]), "\"010203\"", "a length that does not fit the type is hex");
    assert_eq!(w(Kind::Unsigned, &[0; 9]), "\"000000000000000000\"");
    // 2023-11-14T22:13:20Z + 0.5 s as NTP.
    let ntp = P::default().u32((1_700_000_000 + NTP_TO_UNIX) as u32).u32(1 << 31).0;
    assert_eq!(w(Kind::Microseconds, &ntp), "1700000000500000");
    assert_eq!(w(Kind::Nanoseconds, &ntp), "1700000000500000000");
    assert_eq!(w(Kind::String, b"\xff\0"), "\"\u{fffd}\"");
}

#[test]
fn ipv4_mapped_exporters_are_ipv4() {
    let mut c = Collector::new(Limits::default());
    let data = v9(0, P::default().set(0, v9_template()).set(256, v9_record(P::default(), [10, 0, 0, 1], 3)));
    let r = decode(&mut c, "[::ffff:192.0.2.9]:2055", &data);
    assert_eq!(r[0]["exporterIPv4Address"], "192.0.2.9");
    let r = decode(
        &mut c,
        "[2001:db8::1]:2055",
        &v9(0, P::default().set(0, v9_template()).set(256, v9_record(P::default(), [10, 0, 0, 1], 3))),
    );
    assert_eq!(r[0]["exporterIPv6Address"], "2001:db8::1");
}
