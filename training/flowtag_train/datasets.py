"""Loading flow datasets, driven by schema files (`flowtag_train/schemas/*.json`).

A schema names a dataset's files, its label column and normal label, its attack-family column,
its categorical columns, the columns to drop (identifiers, leaks), the optional "leaky" ones
(reported both ways), pure-noise ones, renames that make variants of one dataset share names,
and aliases written into bundles so the plugin reads the other variants' field names. A new
dataset is a new schema file, not new code.

Every file is read as text, as a node's logs are: a UTF-8 byte-order mark is dropped, a file that
is not UTF-8 is read as Windows-1252 (CICIDS2017's labels), header names are trimmed (CICIDS2017
writes `" Flow Duration"`), a repeated name gets `.1` (CICIDS2017 repeats `Fwd Header Length`),
CRLF line endings are fine, and values stay strings until the feature spec reads them with the
plugin's rules (`Infinity`, `NaN`, `-`, empty). A `.jsonl` file (or a `json` schema) is read as
JSON lines, as flowtag's file sink archives records at the edge: the tags it added are left out,
so a node's archive is training data like the dataset it came from.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMAS = Path(__file__).parent / "schemas"


def datasets_root() -> Path:
    """`FLOWTAG_DATASETS`, else `../shared/datasets` beside the repository."""
    env = os.environ.get("FLOWTAG_DATASETS")
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets").resolve()


@dataclass
class Schema:
    name: str
    description: str = ""
    format: str = "csv"
    files: list[str] = field(default_factory=list)
    columns: list[str] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    label: dict | None = None
    family: str | None = None
    categorical: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    leaky: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    category_fill: dict[str, str] = field(default_factory=dict)
    shape: list[str] = field(default_factory=list)
    """Columns that describe a flow without its timing (protocol, packets and bytes each way, ...):
    `flowtag-train overlap` counts test rows whose shape a training row of the other class shares."""

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "Schema":
        p = Path(name_or_path)
        if not p.exists():
            p = SCHEMAS / f"{name_or_path}.json"
        if not p.exists():
            known = ", ".join(sorted(s.stem for s in SCHEMAS.glob("*.json")))
            raise FileNotFoundError(f"no dataset schema {name_or_path!r} (known: {known}; or give a path to a schema file)")
        d = json.loads(p.read_text())
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{p}: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass
class Dataset:
    schema: Schema
    frame: pd.DataFrame
    """All columns as strings, after renames; feature selection happens in the feature spec."""
    y: np.ndarray | None
    """1 = attack, 0 = normal."""
    family: np.ndarray | None
    files: list[dict]
    """Each file read: path, rows, sha256."""

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, rows: np.ndarray) -> "Dataset":
        """These rows only (positions), labels and families alongside."""
        rows = np.asarray(rows, dtype=np.int64)
        return Dataset(
            schema=self.schema, frame=self.frame.iloc[rows].reset_index(drop=True), y=None if self.y is None else self.y[rows],
            family=None if self.family is None else self.family[rows], files=self.files,
        )

    def sample(self, limit: int, seed: int) -> "Dataset":
        """A random sample of `limit` rows, stratified by family (else label), in file order."""
        if limit >= len(self.frame):
            return self
        rng = np.random.default_rng(seed)
        strata = self.family if self.family is not None else (self.y if self.y is not None else np.zeros(len(self.frame)))
        keep = []
        for s in pd.unique(strata):
            idx = np.flatnonzero(strata == s)
            take = max(1, int(round(limit * len(idx) / len(self.frame))))
            keep.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
        return self.take(np.sort(np.concatenate(keep)))

    def without(self, rows: np.ndarray) -> "Dataset":
        """Every row but these (positions)."""
        keep = np.ones(len(self.frame), dtype=bool)
        keep[np.asarray(rows, dtype=np.int64)] = False
        return self.take(np.flatnonzero(keep))

    def summary(self) -> dict:
        s = {"rows": len(self.frame), "columns": len(self.frame.columns), "files": self.files}
        if self.y is not None:
            s["attacks"] = int(self.y.sum())
            s["normal"] = int(len(self.y) - self.y.sum())
        if self.family is not None:
            s["families"] = {str(k): int(v) for k, v in pd.Series(self.family).value_counts().items()}
        return s


def decode_text(raw: bytes) -> str:
    """UTF-8 (without BOM), else Windows-1252."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def normalize_family(s: str) -> str:
    """One spelling per attack family: dashes of any encoding as `-` (including cp1252's 0x96
    that went through Latin-1 into UTF-8 as U+0096), spaces collapsed."""
    s = "".join(bytes([ord(c)]).decode("cp1252", errors="replace") if 0x80 <= ord(c) <= 0x9F else c for c in s)
    s = s.replace("\u2013", "-").replace("\u2014", "-").replace("\ufffd", "-")
    return re.sub(r"\s+", " ", s).strip()


def _looks_like_header(fields: list[str]) -> bool:
    def numeric_or_ip(v: str) -> bool:
        v = v.strip()
        return bool(re.fullmatch(r"[+-]?[0-9.eE+-]+|[0-9a-fA-F:.]+", v)) and any(ch.isdigit() for ch in v)

    return not any(numeric_or_ip(f) for f in fields)


@dataclass
class CsvLayout:
    """How a CSV file's lines read: its header line as written (None when the file has none)
    and the column names."""

    header: str | None
    columns: list[str]


def csv_layout(first_line: str, schema: Schema, where: str = "") -> CsvLayout:
    """From a file's first non-blank line: header names trimmed (CICIDS2017 writes
    `" Flow Duration"`), a repeated name given `.1`, `.2`... (CICIDS2017 repeats
    `Fwd Header Length`), as the host's `csv` decoder does; a file without a header takes the
    schema's column list."""
    first = first_line.lstrip("\ufeff").rstrip("\r")
    fields = next(csv.reader([first]), [])
    if not _looks_like_header(fields):
        if not schema.columns:
            raise ValueError(f"{where}: no header line, and schema {schema.name!r} lists no columns")
        return CsvLayout(None, list(schema.columns))
    names = [f.strip() for f in fields]
    if schema.name.startswith("unsw"):
        # The published raw header writes `ct_src_ ltm`.
        names = [re.sub(r"\s+", "", c) for c in names]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}.{k}")
    return CsvLayout(first, out)


def parse_csv_lines(lines: list[str], layout: CsvLayout) -> pd.DataFrame:
    """Records of CSV lines (any slice of a file, in order), every value a string. Blank lines
    and lines equal to the header (files concatenated) are skipped, as the host's decoder skips
    them. Both preparation engines read CSV through this function: pandas a whole file, Spark a
    split of one."""
    header = layout.header
    keep = [ln for ln in lines if ln.strip() and ln.lstrip("\ufeff").rstrip("\r") != header]
    if not keep:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in layout.columns})
    return pd.read_csv(
        io.StringIO("\n".join(keep)),
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        header=None,
        names=layout.columns,
        index_col=False,
        skipinitialspace=False,
        low_memory=False,
    )


def read_csv(path: Path, schema: Schema) -> pd.DataFrame:
    lines = decode_text(read_bytes(path)).split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    return parse_csv_lines(lines, csv_layout(first, schema, str(path)))


@dataclass
class ZeekLayout:
    """A Zeek TSV log's directives so far (`#separator`, `#unset_field`, `#empty_field`, `#fields`)."""

    sep: str = "\t"
    unset: str = "-"
    empty: str = "(empty)"
    fields: list[str] | None = None

    def directive(self, line: str) -> None:
        s = line.lstrip()
        name, _, value = s[1:].partition(" " if s.startswith("#separator") else self.sep)
        value = value.rstrip("\r")
        if name == "separator":
            self.sep = bytes(value.strip(), "ascii").decode("unicode_escape")
        elif name == "unset_field":
            self.unset = value
        elif name == "empty_field":
            self.empty = value
        elif name == "fields":
            self.fields = value.split(self.sep)


def is_zeek_json(lines: list[str]) -> bool:
    first = next((ln for ln in lines if ln.strip()), "")
    return first.lstrip("\ufeff").lstrip().startswith("{")


def parse_zeek_lines(lines: list[str], layout: ZeekLayout, where: str = "") -> pd.DataFrame:
    """Records of Zeek TSV lines (any slice of a log, `layout` primed with the directives
    before it). An unset field is None, as the plugin sees it; `(empty)` is an empty string."""
    rows = []
    for ln in lines:
        if not ln.strip():
            continue
        if ln.lstrip("\ufeff").lstrip().startswith("#"):
            layout.directive(ln.lstrip("\ufeff"))
            continue
        if layout.fields is None:
            raise ValueError(f"{where}: a data line before the #fields line")
        values = ln.rstrip("\r").split(layout.sep)
        rows.append([None if v == layout.unset else "" if v == layout.empty else v for v in values])
    if layout.fields is None:
        return pd.DataFrame()
    return pd.DataFrame(rows, columns=layout.fields, dtype=object)


def read_zeek(path: Path) -> pd.DataFrame:
    """A Zeek log, TSV with `#fields` or JSON lines. An unset field (`-` in TSV, absent in JSON)
    is None, as the plugin sees it (absent: the feature's fill); `(empty)` is an empty string."""
    lines = decode_text(read_bytes(path)).split("\n")
    if is_zeek_json(lines):
        return parse_json_lines(lines, str(path), nested="text")
    return parse_zeek_lines(lines, ZeekLayout(), str(path))


#: What `read_json_lines` puts in place of a nested value (an object or array) when asked to mark them.
NESTED = object()


def parse_json_lines(lines: list[str], where: str = "", first: int = 1, nested: str = "drop") -> pd.DataFrame:
    """Records of JSON lines (what flowtag's file sink archives; any slice of a file, `first`
    the number of its first line): scalars as the text a CSV would hold, an absent member as
    None. Nested values (the tags of a tagged archive) are left out (`nested="drop"`), kept as
    `NESTED` (`"mark"`), or written as text, a list joined by commas (`"text"`, Zeek's JSON)."""
    rows = []
    for n, line in enumerate(lines, first):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}:{n}: not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}:{n}: not a JSON object")
        row = {}
        for k, v in obj.items():
            if v is None:
                row[k] = None
            elif not isinstance(v, (dict, list)) or nested == "text":
                row[k] = _zeek_json_text(v)
            elif nested == "mark":
                row[k] = NESTED
        rows.append(row)
    frame = pd.DataFrame(rows, dtype=object)
    return frame.replace({np.nan: None}) if nested == "text" else frame


def read_json_lines(path: Path, mark_nested: bool = False) -> pd.DataFrame:
    """JSON lines (what flowtag's file sink archives): see `parse_json_lines`."""
    return parse_json_lines(decode_text(read_bytes(path)).split("\n"), str(path), nested="mark" if mark_nested else "drop")


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a `.gz` file (a rotated archive) decompressed."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix.lower() == ".gz" else data


def is_json_lines(path: Path, schema: Schema) -> bool:
    """JSON lines by the schema, or by the name (`.jsonl`, `.ndjson`, `.json`, each maybe `.gz`)."""
    name = path.name.lower().removesuffix(".gz")
    return schema.format == "json" or name.endswith((".jsonl", ".ndjson", ".json"))


def _zeek_json_text(v) -> str:
    """A JSON value as the text a CSV would hold (numbers exactly, lists joined by commas)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return v if isinstance(v, str) else repr(v)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_files(schema: Schema, files: list[str] | None = None, root: Path | None = None) -> list[Path]:
    root = root or datasets_root()
    out: list[Path] = []
    for pattern in files or schema.files:
        p = Path(pattern)
        # A path the caller gives is taken as it is (relative to the working directory) when it
        # matches; schema paths are relative to the datasets folder.
        matches = sorted(glob.glob(str(p))) if files else []
        if not matches and not p.is_absolute():
            matches = sorted(glob.glob(str(root / p)))
        if not matches:
            raise FileNotFoundError(f"no file matches {pattern!r} under {root} (set FLOWTAG_DATASETS to the datasets folder)")
        for m in map(Path, matches):
            # A folder (an archive partitioned by day and node) stands for the files under it.
            out += sorted(f for f in m.rglob("*") if f.is_file() and not f.name.startswith((".", "_"))) if m.is_dir() else [m]
    return out


def labels(frame: pd.DataFrame, schema: Schema) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(y, family) of a frame's rows: 1 for an attack (a label not among the schema's normal
    values, after trimming), 0 for normal; the attack family in one spelling, `Normal` for normal
    rows and `Unknown` for an attack without one. Both preparation engines label through this."""
    y = family = None
    if schema.label:
        col = schema.label["column"]
        if col not in frame.columns:
            raise ValueError(f"schema {schema.name}: label column {col!r} is not in the data (columns: {list(frame.columns)[:8]}...)")
        normal = {str(v) for v in schema.label["normal"]}
        y = (~frame[col].str.strip().isin(normal)).to_numpy(dtype=np.int64)
    if schema.family and schema.family in frame.columns:
        family = frame[schema.family].map(lambda v: "" if v is None else normalize_family(v)).to_numpy(dtype=object)
        if y is not None:
            family = np.where(y == 0, "Normal", np.where(family == "", "Unknown", family))
    return y, family


def load(schema: Schema | str, files: list[str] | None = None, root: Path | None = None, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load a dataset's files into one frame (the columns every file has), with labels.

    `limit` keeps a random sample of that many rows (stratified by family when there is one):
    small real subsets for smoke tests and pipeline tests.
    """
    if isinstance(schema, str) and schema.startswith("flows_portable") and not files:
        from .portable import load_portable  # it loads datasets through this function

        return load_portable(schema, limit=limit, seed=seed)
    if isinstance(schema, str):
        schema = Schema.load(schema)
    frames, info = [], []
    for path in resolve_files(schema, files, root):
        if is_json_lines(path, schema):
            frame = read_json_lines(path)
        elif schema.format == "zeek":
            frame = read_zeek(path)
        else:
            frame = read_csv(path, schema)
        frame = frame.rename(columns=schema.rename)
        frames.append(frame)
        info.append({"path": str(path), "rows": len(frame), "sha256": _sha256(path)})
    common = [c for c in frames[0].columns if all(c in f.columns for f in frames)]
    frame = pd.concat([f[common] for f in frames], ignore_index=True)
    y, family = labels(frame, schema)
    ds = Dataset(schema=schema, frame=frame, y=y, family=family, files=info)
    return ds.sample(limit, seed) if limit is not None else ds
