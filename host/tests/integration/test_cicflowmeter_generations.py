"""The shipped `cicids2017` bundle reads every CICFlowMeter generation's names.

- Flows that the real `cicflowmeter` package (PyPI, 0.2.0) computes from scapy-written packets,
  with its snake_case names, are all scored: none is left unscored for a missing feature.
- Real CICIDS2017 rows, their header renamed to CICFlowMeter 4.x's names, to CSE-CIC-IDS2018's
  (CICFlowMeter-V3) and to the PyPI package's, score exactly as under the 2017 names.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from testkit.pcap import write_pcap

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "models" / "cicids2017"


# 2017 name: (CICFlowMeter 4.x, CSE-CIC-IDS2018 / CICFlowMeter-V3, the `cicflowmeter` package[, older
# name]), from 4.x's FlowFeature.java, the 2018 dataset's CSV header and the package's flow.py.
GENERATIONS = {
 "Destination Port": ("Dst Port", "Dst Port", "dst_port"),
 "Flow Duration": ("Flow Duration", "Flow Duration", "flow_duration"),
 "Total Fwd Packets": ("Total Fwd Packet", "Tot Fwd Pkts", "tot_fwd_pkts"),
 "Total Backward Packets": ("Total Bwd packets", "Tot Bwd Pkts", "tot_bwd_pkts"),
 "Total Length of Fwd Packets": ("Total Length of Fwd Packet", "TotLen Fwd Pkts", "totlen_fwd_pkts"),
 "Total Length of Bwd Packets": ("Total Length of Bwd Packet", "TotLen Bwd Pkts", "totlen_bwd_pkts"),
 "Fwd Packet Length Max": ("Fwd Packet Length Max", "Fwd Pkt Len Max", "fwd_pkt_len_max"),
 "Fwd Packet Length Min": ("Fwd Packet Length Min", "Fwd Pkt Len Min", "fwd_pkt_len_min"),
 "Fwd Packet Length Mean": ("Fwd Packet Length Mean", "Fwd Pkt Len Mean", "fwd_pkt_len_mean"),
 "Fwd Packet Length Std": ("Fwd Packet Length Std", "Fwd Pkt Len Std", "fwd_pkt_len_std"),
 "Bwd Packet Length Max": ("Bwd Packet Length Max", "Bwd Pkt Len Max", "bwd_pkt_len_max"),
 "Bwd Packet Length Min": ("Bwd Packet Length Min", "Bwd Pkt Len Min", "bwd_pkt_len_min"),
 "Bwd Packet Length Mean": ("Bwd Packet Length Mean", "Bwd Pkt Len Mean", "bwd_pkt_len_mean"),
 "Bwd Packet Length Std": ("Bwd Packet Length Std", "Bwd Pkt Len Std", "bwd_pkt_len_std"),
 "Flow Bytes/s": ("Flow Bytes/s", "Flow Byts/s", "flow_byts_s"),
 "Flow Packets/s": ("Flow Packets/s", "Flow Pkts/s", "flow_pkts_s"),
 "Flow IAT Mean": ("Flow IAT Mean", "Flow IAT Mean", "flow_iat_mean"),
 "Flow IAT Std": ("Flow IAT Std", "Flow IAT Std", "flow_iat_std"),
 "Flow IAT Max": ("Flow IAT Max", "Flow IAT Max", "flow_iat_max"),
 "Flow IAT Min": ("Flow IAT Min", "Flow IAT Min", "flow_iat_min"),
 "Fwd IAT Total": ("Fwd IAT Total", "Fwd IAT Tot", "fwd_iat_tot"),
 "Fwd IAT Mean": ("Fwd IAT Mean", "Fwd IAT Mean", "fwd_iat_mean"),
 "Fwd IAT Std": ("Fwd IAT Std", "Fwd IAT Std", "fwd_iat_std"),
 "Fwd IAT Max": ("Fwd IAT Max", "Fwd IAT Max", "fwd_iat_max"),
 "Fwd IAT Min": ("Fwd IAT Min", "Fwd IAT Min", "fwd_iat_min"),
 "Bwd IAT Total": ("Bwd IAT Total", "Bwd IAT Tot", "bwd_iat_tot"),
 "Bwd IAT Mean": ("Bwd IAT Mean", "Bwd IAT Mean", "bwd_iat_mean"),
 "Bwd IAT Std": ("Bwd IAT Std", "Bwd IAT Std", "bwd_iat_std"),
 "Bwd IAT Max": ("Bwd IAT Max", "Bwd IAT Max", "bwd_iat_max"),
 "Bwd IAT Min": ("Bwd IAT Min", "Bwd IAT Min", "bwd_iat_min"),
 "Fwd PSH Flags": ("Fwd PSH Flags", "Fwd PSH Flags", "fwd_psh_flags"),
 "Bwd PSH Flags": ("Bwd PSH Flags", "Bwd PSH Flags", "bwd_psh_flags"),
 "Fwd URG Flags": ("Fwd URG Flags", "Fwd URG Flags", "fwd_urg_flags"),
 "Bwd URG Flags": ("Bwd URG Flags", "Bwd URG Flags", "bwd_urg_flags"),
 "Fwd Header Length": ("Fwd Header Length", "Fwd Header Len", "fwd_header_len"),
 "Bwd Header Length": ("Bwd Header Length", "Bwd Header Len", "bwd_header_len"),
 "Fwd Packets/s": ("Fwd Packets/s", "Fwd Pkts/s", "fwd_pkts_s"),
 "Bwd Packets/s": ("Bwd Packets/s", "Bwd Pkts/s", "bwd_pkts_s"),
 "Min Packet Length": ("Packet Length Min", "Pkt Len Min", "pkt_len_min"),
 "Max Packet Length": ("Packet Length Max", "Pkt Len Max", "pkt_len_max"),
 "Packet Length Mean": ("Packet Length Mean", "Pkt Len Mean", "pkt_len_mean"),
 "Packet Length Std": ("Packet Length Std", "Pkt Len Std", "pkt_len_std"),
 "Packet Length Variance": ("Packet Length Variance", "Pkt Len Var", "pkt_len_var"),
 "FIN Flag Count": ("FIN Flag Count", "FIN Flag Cnt", "fin_flag_cnt"),
 "SYN Flag Count": ("SYN Flag Count", "SYN Flag Cnt", "syn_flag_cnt"),
 "RST Flag Count": ("RST Flag Count", "RST Flag Cnt", "rst_flag_cnt"),
 "PSH Flag Count": ("PSH Flag Count", "PSH Flag Cnt", "psh_flag_cnt"),
 "ACK Flag Count": ("ACK Flag Count", "ACK Flag Cnt", "ack_flag_cnt"),
 "URG Flag Count": ("URG Flag Count", "URG Flag Cnt", "urg_flag_cnt"),
 "CWE Flag Count": ("CWR Flag Count", "CWE Flag Count", "cwe_flag_count", "cwr_flag_count"),
 "ECE Flag Count": ("ECE Flag Count", "ECE Flag Cnt", "ece_flag_cnt"),
 "Down/Up Ratio": ("Down/Up Ratio", "Down/Up Ratio", "down_up_ratio"),
 "Average Packet Size": ("Average Packet Size", "Pkt Size Avg", "pkt_size_avg"),
 "Avg Fwd Segment Size": ("Fwd Segment Size Avg", "Fwd Seg Size Avg", "fwd_seg_size_avg"),
 "Avg Bwd Segment Size": ("Bwd Segment Size Avg", "Bwd Seg Size Avg", "bwd_seg_size_avg"),
 "Fwd Avg Bytes/Bulk": ("Fwd Bytes/Bulk Avg", "Fwd Byts/b Avg", "fwd_byts_b_avg"),
 "Fwd Avg Packets/Bulk": ("Fwd Packet/Bulk Avg", "Fwd Pkts/b Avg", "fwd_pkts_b_avg"),
 "Fwd Avg Bulk Rate": ("Fwd Bulk Rate Avg", "Fwd Blk Rate Avg", "fwd_blk_rate_avg"),
 "Bwd Avg Bytes/Bulk": ("Bwd Bytes/Bulk Avg", "Bwd Byts/b Avg", "bwd_byts_b_avg"),
 "Bwd Avg Packets/Bulk": ("Bwd Packet/Bulk Avg", "Bwd Pkts/b Avg", "bwd_pkts_b_avg"),
 "Bwd Avg Bulk Rate": ("Bwd Bulk Rate Avg", "Bwd Blk Rate Avg", "bwd_blk_rate_avg"),
 "Subflow Fwd Packets": ("Subflow Fwd Packets", "Subflow Fwd Pkts", "subflow_fwd_pkts"),
 "Subflow Fwd Bytes": ("Subflow Fwd Bytes", "Subflow Fwd Byts", "subflow_fwd_byts"),
 "Subflow Bwd Packets": ("Subflow Bwd Packets", "Subflow Bwd Pkts", "subflow_bwd_pkts"),
 "Subflow Bwd Bytes": ("Subflow Bwd Bytes", "Subflow Bwd Byts", "subflow_bwd_byts"),
 "Init_Win_bytes_forward": ("FWD Init Win Bytes", "Init Fwd Win Byts", "init_fwd_win_byts"),
 "Init_Win_bytes_backward": ("Bwd Init Win Bytes", "Init Bwd Win Byts", "init_bwd_win_byts"),
 "act_data_pkt_fwd": ("Fwd Act Data Pkts", "Fwd Act Data Pkts", "fwd_act_data_pkts"),
 "min_seg_size_forward": ("Fwd Seg Size Min", "Fwd Seg Size Min", "fwd_seg_size_min"),
 "Active Mean": ("Active Mean", "Active Mean", "active_mean"),
 "Active Std": ("Active Std", "Active Std", "active_std"),
 "Active Max": ("Active Max", "Active Max", "active_max"),
 "Active Min": ("Active Min", "Active Min", "active_min"),
 "Idle Mean": ("Idle Mean", "Idle Mean", "idle_mean"),
 "Idle Std": ("Idle Std", "Idle Std", "idle_std"),
 "Idle Max": ("Idle Max", "Idle Max", "idle_max"),
 "Idle Min": ("Idle Min", "Idle Min", "idle_min"),
}


def generations() -> dict[str, dict[str, str]]:
    return {g: {k: v[i] for k, v in GENERATIONS.items()} for i, g in enumerate(("4.x", "2018", "pypi"))}


def test_the_bundle_knows_every_name():
    fields = {f["name"]: set(f["fields"]) for f in json.loads((BUNDLE / "manifest.json").read_text())["features"]}
    assert set(fields) == set(GENERATIONS)
    missing = {k: set(v) - fields[k] for k, v in GENERATIONS.items() if set(v) - fields[k]}
    assert not missing, missing


def score(flowtag: Path, csv_path: Path) -> list[dict]:
    out = subprocess.run([str(flowtag), "score", "--model", str(BUNDLE), "--format", "cicflowmeter", "--reasons", "none", str(csv_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line)["anomaly"] for line in out.stdout.splitlines()]


def test_pypi_cicflowmeter_flows_are_all_scored(flowtag, tmp_path):
    from cicflowmeter.flow_session import FlowSession  # noqa: PLC0415 (optional heavy import)
    from scapy.all import rdpcap  # noqa: PLC0415

    pcap = tmp_path / "flows.pcap"
    write_pcap(pcap)
    out = tmp_path / "cicflowmeter.csv"
    # The package's command line reads a pcap through a scapy sniffer that never flushes on
    # scapy 2.8; its FlowSession is fed the same packets here and asked for every flow.
    FlowSession.output_mode, FlowSession.output, FlowSession.fields, FlowSession.verbose = "csv", str(out), None, False
    session = FlowSession()
    for packet in rdpcap(str(pcap)):
        session.on_packet_received(packet)
    session.garbage_collect(None)
    session.output_writer.file.close()
    with open(out) as f:
        header = next(csv.reader(f))
    assert "tot_fwd_pkts" in header and "Total Fwd Packets" not in header
    tags = score(flowtag, out)
    assert len(tags) >= 100
    unscored = [t for t in tags if t.get("verdict") == "unscored" or "error" in t]
    assert not unscored, unscored[:3]
    assert all(0.0 <= t["score"] <= 1.0 for t in tags)


@pytest.mark.parametrize("generation", ["4.x", "2018", "pypi"])
def test_every_generation_scores_as_2017(flowtag, datasets, tmp_path, generation):
    source = sorted((datasets / "cicids2017" / "original-subsets").glob("*.csv"))[0]
    rows = []
    with open(source, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader)
        for i, row in enumerate(reader):
            if i >= 3000:
                break
            rows.append(row)
    names = generations()[generation]
    renamed = [names.get(h.strip(), h) for h in header]
    assert sum(1 for h, r in zip(header, renamed) if h.strip() != r) >= 15, "names differ"
    for path, head in ((tmp_path / "2017.csv", header), (tmp_path / f"{generation}.csv", renamed)):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)
    old, new = score(flowtag, tmp_path / "2017.csv"), score(flowtag, tmp_path / f"{generation}.csv")
    assert len(old) == len(new) == len(rows)
    assert not [t for t in new if "error" in t]
    assert [t["raw_score"] for t in new] == [t["raw_score"] for t in old]
