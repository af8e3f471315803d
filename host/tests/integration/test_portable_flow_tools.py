"""The shipped `flows-portable` bundle on flows that real flow tools compute from one
scapy-written pcap (`testkit.pcap`): NFStream (milliseconds, protocol numbers, ports, bytes each
way). `flowtag score` must score every flow, each exactly as the Python twin of the featurizer
reads the same record, through the manifest's converting aliases. The NetFlow side of the same
bundle is tested in `test_netflow.py` with softflowd's IPFIX biflows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from testkit.pcap import write_pcap

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "onnx-export"))

from flowtag_export.parity import flowtag_raw, onnx_raw  # noqa: E402
from flowtag_export.spec import FeatureSpec, loads_record  # noqa: E402

BUNDLE = REPO / "models/flows-portable"


def test_nfstream_flows_are_scored_as_training_reads_them(flowtag, tmp_path):
    nfstream = pytest.importorskip("nfstream", reason="nfstream is installed by scripts/setup.sh")
    pcap = tmp_path / "flows.pcap"
    write_pcap(pcap)
    # accounting_mode=1: IP bytes, as NetFlow, Zeek's *_ip_bytes and Argus count them.
    frame = nfstream.NFStreamer(source=str(pcap), statistical_analysis=False, accounting_mode=1, n_dissections=0).to_pandas()
    assert len(frame) >= 100
    data = tmp_path / "nfstream.jsonl"
    data.write_text(frame.to_json(orient="records", lines=True))
    lines = data.read_text().splitlines()

    got, tags = flowtag_raw(BUNDLE, data, "json", flowtag)
    assert len(got) == len(lines)
    assert not np.isnan(got).any(), [t for t in tags if t["verdict"] == "unscored"][:3]

    spec = FeatureSpec.from_manifest(json.loads((BUNDLE / "manifest.json").read_text()))
    X, errors = spec.featurize_records([loads_record(line) for line in lines])
    assert errors == [None] * len(lines)
    expected = onnx_raw(BUNDLE, X).astype(np.float64)
    diff = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    assert diff.max() <= 1e-5, lines[int(diff.argmax())]

    # The aliases convert: a flow's `dur` is its milliseconds / 1000, `proto` its protocol's
    # name, `service` its server port's; each feature's column comes from the first field the
    # spec lists for it, so check the rows against NFStream's own columns.
    names = [f.name for f in spec.features]
    dur = spec.features[names.index("dur")]
    raw_dur = frame["bidirectional_duration_ms"].to_numpy(dtype=np.float64) * 0.001
    for t in dur.transforms:
        raw_dur = t.apply(raw_dur)
    np.testing.assert_allclose(X[:, spec.column_names().index("dur")], raw_dur.astype(np.float32))
    proto = spec.features[names.index("proto")]
    tcp = proto.categories.index("tcp")
    assert (X[frame["protocol"].to_numpy() == 6, spec.column_names().index("proto")] == tcp).all()
    service = spec.features[names.index("service")]
    http = service.categories.index("http")
    assert (X[frame["dst_port"].to_numpy() == 80, spec.column_names().index("service")] == http).all()
