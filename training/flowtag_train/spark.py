"""Spark for the central side: the session flowtag's jobs run in, and batch scoring of archives.

Batch scoring (`flowtag-train score-batch --engine spark`) tags historical records with a bundle
as the edge would: each Spark task drives the plugin itself through its Python bindings
(`flowtag_native`, built from `bindings/python` by `scripts/setup.sh`), the decoder, featurizer,
model and tagger `flowtag score` runs, so a record scored here gets the bytes a node writes.

How the work spreads: Spark reads the inputs (local files, HDFS, S3, any Hadoop file system;
`.gz` archives whole, plain files in splits of `spark.sql.files.maxPartitionBytes`, 128 MiB by
default); each split is one task, run in `mapInArrow` by a Python worker that loads the bundle
once (it is shipped to the executors with `SparkContext.addFile`). Each run of lines from one
file is primed with the file's header lines (a CSV header, Zeek's `#` lines; read once by the
driver), so a split that starts inside a file decodes as the whole file would (at the top of a
file the header is simply seen twice, and the decoder skips a repeated header). Nothing moves
between executors: each part file holds the tagged lines of the splits one task read, in their
order. With `--ordered` the part files, concatenated in name order, are the inputs in input
order: the input lines are range-partitioned by file and position before they are scored (one
shuffle of the input; the sample that picks the ranges reads the input only).
The lines cross from Spark to the plugin as Arrow buffers (`mapInArrow`, `Scorer.score_arrow`):
no Python object per record on the way in or out.

The master is a setting: `--master`, else `FLOWTAG_SPARK_MASTER`, else `local[2]`; on a cluster
the driver and executors need this package and `flowtag_native` installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

#: Formats whose decoder keeps state from the start of a file (a header line, `#` directives).
HEADER_FORMATS = {"csv", "unsw", "cicflowmeter", "zeek"}
#: Bytes read from the start of a file for its header lines.
PREAMBLE_BYTES = 1 << 20


def master(value: str | None = None) -> str:
    return value or os.environ.get("FLOWTAG_SPARK_MASTER") or "local[2]"


def session(master_url: str | None = None, app: str = "flowtag", conf: dict | None = None):
    """A Spark session. Local masters bind the driver to 127.0.0.1 and run no web UI; workers
    run this Python (the virtual environment with flowtag's packages). FLOWTAG_SPARK_CONF (JSON)
    adds settings, e.g. `{"spark.driver.memory": "1g"}`; `conf` overrides them."""
    import logging

    from pyspark.sql import SparkSession

    # py4j logs each connection it closes at INFO, from finalizers too (at exit, into closed
    # streams); its warnings and errors still show.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master_url is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Started by spark-submit (the Airflow DAG's SparkSubmitOperator, a SparkApplication):
        # the master and settings are spark-submit's.
        spark = SparkSession.builder.appName(app).getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("FLOWTAG_SPARK_LOG_LEVEL", "WARN"))
        return spark
    url = master(master_url)
    b = SparkSession.builder.master(url).appName(app)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if url.startswith("local"):
        settings |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false"}
    settings |= json.loads(os.environ.get("FLOWTAG_SPARK_CONF") or "{}")
    settings |= conf or {}
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("FLOWTAG_SPARK_LOG_LEVEL", "WARN"))
    return spark


@contextlib.contextmanager
def using(spark=None, master_url: str | None = None, app: str = "flowtag"):
    """The session to run in: `spark` if given, else the one already running in this process
    (a caller's), else a new one, stopped on leaving. A session this did not start is never
    stopped here."""
    from pyspark.sql import SparkSession

    existing = spark or SparkSession.getActiveSession()
    if existing is not None:
        yield existing
        return
    own = session(master_url, app=app)
    try:
        yield own
    finally:
        own.stop()


def preamble(head: bytes, fmt: str) -> list[bytes]:
    """The header lines a stream that starts inside a file is primed with: for CSV formats the
    first non-blank line (a header, or the first record of a header-less file, which sets the
    decoder's column list), for Zeek the leading `#` lines."""
    if fmt not in HEADER_FORMATS:
        return []
    lines = head.split(b"\n")
    if len(head) >= PREAMBLE_BYTES:
        lines = lines[:-1]  # the last one may be cut
    out: list[bytes] = []
    for line in lines:
        bare = line.strip()
        if not bare or bare == b"\xef\xbb\xbf":
            continue
        if fmt == "zeek":
            if not bare.lstrip(b"\xef\xbb\xbf").startswith(b"#"):
                break
            out.append(line)
        else:
            return [line]
    return out


def file_key(uri: str) -> str:
    """One spelling for a file Spark names two ways (`file:/a` from `inputFiles`, `file:///a`
    from `input_file_name`)."""
    from urllib.parse import unquote, urlparse

    u = urlparse(uri)
    return f"{u.scheme or 'file'}://{u.netloc}{unquote(u.path)}"


def _read_head(spark, uri: str, limit: int) -> bytes:
    """The first `limit` bytes of a file (decompressed, for a codec Hadoop knows by the file's
    suffix), through Spark's Hadoop file systems (works for any scheme Spark reads)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(conf)
    stream = fs.open(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    try:
        return bytes(stream.readNBytes(limit))
    finally:
        stream.close()


def _ship(spark, bundle: Path) -> str:
    """Send the bundle to the executors under a name made of its content hash (Spark refuses
    to replace a file it has shipped, so a bundle changed at the same path gets a new name);
    returns the name `SparkFiles.get` finds it by."""
    import hashlib
    import shutil
    import tempfile

    h = hashlib.sha256()
    files = sorted(p for p in bundle.rglob("*") if p.is_file()) if bundle.is_dir() else [bundle]
    for f in files:
        h.update(str(f.relative_to(bundle) if bundle.is_dir() else f.name).encode() + b"\0" + f.read_bytes())
    name = f"{bundle.stem}-{h.hexdigest()[:16]}{'' if bundle.is_dir() else bundle.suffix}"
    if (spark.sparkContext.applicationId, name) in _SHIPPED:
        return name
    staged = Path(tempfile.mkdtemp(prefix="flowtag-bundle-")) / name
    if bundle.is_dir():
        shutil.copytree(bundle, staged)
    else:
        shutil.copyfile(bundle, staged)
    spark.sparkContext.addFile(str(staged), recursive=bundle.is_dir())
    _SHIPPED.add((spark.sparkContext.applicationId, name))
    return name


_SHIPPED: set = set()


def check_bundle(bundle: str | Path, fmt: str, reasons: str = "anomalous", key: str = "anomaly", batch: int = 256) -> str:
    """Load the bundle on the driver as the tasks will (canaries checked): a bad bundle, format
    or option fails here, in the plugin's words, before any task starts. Returns the model id."""
    from flowtag_native import Scorer

    return Scorer(str(bundle), format=fmt, reasons=reasons, key=key, batch=batch).model_id


def split_runs(file_changed, blocks) -> list[tuple[int, int]]:
    """(start, end) of each contiguous run of lines from one file split in a chunk, given where
    the file differs from the line before (`file_changed`, one shorter than the chunk) and each
    line's split."""
    import numpy as np

    if len(blocks) == 0:
        return []
    change = (np.flatnonzero(np.asarray(file_changed, dtype=bool) | (blocks[1:] != blocks[:-1])) + 1).tolist()
    return list(zip([0, *change], [*change, len(blocks)]))


_SCORERS: dict = {}


def _scorer(bundle: str, options: tuple):
    """One loaded bundle per Python worker (workers are reused between tasks)."""
    from flowtag_native import Scorer

    key = (bundle, options)
    if key not in _SCORERS:
        fmt, reasons, tag_key, batch = options
        _SCORERS[key] = Scorer(bundle, format=fmt, reasons=reasons, key=tag_key, batch=batch)
    return _SCORERS[key]


def _tag_partitions(bundle_name: str, options: tuple, preambles: dict, counted):
    """The `mapInArrow` function: each contiguous run of lines from one file is one decoder
    stream, primed with the file's header lines (harmless where the run starts at the top of
    the file: the decoder skips a repeated header); out come the tagged lines. Lines cross into
    the plugin as the Arrow column's buffers, not one Python object each."""

    def run(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import SparkFiles

        scorer = _scorer(SparkFiles.get(bundle_name), options)
        current = None
        for rb in batches:
            n = rb.num_rows
            if n == 0:
                continue
            names = rb.column("file")
            blocks = rb.column("block").to_numpy()
            values = rb.column("value")
            changed = pc.not_equal(names.slice(1), names.slice(0, n - 1)).to_numpy(zero_copy_only=False)
            parts = []
            for s, e in split_runs(changed, blocks):
                key = (names[s].as_py(), int(blocks[s]))
                if key != current:
                    scorer.new_stream(preambles.get(file_key(key[0]), []))
                    current = key
                run_values = values.slice(s, e - s)
                offsets = np.frombuffer(run_values.buffers()[1], dtype=np.int32, count=e - s + 1, offset=4 * run_values.offset)
                data = run_values.buffers()[2]
                out_offsets, out_data = scorer.score_arrow(offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8))
                m = len(out_offsets) // 4 - 1
                lines = pa.Array.from_buffers(pa.binary(), m, [None, pa.py_buffer(out_offsets), pa.py_buffer(out_data)])
                parts.append(pa.RecordBatch.from_arrays([lines], names=["line"]))
                counted.add(m)
            for f in scorer.take_failures():
                print(f"flowtag score-batch: a batch could not be scored: {f}", file=sys.stderr)
            yield from parts

    return run


def score_batch(
    spark,
    *,
    bundle: str | Path,
    fmt: str,
    inputs: list[str],
    out: str,
    reasons: str = "anomalous",
    key: str = "anomaly",
    batch: int = 256,
    ordered: bool = False,
    compression: str | None = None,
) -> dict:
    """Tag every record of `inputs` with `bundle`; JSON lines into the folder `out` (Spark's
    part files; concatenated in name order, the inputs in input order when `ordered`, files by
    name). Returns figures of the run."""
    from pyspark.sql import functions as F

    bundle = Path(bundle).resolve()
    model_id = check_bundle(bundle, fmt, reasons, key, batch)
    options = (fmt, reasons, key, batch)
    shipped = _ship(spark, bundle)
    started = time.perf_counter()
    # `lineSep` "\n" as `flowtag score` splits (the decoder drops a trailing "\r"); the value as
    # raw bytes, not decoded text (CICIDS2017 writes Windows-1252).
    df = spark.read.option("lineSep", "\n").option("recursiveFileLookup", "true").text(list(inputs))
    files = sorted(df.inputFiles())
    preambles = {}
    if fmt in HEADER_FORMATS:
        for f in files:
            preambles[file_key(f)] = preamble(_read_head(spark, f, PREAMBLE_BYTES), fmt)
    rows = df.select(
        F.input_file_name().alias("file"),
        F.input_file_block_start().alias("block"),
        F.monotonically_increasing_id().alias("pos"),
        F.col("value").cast("binary").alias("value"),
    )
    if ordered:
        # The lines (not the tagged records) are put in input order: the range partitioning's
        # sample reads the input only, and the plugin scores each line once.
        n = max(1, df.rdd.getNumPartitions())
        rows = rows.repartitionByRange(n, "file", "block", "pos").sortWithinPartitions("file", "block", "pos")
    # Records written, counted by the tasks as they tag (a task Spark runs again after a failure
    # counts again: the figure is for the report, the output is what Spark committed).
    counted = spark.sparkContext.accumulator(0)
    tagged = rows.mapInArrow(_tag_partitions(shipped, options, preambles, counted), schema="line binary")
    writer = tagged.select(F.col("line").cast("string").alias("value")).write.mode("errorifexists")
    if compression:
        writer = writer.option("compression", compression)
    writer.text(str(out))
    seconds = time.perf_counter() - started
    return {"model": model_id, "files": len(files), "records": counted.value, "seconds": round(seconds, 3), "out": str(out)}


def part_files(out: str | Path) -> list[Path]:
    """The part files of an output folder, in order."""
    return sorted(p for p in Path(out).iterdir() if p.name.startswith("part-") and not p.name.endswith(".crc"))
