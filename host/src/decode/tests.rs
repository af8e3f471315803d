use serde_json::Value;

use super::*;

fn decode_all(kind: Decoding, text: &[u8]) -> Vec<Result<Value, String>> {
    let mut d = Decoder::new(kind);
    let mut out = Vec::new();
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            out.clear();
            match d.decode(line, &mut out) {
                Line::Record => Some(Ok(serde_json::from_slice(&out).expect("decoders write JSON"))),
                Line::Skipped => None,
                Line::Malformed(why) => {
                    let v: Value = serde_json::from_slice(&out).expect("malformed lines are wrapped as JSON");
                    assert_eq!(v["decode_error"], why.as_str());
                    Some(Err(why))
                }
            }
        })
        .collect()
}

#[test]
fn csv_handles_bom_crlf_spaces_duplicates_and_quotes() {
    let text = b"\xEF\xBB\xBF Flow Duration, Fwd Header Length,Fwd Header Length,Label,Note\r\n\
                 12,5,7,BENIGN,\"a, \"\"b\"\"\"\r\n\
                 Infinity,,3,DDoS,x\r\n\
                 \x20Flow Duration, Fwd Header Length,Fwd Header Length,Label,Note\r\n\
                 1,2\r\n";
    let recs = decode_all(Decoding::Csv, text);
    assert_eq!(recs.len(), 3);
    let r = recs[0].as_ref().unwrap();
    assert_eq!(r["Flow Duration"], 12);
    assert_eq!(r["Fwd Header Length"], 5);
    assert_eq!(r["Fwd Header Length.1"], 7);
    assert_eq!(r["Note"], "a, \"b\"");
    let r = recs[1].as_ref().unwrap();
    assert_eq!(r["Flow Duration"], "Infinity");
    assert_eq!(r["Fwd Header Length"], "");
    assert_eq!(recs[2].as_ref().unwrap_err(), "csv: 2 fields, the header has 5");
}

#[test]
fn json_lines_pass_through_and_bad_ones_are_wrapped() {
    let recs = decode_all(Decoding::Json, b"{\"a\": 1}\n  \n[1,2]\n{\"b\":\"x\"}  \nnot json");
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0].as_ref().unwrap()["a"], 1);
    assert!(recs[1].as_ref().unwrap_err().contains("a JSON object"));
    assert_eq!(recs[2].as_ref().unwrap()["b"], "x");
    assert!(recs[3].is_err());
    // Text beyond ASCII passes; bytes that are not UTF-8 are named as such, even when the
    // line is broken JSON as well.
    let mut text = "{\"c\":\"café ✓\"}\n".as_bytes().to_vec();
    text.extend_from_slice(b"{\"d\":\"\xe9\"}\n{\"d\":\"\xe9\",}");
    let recs = decode_all(Decoding::Json, &text);
    assert_eq!(recs[0].as_ref().unwrap()["c"], "café ✓");
    assert_eq!(recs[1].as_ref().unwrap_err(), "not valid UTF-8");
    assert_eq!(recs[2].as_ref().unwrap_err(), "not valid UTF-8");
}

#[test]
fn unchecked_json_passes_braced_lines_and_names_the_problem_of_others() {
    // Unchecked (every path goes through the tag filter, which validates): braced lines pass as
    // they are, anything else is wrapped with the same precise reason as when checked.
    let mut d = Decoder::new(Decoding::Json).with_json_check(false);
    let mut out = Vec::new();
    assert_eq!(d.decode(b"  {not checked}  ", &mut out), Line::Record);
    assert_eq!(out, b"{not checked}");
    for (line, why) in [(&b"{\"a\":1,"[..], "invalid JSON at byte 7"), (b"[1]", "invalid JSON at byte 0")] {
        out.clear();
        match d.decode(line, &mut out) {
            Line::Malformed(w) => assert!(w.starts_with(why), "{w}"),
            other => panic!("{other:?}"),
        }
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], String::from_utf8_lossy(line).as_ref());
    }
}

#[test]
fn unsw_reads_raw_records_without_a_header() {
    let raw = "59.166.0.0,1390,149.171.126.6,53,udp,CON,0.001055,132,164,31,29,0,0,dns,500473.9375,621800.9375,2,2,0,0,0,0,66,82,0,0,0,0,1421927414,1421927414,0.017,0.013,0,0,0,0,0,0,0,0,3,7,1,3,1,1,1,,0";
    let recs = decode_all(Decoding::Unsw, raw.as_bytes());
    let r = recs[0].as_ref().unwrap();
    assert_eq!(r["srcip"], "59.166.0.0");
    assert_eq!(r["dur"], 0.001055);
    assert_eq!(r["service"], "dns");
    assert_eq!(r["Label"], 0);
    assert_eq!(r["attack_cat"], "");
    let bad = decode_all(Decoding::Unsw, b"1.2.3.4,5,6");
    assert!(bad[0].as_ref().unwrap_err().contains("49"));
}

#[test]
fn zeek_tsv_is_typed_by_its_header() {
    let text = "\t#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n\
                #fields\tts\tid.orig_h\tid.resp_p\tproto\tduration\tlocal_orig\ttunnel_parents\tservice\n\
                #types\ttime\taddr\tport\tenum\tinterval\tbool\tset[string]\tstring\n\
                1601998366.785668\t10.0.0.1\t53\tudp\t-\tT\t(empty)\tdns\n\
                #close\t2020-10-06-17-40-00\n";
    let recs = decode_all(Decoding::Zeek, text.as_bytes());
    assert_eq!(recs.len(), 1);
    let r = recs[0].as_ref().unwrap();
    assert_eq!(r["ts"], 1601998366.785668);
    assert_eq!(r["id.resp_p"], 53);
    assert_eq!(r["local_orig"], true);
    assert_eq!(r["tunnel_parents"], serde_json::json!([]));
    assert!(r.get("duration").is_none(), "unset fields are left out");
    let early = decode_all(Decoding::Zeek, b"1\t2\n");
    assert!(early[0].as_ref().unwrap_err().contains("#fields"));
}

#[test]
fn json_number_grammar() {
    for ok in ["0", "-1", "1.5", "1e9", "-0.25E-3", "123456789012345678901234567890"] {
        assert!(is_json_number(ok.as_bytes()), "{ok}");
    }
    for bad in ["", "-", "01", ".5", "1.", "1e", "+1", "Infinity", "NaN", "0x10", " 1"] {
        assert!(!is_json_number(bad.as_bytes()), "{bad}");
    }
}

/// Every real file in the shared datasets decodes: the quirks of real data (BOM, CRLF,
/// leading-space and duplicated CICIDS2017 headers, `Infinity`, cp1252 labels, Zeek's two
/// formats) do not trip a decoder.
#[test]
fn real_dataset_files_decode_with_their_real_column_names() {
    // The real datasets: `FLOWTAG_DATASETS`, else `../shared/datasets` beside the repository.
    let root = std::env::var_os("FLOWTAG_DATASETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    let check = |rel: &str, kind: Decoding, want_keys: &[&str]| {
        let path = root.join(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (set FLOWTAG_DATASETS)", path.display()));
        let mut d = Decoder::new(kind);
        let (mut records, mut malformed, mut out) = (0, Vec::new(), Vec::new());
        let mut first: Option<Value> = None;
        for line in bytes.split(|&b| b == b'\n') {
            out.clear();
            match d.decode(line, &mut out) {
                Line::Record => {
                    records += 1;
                    if first.is_none() {
                        first = Some(serde_json::from_slice(&out).unwrap());
                    }
                }
                Line::Skipped => {}
                Line::Malformed(why) => malformed.push(why),
            }
        }
        let first = first.unwrap_or_else(|| panic!("{rel}: no records"));
        if rel.contains("XSS") {
            // A bare cp1252 0x96 (invalid UTF-8) reads as an en dash; the same byte already
            // carried into UTF-8 through Latin-1 (C2 96) is valid text and is kept as it is.
            let want = if bytes.windows(2).any(|w| w == [0xC2, 0x96]) {
                "Web Attack \u{96} XSS"
            } else {
                "Web Attack \u{2013} XSS"
            };
            assert_eq!(first["Label"], want);
        }
        for k in want_keys {
            // Headers differ in case between copies of the raw files (`Label`, `label`).
            let found = first.as_object().unwrap().keys().any(|have| have.eq_ignore_ascii_case(k));
            assert!(found, "{rel}: no field {k:?} in {first}");
        }
        (records, malformed)
    };
    let (n, bad) =
        check("unsw-nb15/UNSW_NB15_dev.csv", Decoding::Unsw, &["dur", "proto", "ct_state_ttl", "attack_cat", "label"]);
    assert_eq!((n, bad.len()), (61_749, 0));
    let (n, bad) =
        check("unsw-nb15/UNSW-NB15_1.head3500.csv", Decoding::Unsw, &["srcip", "Stime", "ct_src_ltm", "Label"]);
    assert_eq!((n, bad.len()), (3_500, 0));
    let (n, bad) = check(
        "cicids2017/original-subsets/Friday-Afternoon-DDos.head9998.csv",
        Decoding::Cicflowmeter,
        &["Destination Port", "Flow Duration", "Flow Bytes/s", "Fwd Header Length", "Fwd Header Length.1", "Label"],
    );
    assert_eq!((n, bad.len()), (9_998, 0));
    let (n, bad) = check(
        "cicids2017/original-subsets/TrafficLabelling_WebAttack_XSS_all652.csv",
        Decoding::Cicflowmeter,
        &["Flow ID", "Source IP", "Timestamp", "Flow Duration", "Label"],
    );
    assert_eq!((n, bad.len()), (652, 0));
    let (n, bad) =
        check("zeek/slips-test10-mixed/conn.log", Decoding::Zeek, &["ts", "id.orig_h", "orig_bytes", "conn_state"]);
    assert!(n > 50 && bad.is_empty(), "{n} {bad:?}");
    let (n, bad) = check("zeek/slips-test9-mixed/conn.log", Decoding::Zeek, &["ts", "id.orig_h", "orig_bytes"]);
    assert!(n > 500 && bad.is_empty(), "{n} {bad:?}");
}
