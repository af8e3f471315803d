"""`flowtag-train`: training runs, the shipped default bundles, run comparison, aliases.

    flowtag-train check-data --dataset unsw_nb15
    flowtag-train train --dataset unsw_nb15 --model gradient_boosting --name unsw-supervised
    flowtag-train train --dataset unsw_nb15 --model autoencoder --holdout-family Exploits --name ae-heldout
    flowtag-train defaults --out models            # the shipped bundles, reproducibly (seeded)
    flowtag-train web --out models                 # the web bundles (web-site, web-attacks) and every candidate's MLflow run
    flowtag-train compare --metric roc_auc --metric f1
    flowtag-train evaluate --bundle models/unsw-supervised --dataset unsw_nb15_raw   # on other data
    flowtag-train overlap --bundle models/unsw-supervised   # its errors: flows shaped like the other class
    flowtag-train promote --name unsw-supervised --version 3 --alias champion
    flowtag-train retrain --config '{"name": "unsw-supervised", "limit": 20000}'
    flowtag-train baseline --format netflow --input archive.jsonl --out bundles/site-a   # from local records
    flowtag-train prepare --engine spark --dataset unsw_nb15 --input archive/ --out build/prepared/unsw
    flowtag-train train --prepared build/prepared/unsw --model gradient_boosting --name unsw-supervised --limit 200000
    flowtag-train score-batch --bundle models/unsw-supervised --format unsw --input archive/ --out build/scored

The datasets folder is `FLOWTAG_DATASETS` (default `../shared/datasets`); the MLflow tracking URI
is `--tracking-uri`, `MLFLOW_TRACKING_URI`, or a sqlite store in `.mlflow/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from flowtag_export import bundle as bundle_io
from flowtag_export import parity

from . import baseline, defaults, models, overlap, pipeline, retrain, tracking
from .datasets import Schema, load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flowtag-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=None)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check-data", help="load a dataset and print rows, label balance and families")
    c.add_argument("--dataset", required=True)
    c.add_argument("--file", action="append", help="files instead of the schema's (repeatable)")

    t = sub.add_parser("train", help="one training run: bundle, report, MLflow run")
    t.add_argument("--dataset", required=True, help="a schema name (unsw_nb15, cicids2017, ...) or a schema file")
    t.add_argument("--model", required=True, choices=list(models.KINDS))
    t.add_argument("--name", required=True, help="bundle and registered model name")
    t.add_argument("--version", default="1")
    t.add_argument("--file", action="append")
    t.add_argument("--no-leaky", action="store_true", help="leave out the schema's leaky features (UNSW-NB15's TTLs)")
    t.add_argument("--seed", type=int, default=20261121)
    t.add_argument("--target-fpr", type=float, default=0.01)
    t.add_argument("--holdout-family")
    t.add_argument("--limit", type=int, help="train on a random sample of this many rows (with --prepared: a stratified sample Spark draws)")
    t.add_argument("--prepared", help="a folder `prepare` wrote: train on its rows and splits instead of the dataset's files")
    t.add_argument("--param", action="append", default=[], help="model parameter as key=JSON (repeatable)")
    t.add_argument("--out", default="build/bundles")
    t.add_argument("--experiment", default="flowtag")
    t.add_argument("--register", action="store_true", help="register the bundle in the MLflow registry")
    t.add_argument("--alias", default="challenger")
    t.add_argument("--no-mlflow", action="store_true")

    w = sub.add_parser("web", help="train and compare the web models (per-site anomaly, attack classifiers); write web-site and web-attacks")
    w.add_argument("--out", default="models")
    w.add_argument("--quick", action="store_true", help="smaller searches and samples (for tests)")
    w.add_argument("--no-mlflow", action="store_true")
    w.add_argument("--only", choices=["site", "attacks"], action="append", help="train only this family (repeatable); the others' figures are kept")

    d = sub.add_parser("defaults", help="train the shipped default bundles into a folder (seeded, reproducible)")
    d.add_argument("--out", default="models")
    d.add_argument("--no-mlflow", action="store_true")
    d.add_argument("--only", action="append", default=None, metavar="RUN",
                   help="retrain only this run (repeatable; `cross` for the cross-dataset runs); the others keep their figures")

    cmp_ = sub.add_parser("compare", help="runs of an experiment side by side")
    cmp_.add_argument("--experiment", default="flowtag")
    cmp_.add_argument("--metric", action="append", default=None)
    cmp_.add_argument("--limit", type=int, default=20)

    ev = sub.add_parser("evaluate", help="bundles' metrics on every row of a labelled dataset, as the bundles score it (threshold included)")
    ev.add_argument("--bundle", action="append", required=True, help="a bundle folder (repeatable)")
    ev.add_argument("--dataset", required=True, help="a schema name or a schema file")
    ev.add_argument("--file", action="append", help="files instead of the schema's (repeatable)")

    ov = sub.add_parser("overlap", help="a bundle's test split: rows shaped like training rows of the other class, and its errors among them")
    ov.add_argument("--bundle", required=True, help="a bundle folder; its manifest names the dataset and split")
    ov.add_argument("--shape", help="comma-separated columns (default: the dataset schema's `shape`)")
    ov.add_argument("--file", action="append", help="files instead of the schema's (repeatable)")
    ov.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")

    par = sub.add_parser("parity", help="onnxruntime vs `flowtag score` on real rows of a bundle's dataset")
    par.add_argument("--bundle", required=True, help="a bundle folder; its manifest names the schema")
    par.add_argument("--data", required=True, help="a file of records in the bundle's schema")
    par.add_argument("--rows", type=int, default=10000)
    par.add_argument("--flowtag", default=None, help="the flowtag binary (default: target/release/flowtag)")

    pr = sub.add_parser("promote", help="point an alias (champion) at a registered version")
    pr.add_argument("--name", required=True)
    pr.add_argument("--version", required=True)
    pr.add_argument("--alias", default="champion")

    rt = sub.add_parser("retrain", help="check data, train candidates, gate against the champion, publish (what the Airflow DAG runs)")
    rt.add_argument("--config", default="{}", help="retrain settings as JSON (see flowtag_train.retrain.RetrainConfig)")

    bl = sub.add_parser("baseline", help="an unsupervised bundle learned from a network's own records (no labels, no schema file)")
    bl.add_argument("--format", required=True, choices=sorted(baseline.FORMATS) + ["combined", "json_access"],
                    help="combined and json_access: web access logs, read by `flowtag decode`, for a per-site token-novelty model")
    bl.add_argument("--input", required=True, nargs="+", help="record files (CSV with a header, JSON lines, Zeek logs)")
    bl.add_argument("--out", required=True, help="the bundle folder to write")
    bl.add_argument("--model", default="autoencoder", choices=sorted(models.UNSUPERVISED))
    bl.add_argument("--name", default=None, help="the bundle's name (default: the --out folder's name)")
    bl.add_argument("--version", default="1")
    bl.add_argument("--target-fpr", type=float, default=0.01, help="share of held-back local records flagged")
    bl.add_argument("--holdout", type=float, default=0.2, help="share of (normal) records held back for the threshold")
    bl.add_argument("--trim", type=float, default=0.01, help="share of training records that score highest, set aside before the final fit")
    bl.add_argument("--drop", nargs="*", default=[], help="columns to leave out besides those left out by name and value")
    bl.add_argument("--label", default=None, help="a label column: train on --normal rows only, print figures on the rest")
    bl.add_argument("--normal", nargs="*", default=[], help="the label's normal values")
    bl.add_argument("--limit", type=int, default=None, help="use a random sample of this many records")
    bl.add_argument("--seed", type=int, default=20261205)
    bl.add_argument("--private-key", default=None, help="Ed25519 private key (PEM) to sign the bundle with")
    bl.add_argument("--param", action="append", default=[], help="model parameter KEY=JSON, e.g. epochs=50")

    pp = sub.add_parser("prepare", help="a dataset's files (or archives) to Parquet with labels, keys and splits, on pandas or Spark")
    pp.add_argument("--engine", choices=["pandas", "spark"], default="pandas")
    pp.add_argument("--dataset", required=True, help="the schema (unsw_nb15, cicids2017, zeek_conn, ...) the files follow")
    pp.add_argument("--input", nargs="+", default=None, help="files, globs or folders (default: the schema's files); Spark also reads s3a://, hdfs://...")
    pp.add_argument("--out", required=True, help="a new folder for the Parquet output")
    pp.add_argument("--eval-buckets", type=int, default=5, help="1 in N row groups form the fixed evaluation set (retraining's default is 5)")
    pp.add_argument("--valid", type=float, default=0.2)
    pp.add_argument("--test", type=float, default=0.2)
    pp.add_argument("--master", default=None, help="Spark master (default FLOWTAG_SPARK_MASTER, else local[2])")

    sb = sub.add_parser("score-batch", help="tag archived records with a bundle on Spark, byte for byte as `flowtag score` would")
    sb.add_argument("--engine", choices=["spark"], default="spark")
    sb.add_argument("--bundle", required=True, help="a bundle folder or .tar")
    sb.add_argument("--format", required=True, help="as `flowtag score --format`: json, csv, unsw, cicflowmeter, zeek, combined, json_access")
    sb.add_argument("--input", required=True, nargs="+", help="files, globs or folders (Spark reads local paths, s3a://, hdfs://...)")
    sb.add_argument("--out", required=True, help="a new folder for the JSON-lines output (Spark part files)")
    sb.add_argument("--reasons", default="anomalous", choices=["anomalous", "all", "none"])
    sb.add_argument("--key", default="anomaly", help="the member the tags go under")
    sb.add_argument("--ordered", action="store_true", help="part files in input order (files by name, lines as in each file): one shuffle of the input")
    sb.add_argument("--compression", default=None, help="gzip, zstd...: compress the part files")
    sb.add_argument("--master", default=None, help="Spark master (default FLOWTAG_SPARK_MASTER, else local[2])")

    a = p.parse_args(argv)
    if a.cmd == "check-data":
        print(json.dumps(load(a.dataset, files=a.file).summary(), indent=2))
    elif a.cmd == "train":
        cfg = pipeline.TrainConfig(
            dataset=a.dataset, model=a.model, name=a.name, version=a.version, files=a.file, use_leaky=not a.no_leaky,
            seed=a.seed, target_fpr=a.target_fpr, holdout_family=a.holdout_family, limit=a.limit, params=params(a.param), out=a.out,
            experiment=a.experiment, register=a.register, alias=a.alias, tracking_uri=a.tracking_uri, log_to_mlflow=not a.no_mlflow,
            prepared=a.prepared,
        )
        r = pipeline.train(cfg)
        print(json.dumps(r.to_dict(), indent=2, default=str))
    elif a.cmd == "prepare":
        from .prepare import Shares, prepare

        shares = Shares(eval_buckets=a.eval_buckets, valid=a.valid, test=a.test)
        try:
            print(json.dumps(prepare(engine=a.engine, dataset=a.dataset, inputs=a.input, out=a.out, shares=shares, master=a.master), indent=2))
        except (ValueError, FileExistsError, FileNotFoundError) as e:
            print(f"flowtag-train prepare: {e}", file=sys.stderr)
            return 2
    elif a.cmd == "score-batch":
        from . import spark as spark_mod

        try:
            # The bundle and options are checked before Spark starts.
            spark_mod.check_bundle(a.bundle, a.format, a.reasons, a.key)
            if Path(a.out).exists() and any(Path(a.out).iterdir()):
                raise FileExistsError(f"{a.out} exists and is not empty: score-batch writes a new folder")
        except (ValueError, FileExistsError) as e:
            print(f"flowtag-train score-batch: {e}", file=sys.stderr)
            return 2
        session = spark_mod.session(a.master, app="flowtag-score-batch")
        try:
            done = spark_mod.score_batch(session, bundle=a.bundle, fmt=a.format, inputs=a.input, out=a.out, reasons=a.reasons, key=a.key,
                                         ordered=a.ordered, compression=a.compression)
        finally:
            session.stop()
        print(json.dumps(done, indent=2))
    elif a.cmd == "web":
        from . import web

        web.build(a.out, tracking_uri=a.tracking_uri, log_to_mlflow=not a.no_mlflow, quick=a.quick, families=tuple(a.only or ("site", "attacks")))
    elif a.cmd == "defaults":
        try:
            defaults.build_all(a.out, tracking_uri=a.tracking_uri, log_to_mlflow=not a.no_mlflow, only=a.only)
        except ValueError as e:
            print(f"flowtag-train defaults: {e}", file=sys.stderr)
            return 2
    elif a.cmd == "compare":
        metrics = a.metric or ["roc_auc", "pr_auc", "f1", "fpr", "detection_at_fpr_1e-3"]
        rows = tracking.compare(a.experiment, metrics, uri=a.tracking_uri, limit=a.limit)
        if not rows:
            print(f"no runs in experiment {a.experiment!r}")
            return 1
        cols = list(rows[0])
        print(" | ".join(cols))
        for r in rows:
            print(" | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    elif a.cmd == "retrain":
        settings = json.loads(a.config)
        settings.setdefault("tracking_uri", a.tracking_uri)
        result = retrain.run(settings)
        print(json.dumps(result, indent=2, default=str))
    elif a.cmd == "evaluate":
        ds = load(a.dataset, files=a.file)
        if ds.y is None:
            print(f"flowtag-train evaluate: dataset {a.dataset!r} has no labels to evaluate against", file=sys.stderr)
            return 2
        try:
            results = {b: retrain.score_bundle(Path(b), ds, by_family=True) for b in a.bundle}
        except ValueError as e:
            print(f"flowtag-train evaluate: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"dataset": a.dataset, "files": ds.files, "bundles": results}, indent=2))
    elif a.cmd == "overlap":
        shape = [c.strip() for c in a.shape.split(",") if c.strip()] if a.shape else None
        try:
            result = overlap.for_bundle(Path(a.bundle), shape=shape, files=a.file)
        except (ValueError, FileNotFoundError) as e:
            print(f"flowtag-train overlap: {e}", file=sys.stderr)
            return 2
        print(json.dumps(result, indent=2) if a.json else overlap.markdown(result))
    elif a.cmd == "parity":
        result = parity_on_file(Path(a.bundle), a.data, a.rows, a.flowtag)
        print(json.dumps(result, indent=2))
        return 0 if result["max_relative_diff"] <= parity.TOLERANCE and result["unscored"] == 0 else 1
    elif a.cmd == "baseline" and a.format in ("combined", "json_access"):
        from . import web

        exe = tracking.REPO / "target" / "release" / "flowtag"
        try:
            records = web.decode_logs(a.input, a.format, exe)
            out = web.baseline(records, a.out, a.name or Path(a.out).name, version=a.version, target_fpr=a.target_fpr, holdout=a.holdout, seed=a.seed)
        except (ValueError, RuntimeError, FileNotFoundError) as e:
            print(f"flowtag-train baseline: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"bundle": str(out), "requests": len(records)}))
    elif a.cmd == "baseline":
        if a.label and not a.normal:
            print("flowtag-train baseline: --label needs --normal VALUE...", file=sys.stderr)
            return 2
        cfg = baseline.BaselineConfig(
            format=a.format, inputs=a.input, out=a.out, model=a.model, name=a.name, version=a.version, target_fpr=a.target_fpr,
            holdout=a.holdout, trim=a.trim, drop=a.drop, label=a.label, normal=a.normal, limit=a.limit, seed=a.seed,
            private_key=a.private_key, params=params(a.param),
        )
        try:
            r = baseline.baseline(cfg)
        except (ValueError, FileNotFoundError) as e:
            print(f"flowtag-train baseline: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"bundle": str(r.bundle_dir), "features": r.features, "left_out": r.left_out, "metrics": r.metrics}, indent=2))
    elif a.cmd == "promote":
        tracking.set_alias(a.name, a.alias, a.version, uri=a.tracking_uri)
        print(f"{a.name}@{a.alias} -> version {a.version}")
    return 0


def params(pairs: list[str]) -> dict:
    """`--param KEY=JSON` pairs."""
    out = {}
    for kv in pairs:
        k, _, v = kv.partition("=")
        out[k] = json.loads(v)
    return out


def parity_on_file(bundle: Path, data: str, rows: int, flowtag: str | None) -> dict:
    """The first `rows` records of `data`, read by the bundle's schema's loader, scored by
    onnxruntime and by `flowtag score` (see `flowtag_export.parity`)."""
    b = bundle_io.read(bundle)
    schema = Schema.load(b.manifest["schema"])
    frame = load(schema, files=[data]).frame.iloc[:rows]
    fmt = {"unsw_nb15": "unsw", "unsw_nb15_raw": "unsw", "cicids2017": "cicflowmeter", "zeek_conn": "zeek"}.get(schema.name, "csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        frame.to_csv(path, index=False)
        return parity.compare(bundle, frame, path, fmt, Path(flowtag or parity.REPO / "target/release/flowtag"))


if __name__ == "__main__":
    sys.exit(main())
