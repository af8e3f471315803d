"""The portable flow schema: each tool's columns read into it through the bundle's own alias
rules, and the labelled datasets stacked in it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flowtag_train import portable
from flowtag_train.datasets import load


def test_each_tools_columns_convert_into_the_schema():
    netflow = pd.DataFrame({"flowDurationMilliseconds": ["1500", "0"], "protocolIdentifier": ["6", "132"],
                            "destinationTransportPort": ["443", "8080"], "packetDeltaCount": ["9", "1"],
                            "reversePacketDeltaCount": ["7", "0"], "octetDeltaCount": ["4711", "40"], "reverseOctetDeltaCount": ["900", "0"]})
    out = portable.to_schema(netflow)
    assert out.to_dict("records") == [
        {"dur": "1.5", "spkts": "9.0", "dpkts": "7.0", "sbytes": "4711.0", "dbytes": "900.0", "proto": "tcp", "service": "ssl"},
        {"dur": "0.0", "spkts": "1.0", "dpkts": "0.0", "sbytes": "40.0", "dbytes": "0.0", "proto": "sctp", "service": "-"},
    ]
    cic = pd.DataFrame({" Flow Duration": ["2500000"], "Protocol": ["17"], " Destination Port": ["53"], "Total Fwd Packets": ["1"],
                        "Total Backward Packets": ["1"]})
    row = portable.to_schema(cic).iloc[0].to_dict()
    assert row["dur"] == "2.5" and row["proto"] == "udp" and row["service"] == "dns"
    assert row["sbytes"] is None, "CICFlowMeter's payload byte counts are not read as IP bytes"
    zeek = pd.DataFrame({"duration": ["0.25"], "proto": ["tcp"], "service": [None], "orig_ip_bytes": ["120"]})
    row = portable.to_schema(zeek).iloc[0].to_dict()
    assert row["dur"] == "0.25" and row["service"] is None and row["sbytes"] == "120.0"


def test_the_labelled_datasets_stack_in_the_schema(datasets):
    ds = load("flows_portable", limit=3000, seed=1)
    assert set(ds.frame.columns) == {"dur", "proto", "service", "spkts", "dpkts", "sbytes", "dbytes", "source"}
    assert set(ds.frame["source"]) == {"unsw_nb15", "cicids2017"}
    assert ds.y.sum() > 0 and (ds.y == 0).sum() > 0 and len(ds.family) == len(ds.frame)
    cic = load("cicids2017", limit=3000, seed=1).frame
    mine = ds.frame[ds.frame["source"] == "cicids2017"].reset_index(drop=True)
    # IP bytes estimated from payload + transport headers + 20 bytes of IPv4 header per packet.
    payload, header, pkts = (pd.to_numeric(cic[c]).to_numpy() for c in ("Total Length of Fwd Packets", "Fwd Header Length", "Total Fwd Packets"))
    np.testing.assert_array_equal(mine["sbytes"].astype(float).to_numpy(), payload + np.maximum(header, 0) + 20 * pkts)
    np.testing.assert_allclose(mine["dur"].astype(float).to_numpy(), pd.to_numeric(cic["Flow Duration"]).to_numpy() * 1e-6)
    assert mine["proto"].isna().all(), "the MachineLearningCVE files carry no protocol"


@pytest.mark.parametrize("name", ["flows_portable:", "flows_portable:zeek_conn", "flows_portables"])
def test_unknown_sources_are_refused(name):
    with pytest.raises(ValueError, match="expected flows_portable"):
        portable.sources_of(name)
