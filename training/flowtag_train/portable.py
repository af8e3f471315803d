"""The portable flow schema: what NetFlow/IPFIX, Zeek `conn.log`, Argus/UNSW-NB15 and
CICFlowMeter records all carry, under one set of names and units.

| feature | meaning | NetFlow/IPFIX | Zeek | UNSW-NB15 | CICFlowMeter | NFStream |
|---|---|---|---|---|---|---|
| `dur` | seconds | `flowDurationMilliseconds` x 0.001 | `duration` | `dur` | `Flow Duration` x 1e-6 | `bidirectional_duration_ms` x 0.001 |
| `proto` | IANA keyword | `protocolIdentifier` mapped | `proto` | `proto` | `Protocol` mapped | `protocol` mapped |
| `service` | UNSW-NB15's names | `destinationTransportPort` mapped | `service` | `service` | `Destination Port` mapped | `dst_port` mapped |
| `spkts`, `dpkts` | packets each way | `packetDeltaCount`, `reversePacketDeltaCount` | `orig_pkts`, `resp_pkts` | same (raw Argus: `Spkts`, `Dpkts`) | `Total Fwd/Backward Packets` | `src2dst_packets`, `dst2src_packets` |
| `sbytes`, `dbytes` | IP bytes each way | `octetDeltaCount`, `reverseOctetDeltaCount` | `orig_ip_bytes`, `resp_ip_bytes` | same | (payload only: not read) | `src2dst_bytes`, `dst2src_bytes` |

The conversions are aliases in the bundle (`docs/bundle-format.md`: `scale`, `map`, `default`),
so the plugin reads each tool's own records, and training maps the datasets into these columns
with the same spec code (`FeatureSpec.numeric_values` and the alias maps), not a second copy.

Two things are estimates, said where they are used:
- CICFlowMeter's `Total Length of Fwd/Bwd Packets` count payload bytes only. Training rows from
  CICIDS2017 get IP bytes as payload + `Fwd/Bwd Header Length` (transport headers; negative
  values in the 2017 CSVs are taken as 0) + 20 bytes of IPv4 header per packet. The bundle does
  not read CICFlowMeter's byte columns (a record from it lacks `sbytes`; score those with the
  `cicids2017` bundle).
- CICIDS2017's MachineLearningCVE files have no `Protocol` column: those rows have no `proto`
  (the unknown category). NetFlow, Zeek and Argus always carry it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowtag_export.spec import Feature, FeatureSpec, MissingRule, recoder

from .datasets import Dataset, Schema, load

#: IANA protocol numbers as the keywords Argus and Zeek write.
PROTOCOLS = {"1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "41": "ipv6", "47": "gre", "50": "esp", "51": "ah",
             "58": "ipv6-icmp", "89": "ospf", "132": "sctp"}
#: Well-known server ports as UNSW-NB15's service names; any other port is `-` (none), as Argus writes it.
SERVICES = {"20": "ftp-data", "21": "ftp", "22": "ssh", "25": "smtp", "53": "dns", "67": "dhcp", "68": "dhcp", "80": "http",
            "110": "pop3", "161": "snmp", "162": "snmp", "194": "irc", "443": "ssl", "1812": "radius", "1813": "radius",
            "6667": "irc"}


def _port(name: str) -> dict:
    return {"name": name, "map": SERVICES, "default": "-"}


def _proto(name: str) -> dict:
    return {"name": name, "map": PROTOCOLS}


#: Feature -> its aliases in the other tools (the canonical name, UNSW-NB15's, comes first in a bundle).
ALIASES: dict[str, list] = {
    "dur": ["duration", {"name": "Flow Duration", "scale": 1e-6}, {"name": "flow_duration", "scale": 1e-6},
            {"name": "flowDurationMilliseconds", "scale": 0.001}, {"name": "flowDurationMicroseconds", "scale": 1e-6},
            {"name": "bidirectional_duration_ms", "scale": 0.001}],
    "proto": [_proto("Protocol"), _proto("protocol"), _proto("protocolIdentifier")],
    "service": [_port("Destination Port"), _port("Dst Port"), _port("dst_port"), _port("destinationTransportPort")],
    "spkts": ["Spkts", "orig_pkts", "Total Fwd Packets", "Total Fwd Packet", "Tot Fwd Pkts", "tot_fwd_pkts", "src2dst_packets", "packetDeltaCount"],
    "dpkts": ["Dpkts", "resp_pkts", "Total Backward Packets", "Total Bwd packets", "Tot Bwd Pkts", "tot_bwd_pkts", "dst2src_packets",
              "reversePacketDeltaCount"],
    "sbytes": ["orig_ip_bytes", "src2dst_bytes", "octetDeltaCount"],
    "dbytes": ["resp_ip_bytes", "dst2src_bytes", "reverseOctetDeltaCount"],
}
NUMERIC = ["dur", "spkts", "dpkts", "sbytes", "dbytes"]
CATEGORICAL = ["proto", "service"]
#: Datasets with labels that map into the schema.
SOURCES = ("unsw_nb15", "cicids2017")


def schema(sources: tuple[str, ...]) -> Schema:
    return Schema(
        name="flows_portable" if sources == SOURCES else "flows_portable:" + "+".join(sources),
        description="NetFlow/IPFIX, Zeek, Argus/UNSW-NB15 and CICFlowMeter flows in one schema (flowtag_train.portable).",
        categorical=list(CATEGORICAL), drop=["source"], aliases=ALIASES, category_fill={"service": "-"},
        shape=["proto", "service", "spkts", "dpkts", "sbytes", "dbytes"],
    )


def sources_of(name: str) -> tuple[str, ...]:
    """`flows_portable` (every labelled source) or `flows_portable:unsw_nb15+cicids2017`."""
    if name == "flows_portable":
        return SOURCES
    prefix, _, rest = name.partition(":")
    sources = tuple(s for s in rest.split("+") if s)
    if prefix != "flows_portable" or not sources or any(s not in SOURCES for s in sources):
        raise ValueError(f"{name!r}: expected flows_portable or flows_portable:<sources joined by +> from {', '.join(SOURCES)}")
    return sources


def _reader() -> FeatureSpec:
    """The alias part of the spec, untrained: what reads any tool's columns into the schema."""
    feats = [Feature(n, [n] + ALIASES[n], required=False, fill=np.nan) for n in NUMERIC]
    feats += [Feature(n, [n] + ALIASES[n], type="categorical", encoding="index", required=False) for n in CATEGORICAL]
    return FeatureSpec(feats, MissingRule(infinity="missing", policy="fill"))


def _cic_ip_bytes(frame: pd.DataFrame) -> pd.DataFrame:
    """CICFlowMeter's payload byte totals as IP bytes (see the module doc: an estimate)."""
    def num(col: str) -> np.ndarray:
        return pd.to_numeric(frame[col], errors="coerce").fillna(0).to_numpy(dtype=np.float64)

    out = frame.copy()
    for ours, total, header, pkts in (("sbytes", "Total Length of Fwd Packets", "Fwd Header Length", "Total Fwd Packets"),
                                      ("dbytes", "Total Length of Bwd Packets", "Bwd Header Length", "Total Backward Packets")):
        out[ours] = [repr(float(v)) for v in num(total) + np.maximum(num(header), 0) + 20 * num(pkts)]
    return out


def to_schema(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame of any tool's columns as the schema's columns (text, as datasets are held)."""
    reader, cols = _reader(), {}
    for feat in reader.features:
        col, entry = reader.column(frame, feat)
        if col is None:
            cols[feat.name] = [None] * len(frame)
        elif feat.type == "numeric":
            values = reader.numeric_values(frame, feat)
            cols[feat.name] = [None if np.isnan(v) else repr(float(v)) for v in values]
        else:
            read = recoder(entry)
            cols[feat.name] = [read(reader.category_key(v)) for v in col.tolist()]
    return pd.DataFrame(cols, dtype=object)


def load_portable(name: str, limit: int | None = None, seed: int = 0) -> Dataset:
    """The labelled datasets `name` names, mapped into the schema and stacked (a `source`
    column says which each row came from)."""
    parts = []
    for source in sources_of(name):
        ds = load(source, limit=limit, seed=seed)
        frame = _cic_ip_bytes(ds.frame) if source == "cicids2017" else ds.frame
        common = to_schema(frame)
        common["source"] = source
        parts.append(Dataset(schema=ds.schema, frame=common, y=ds.y, family=ds.family, files=ds.files))
    return Dataset(
        schema=schema(sources_of(name)),
        frame=pd.concat([p.frame for p in parts], ignore_index=True),
        y=np.concatenate([p.y for p in parts]),
        family=np.concatenate([p.family for p in parts]),
        files=[f for p in parts for f in p.files],
    )

