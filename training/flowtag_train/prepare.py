"""`flowtag-train prepare`: a dataset's files to the Parquet that training reads, on pandas or Spark.

    flowtag-train prepare --engine pandas --dataset unsw_nb15 --out build/prepared/unsw
    flowtag-train prepare --engine spark --dataset unsw_nb15 --input 'archive/' --out build/prepared/unsw

Inputs are the schema's files or `--input` paths: CSV (with a header, or the schema's column
list), JSON lines as flowtag's file sink archives them (the tags are left out), Zeek logs, and
Parquet whose columns are text (a prepared output can be prepared again); a folder stands for the
files under it (an archive partitioned by day and node).

The output is Parquet in one folder per split (`_split=train|valid|test|eval`), with every column
the input files share, as text after the schema's renames, and:

* `_label` (1 attack, 0 normal) and `_family` (one spelling per attack family), when the schema
  has them (`datasets.labels`);
* `_key`: the row's group key, a hash of its feature values (`splits.groups`: identical rows
  share it, whatever else the data holds);
* `_copies`: how many rows of the data share the key (duplicates are kept and counted);
* `_split`: from the key alone (`splits.content_split`): the fixed evaluation set retraining
  judges on (`eval`, the same rows `splits.evaluation_rows` picks), then `test`, `valid`,
  `train` in the asked shares, identical rows always in one split;

and `_prepared.json` beside them (dataset, engine, inputs, columns, rows per split).

One rule set: both engines read lines with the same parsers (`datasets.parse_csv_lines`,
`parse_zeek_lines`, `parse_json_lines`) and derive the columns above with the same function
(`derive`). pandas applies them to whole files on one machine; Spark to each split of each file
in `mapInPandas`, a split that starts inside a file primed with the file's header (read by the
driver), and counts copies with one shuffle by key. `test_prepare.py` holds the two to the same
rows on the shared datasets. One difference is known: pandas decodes a file that is not all UTF-8
as Windows-1252 as a whole, Spark line by line; a file mixing valid UTF-8 text and other bytes
reads differently in the lines that hold valid multi-byte UTF-8.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import features, splits
from .datasets import (
    CsvLayout,
    Dataset,
    Schema,
    ZeekLayout,
    csv_layout,
    decode_text,
    is_json_lines,
    labels,
    parse_csv_lines,
    parse_json_lines,
    parse_zeek_lines,
    read_csv,
    read_json_lines,
    read_zeek,
    resolve_files,
    _sha256,
)

MANIFEST = "_prepared.json"


@dataclass
class Shares:
    eval_buckets: int = 5
    valid: float = 0.2
    test: float = 0.2

    def check(self) -> None:
        if self.eval_buckets < 2:
            raise ValueError(f"--eval-buckets must be at least 2, got {self.eval_buckets}")
        if not (0 <= self.valid < 1 and 0 <= self.test < 1 and self.valid + self.test < 1):
            raise ValueError(f"--valid {self.valid} and --test {self.test}: each in [0, 1), together below 1")


def key_columns(schema: Schema, columns: list[str]) -> list[str]:
    """The columns a row's group key hashes: every feature column, as the retraining's fixed
    evaluation set uses them (`pipeline.evaluation_columns`)."""
    empty = Dataset(schema=schema, frame=pd.DataFrame(columns=columns), y=None, family=None, files=[])
    numeric, categorical = features.feature_columns(empty, use_leaky=True)
    return numeric + categorical


def derive(frame: pd.DataFrame, schema: Schema, keys: list[str], shares: Shares) -> pd.DataFrame:
    """The columns prepare adds, for any set of rows (a whole dataset, or one Spark chunk)."""
    y, family = labels(frame, schema)
    out = frame.copy()
    if y is not None:
        out["_label"] = y
    if family is not None:
        out["_family"] = family.astype(str)
    k = pd.util.hash_pandas_object(frame[keys], index=False).to_numpy().astype(np.uint64)
    out["_key"] = k.view(np.int64)
    out["_split"] = splits.content_split(k, eval_buckets=shares.eval_buckets, valid=shares.valid, test=shares.test)
    return out


def file_kind(path: str, schema: Schema) -> str:
    """`parquet`, `json`, `zeek` or `csv`."""
    p = Path(path.split("?", 1)[0])
    if p.suffix.lower() == ".parquet":
        return "parquet"
    if is_json_lines(p, schema):
        return "json"
    return "zeek" if schema.format == "zeek" else "csv"


def text_of(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's dataset columns (those not starting with `_`) as text, a missing value as None."""
    text = [c for c in frame.columns if not c.startswith("_")]
    return frame[text].astype(object).where(frame[text].notna(), None)


def read_folder(out: str | Path, **options) -> pd.DataFrame:
    """A prepared folder's Parquet. Its `_split=...` folders start with `_`, which pyarrow skips
    unless told which names to skip: Spark's `_SUCCESS` and our manifest."""
    return pd.read_parquet(out, ignore_prefixes=[".", "_SUCCESS", MANIFEST], **options)


def read_parquet(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    bad = [c for c in frame.columns if not (pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object)]
    if bad:
        raise ValueError(f"{path}: column {bad[0]!r} is {frame[bad[0]].dtype}, not text: prepare reads Parquet whose columns are strings")
    return text_of(frame)


def _common(columns_per_file: list[list[str]]) -> list[str]:
    first = columns_per_file[0]
    return [c for c in first if all(c in cols for cols in columns_per_file)]


def _finish(frame: pd.DataFrame, common: list[str]) -> pd.DataFrame:
    """The shared columns of a file's (or chunk's) rows, absent members as None."""
    for c in common:
        if c not in frame.columns:
            frame[c] = None
    return frame[common]


# --- pandas -------------------------------------------------------------------------------------


def prepare_pandas(schema: Schema, paths: list[Path], shares: Shares) -> pd.DataFrame:
    frames = []
    for p in paths:
        kind = file_kind(str(p), schema)
        if kind == "parquet":
            frame = read_parquet(p)
        elif kind == "json":
            frame = read_json_lines(p)
        elif kind == "zeek":
            frame = read_zeek(p)
        else:
            frame = read_csv(p, schema)
        frames.append(frame.rename(columns=schema.rename))
    common = _common([list(f.columns) for f in frames])
    frame = pd.concat([_finish(f, common) for f in frames], ignore_index=True)
    out = derive(frame, schema, key_columns(schema, common), shares)
    out["_copies"] = out.groupby("_key")["_key"].transform("size").astype(np.int64)
    return out


# --- Spark --------------------------------------------------------------------------------------


@dataclass
class FileLayout:
    """What a worker needs to read a split of a text file: its kind, its CSV layout or the
    Zeek directives before its first record."""

    kind: str
    csv: CsvLayout | None = None
    zeek: list[str] | None = None


def _split_lines(values: list[bytes], first_split: bool) -> list[str]:
    """A chunk's lines as text: UTF-8, else each line as `datasets.decode_text` reads a file."""
    try:
        text = b"\n".join(values).decode("utf-8")
        lines = text.split("\n")
        if first_split and lines:
            lines[0] = lines[0].lstrip("\ufeff")
        return lines
    except UnicodeDecodeError:
        return [decode_text(v) for v in values]


def _parse_chunk(lines: list[str], layout: FileLayout, state: dict, where: str) -> pd.DataFrame:
    if layout.kind == "csv":
        return parse_csv_lines(lines, layout.csv)
    if layout.kind == "zeek":
        if "zeek" not in state:
            z = ZeekLayout()
            for d in layout.zeek or []:
                z.directive(d)
            state["zeek"] = z
        return parse_zeek_lines(lines, state["zeek"], where)
    return parse_json_lines(lines, where, nested="text" if layout.kind == "zeek_json" else "drop")


def _runs(pdf: pd.DataFrame):
    """(file, block, start, end) of each contiguous run of one file split in a chunk."""
    from .spark import split_runs

    files = pdf["file"].to_numpy()
    blocks = pdf["block"].to_numpy()
    return [(files[s], int(blocks[s]), s, e) for s, e in split_runs(files[1:] != files[:-1], blocks)]


def _json_columns(layouts: dict):
    """`mapInPandas`: the members of JSON-lines splits, each with where it first appears."""

    def run(batches):
        from .spark import file_key

        for pdf in batches:
            out = {"file": [], "block": [], "pos": [], "column": []}
            values = pdf["value"].tolist()
            for f, block, s, e in _runs(pdf):
                layout = layouts[file_key(f)]
                frame = _parse_chunk(_split_lines(values[s:e], block == 0), layout, {}, f)
                for i, c in enumerate(frame.columns):
                    out["file"].append(f)
                    out["block"].append(block)
                    out["pos"].append(i)
                    out["column"].append(str(c))
            yield pd.DataFrame(out).astype({"block": np.int64, "pos": np.int64})

    return run


def _prepare_chunks(layouts: dict, schema_d: dict, common: list[str], keys: list[str], shares: Shares, text_columns: list[str]):
    """`mapInPandas`: each split's lines parsed, renamed and derived as pandas does a file."""
    schema = Schema(**schema_d)

    def run(batches):
        from .spark import file_key

        states: dict = {}
        for pdf in batches:
            values = pdf["value"].tolist()
            parts = []
            for f, block, s, e in _runs(pdf):
                fk = file_key(f)
                state = states.setdefault((fk, block), {})
                frame = _parse_chunk(_split_lines(values[s:e], block == 0), layouts[fk], state, f)
                parts.append(_finish(frame.rename(columns=schema.rename), common))
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=common)
            out = derive(frame, schema, keys, shares)
            yield out[text_columns]

    return run


def _derive_frames(schema_d: dict, common: list[str], keys: list[str], shares: Shares, text_columns: list[str]):
    """`mapInPandas` over Parquet inputs: renamed and derived as pandas does a file."""
    schema = Schema(**schema_d)

    def run(batches):
        for pdf in batches:
            frame = _finish(text_of(pdf).rename(columns=schema.rename), common)
            yield derive(frame, schema, keys, shares)[text_columns]

    return run


def spark_files(spark, schema: Schema, inputs: list[str] | None) -> list[str]:
    """The files to read (absolute paths, or URIs), in the order pandas reads them: local paths and globs as
    `datasets.resolve_files` expands them (the schema's files without `inputs`), then the files
    under each remote URI (`s3a://`, `hdfs://`...) as Spark lists them."""
    remote = [i for i in inputs or [] if "://" in i and not i.startswith("file:")]
    local = [i.removeprefix("file://") for i in inputs or [] if i not in remote]
    uris = [str(p.resolve()) for p in resolve_files(schema, local or None)] if local or not remote else []
    for r in remote:
        uris += sorted(spark.read.text(r).inputFiles())
    return uris


def prepare_spark(spark, schema: Schema, uris: list[str], shares: Shares):
    """The prepared rows of these files as a Spark DataFrame (not yet written)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .spark import PREAMBLE_BYTES, _read_head, file_key, preamble

    columns_per_file: dict[str, list[str]] = {}
    layouts: dict[str, FileLayout] = {}
    text_uris = [u for u in uris if file_kind(u, schema) != "parquet"]
    parquet_uris = [u for u in uris if file_kind(u, schema) == "parquet"]
    for u in text_uris:
        kind = file_kind(u, schema)
        head = b"" if kind == "json" else _read_head(spark, u, PREAMBLE_BYTES)
        if kind == "zeek" and decode_text(head).lstrip("\ufeff").lstrip().startswith("{"):
            kind = "zeek_json"
        if kind == "csv":
            first = next((ln for ln in decode_text(head).split("\n") if ln.strip()), "")
            layout = FileLayout("csv", csv=csv_layout(first, schema, u))
            columns_per_file[file_key(u)] = [schema.rename.get(c, c) for c in layout.csv.columns]
        elif kind == "zeek":
            lines = [decode_text(ln) for ln in preamble(head, "zeek")]
            z = ZeekLayout()
            for d in lines:
                z.directive(d.lstrip("\ufeff"))
            layout = FileLayout("zeek", zeek=lines)
            columns_per_file[file_key(u)] = [schema.rename.get(c, c) for c in z.fields or []]
        else:
            layout = FileLayout(kind)
        layouts[file_key(u)] = layout
    text = None
    if text_uris:
        text = spark.read.option("lineSep", "\n").text(text_uris).select(
            F.input_file_name().alias("file"), F.input_file_block_start().alias("block"), F.col("value").cast("binary").alias("value")
        )
        json_uris = [u for u in text_uris if layouts[file_key(u)].kind in ("json", "zeek_json")]
        if json_uris:
            # A pass over the JSON files for their members, in the order pandas gives them
            # (first appearance).
            only = spark.read.option("lineSep", "\n").text(json_uris).select(
                F.input_file_name().alias("file"), F.input_file_block_start().alias("block"), F.col("value").cast("binary").alias("value")
            )
            found = only.mapInPandas(_json_columns(layouts), "file string, block long, pos long, column string")
            first = found.groupBy("file", "column").agg(F.min(F.struct("block", "pos")).alias("at")).collect()
            by_file: dict[str, list] = {}
            for r in first:
                by_file.setdefault(file_key(r["file"]), []).append(((r["at"]["block"], r["at"]["pos"]), r["column"]))
            for u in json_uris:
                columns_per_file[file_key(u)] = [schema.rename.get(c, c) for _, c in sorted(by_file.get(file_key(u), []))]
    if parquet_uris:
        for u in parquet_uris:
            cols = spark.read.parquet(u).schema.fields
            bad = [f.name for f in cols if f.dataType.typeName() != "string" and not f.name.startswith("_")]
            if bad:
                raise ValueError(f"{u}: column {bad[0]!r} is not text: prepare reads Parquet whose columns are strings")
            columns_per_file[file_key(u)] = [schema.rename.get(f.name, f.name) for f in cols if not f.name.startswith("_")]
    common = _common([columns_per_file[file_key(u)] for u in uris])
    keys = key_columns(schema, common)
    labelled = bool(schema.label)
    family = bool(schema.family and schema.family in common)
    columns = common + (["_label"] if labelled else []) + (["_family"] if family else []) + ["_key", "_split"]
    types = [f"`{c}` string" for c in common] + (["_label long"] if labelled else []) + (["_family string"] if family else [])
    out_schema = ", ".join(types + ["_key long", "_split string"])
    parts = []
    if text is not None:
        parts.append(text.mapInPandas(_prepare_chunks(layouts, asdict(schema), common, keys, shares, columns), out_schema))
    if parquet_uris:
        parts.append(spark.read.parquet(*parquet_uris).mapInPandas(_derive_frames(asdict(schema), common, keys, shares, columns), out_schema))
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    return df.withColumn("_copies", F.count(F.lit(1)).over(Window.partitionBy("_key")))


# --- the command ------------------------------------------------------------------------------------


def prepare(*, engine: str, dataset: str, inputs: list[str] | None, out: str | Path, shares: Shares | None = None, master: str | None = None, spark=None) -> dict:
    """Prepare `dataset` (its schema's files, or `inputs`) into `out`; returns the manifest."""
    shares = shares or Shares()
    shares.check()
    schema = Schema.load(dataset)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: prepare writes a new folder")
    if out.exists():
        out.rmdir()  # Spark writes only where nothing is
    started = time.perf_counter()
    if engine == "pandas":
        paths = resolve_files(schema, inputs)
        frame = prepare_pandas(schema, paths, shares)
        out.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, partition_cols=["_split"], index=False)
        rows = {str(k): int(v) for k, v in frame["_split"].value_counts().items()}
        columns = [c for c in frame.columns if c != "_split"]
        names = [str(p) for p in paths]
    elif engine == "spark":
        from . import spark as spark_mod

        with spark_mod.using(spark, master, app="flowtag-prepare") as spark:
            names = spark_files(spark, schema, inputs)
            df = prepare_spark(spark, schema, names, shares)
            df.write.mode("errorifexists").partitionBy("_split").parquet(str(out))
            rows = {r["_split"]: int(r["count"]) for r in spark.read.parquet(str(out)).groupBy("_split").count().collect()}
            columns = [c for c in df.columns if c != "_split"]
    else:
        raise ValueError(f"--engine {engine!r}: use pandas or spark")
    manifest = {
        "dataset": schema.name,
        "engine": engine,
        "inputs": [{"path": n, "sha256": _sha256(Path(n)) if "://" not in n else None} for n in names],
        "columns": columns,
        "rows": dict(sorted(rows.items())),
        "shares": asdict(shares),
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_prepared(out: str | Path, split: str | None = None) -> pd.DataFrame:
    """A prepared folder's rows (one split, or all), sorted by key then every column: the
    same frame whichever engine wrote it."""
    out = Path(out)
    frame = read_folder(out, filters=[("_split", "==", split)] if split else None)
    frame["_split"] = frame["_split"].astype(str)
    text = [c for c in frame.columns if not c.startswith("_")]
    frame[text] = text_of(frame)
    return frame.sort_values(["_key", *text], na_position="first", kind="stable").reset_index(drop=True)


@dataclass
class Prepared:
    """A prepared folder loaded for training: the rows, their splits, and how they were drawn."""

    dataset: Dataset
    split: splits.Split
    sampling: dict


def prepared_rows(out: str | Path, frame: pd.DataFrame | None = None) -> tuple[Dataset, np.ndarray]:
    """A prepared folder (or rows of it already read) as a `Dataset`, sorted by key, and each
    row's split."""
    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text())
    if frame is None:
        frame = read_folder(out)
    frame = frame.sort_values(["_key"], kind="stable").reset_index(drop=True)
    y = frame["_label"].to_numpy(dtype=np.int64) if "_label" in frame.columns else None
    family = frame["_family"].astype(str).to_numpy(dtype=object) if "_family" in frame.columns else None
    data = text_of(frame)
    # Provenance: the files the folder was prepared from, as `datasets.load` records its own.
    files = [{**f, "rows": None} for f in manifest["inputs"]]
    ds = Dataset(schema=Schema.load(manifest["dataset"]), frame=data, y=y, family=family, files=files)
    return ds, frame["_split"].astype(str).to_numpy()


def prepared_shares(out: str | Path) -> Shares:
    return Shares(**json.loads((Path(out) / MANIFEST).read_text())["shares"])


def load_prepared(out: str | Path, *, limit: int | None = None, seed: int = 0, holdout_family: str | None = None, spark=None, master: str | None = None) -> Prepared:
    """A prepared folder as a `Dataset` and its splits (the fixed evaluation rows left out).

    With `limit` below the folder's rows, training fits on a sample drawn by Spark (the data need
    not fit the driver): each attack family keeps the same share of its rows, and a rare family at
    least `RARE_FLOOR` rows. `sampling` says what was drawn; training logs it in MLflow.
    """
    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text())
    total = sum(v for k, v in manifest["rows"].items() if k != "eval")
    sampling = {"prepared": str(out), "engine": manifest["engine"], "rows": total, "sampled": False}
    if limit is not None and total > limit:
        from . import spark as spark_mod

        with spark_mod.using(spark, master, app="flowtag-sample") as spark:
            frame, fractions = _spark_sample(spark, out, limit, seed)
        sampling |= {"sampled": True, "engine": "spark", "limit": limit, "sample_rows": len(frame), "fractions": fractions}
    else:
        frame = read_folder(out, filters=[("_split", "!=", "eval")])
    ds, part = prepared_rows(out, frame)
    held = np.zeros(len(part), dtype=bool)
    if holdout_family is not None:
        if ds.family is None or not (ds.family == holdout_family).any():
            raise ValueError(f"no attack family {holdout_family!r} in {out}")
        held = ds.family == holdout_family
    sp = splits.Split(
        train=np.flatnonzero((part == "train") & ~held), valid=np.flatnonzero((part == "valid") & ~held),
        test=np.flatnonzero((part == "test") | held), holdout_family=holdout_family,
    )
    return Prepared(ds, sp, sampling)


#: A family with few rows keeps at least this many in a sample (or all it has).
RARE_FLOOR = 200


def _spark_sample(spark, out: Path, limit: int, seed: int) -> tuple[pd.DataFrame, dict]:
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(out)).where(F.col("_split") != "eval")
    stratum = "_family" if "_family" in df.columns else ("_label" if "_label" in df.columns else None)
    if stratum is None:
        fraction = limit / df.count()
        return df.sample(fraction=min(1.0, fraction), seed=seed).toPandas(), {"all": fraction}
    counts = {r[stratum]: r["count"] for r in df.groupBy(stratum).count().collect()}
    share = limit / sum(counts.values())
    fractions = {k: min(1.0, max(share, RARE_FLOOR / n)) for k, n in counts.items()}
    return df.sampleBy(stratum, fractions, seed).toPandas(), {str(k): round(v, 6) for k, v in sorted(fractions.items(), key=lambda kv: str(kv[0]))}
