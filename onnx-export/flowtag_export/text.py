"""Text features (`type: "text"`, version 1): the Python twin of `plugin/src/text.rs`.

A request target (`path?query`) or a form body becomes a fixed block of float32 columns: ten
counts, keyword hits, hashed character n-grams of the normalised text and hashed tokens of the
request's pieces. `docs/bundle-format.md` ("Text features") states the rules; the golden fixtures
and `onnx-export/tests/test_text_parity.py` hold this code and the plugin to the same bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COUNTS = ["length", "digits", "letters", "special", "control", "non_ascii", "encoded", "params", "depth", "entropy"]

MAX_BYTES = 1 << 20
MAX_ROUNDS = 4
MAX_N = 8
MAX_BUCKETS = 1 << 16
MAX_TERM = 256

_HEX = b"0123456789abcdefABCDEF"
_SURROGATE = re.compile("[\ud800-\udfff]")
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
# A value's shape: digits to 0, ASCII letters to a, bytes past ASCII to u, the rest as they are.
_CLASS = bytes(
    ord("0") if chr(b).isdigit() and b < 128 else ord("a") if (65 <= b <= 90 or 97 <= b <= 122) else ord("u") if b >= 128 else b
    for b in range(256)
)


class TextSpecError(ValueError):
    """A `text` section that cannot be used; the message names the key under `text.`."""


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


@dataclass
class TextSpec:
    version: int = 1
    max_bytes: int = 8192
    decode_rounds: int = 2
    shape: str = "target"  # target | form
    ngrams: dict | None = None  # {"n": 3, "buckets": 1024}
    tokens: dict | None = None  # {"n": 3, "buckets": 4096}
    keywords: list[dict] = field(default_factory=list)  # [{"name": "sql", "terms": [...]}]

    @property
    def width(self) -> int:
        return len(COUNTS) + len(self.keywords) + (self.ngrams or {}).get("buckets", 0) + (self.tokens or {}).get("buckets", 0)

    def column_names(self, feature: str) -> list[str]:
        names = [f"{feature}.{c}" for c in COUNTS] + [f"{feature}.kw.{g['name']}" for g in self.keywords]
        names += [f"{feature}.ngram[{b}]" for b in range((self.ngrams or {}).get("buckets", 0))]
        names += [f"{feature}.token[{b}]" for b in range((self.tokens or {}).get("buckets", 0))]
        return names

    def to_manifest(self) -> dict:
        d: dict[str, Any] = {"version": self.version, "max_bytes": self.max_bytes, "decode_rounds": self.decode_rounds, "shape": self.shape}
        if self.ngrams:
            d["ngrams"] = dict(self.ngrams)
        if self.tokens:
            d["tokens"] = dict(self.tokens)
        d["keywords"] = [{"name": g["name"], "terms": list(g["terms"])} for g in self.keywords]
        return d

    @classmethod
    def from_manifest(cls, d: Any) -> "TextSpec":
        if not isinstance(d, dict):
            raise TextSpecError("(section): expected an object")
        known = {"version", "max_bytes", "decode_rounds", "shape", "ngrams", "tokens", "keywords"}
        for k in d:
            if k not in known:
                raise TextSpecError(f"{k}: unknown key")
        if "version" not in d:
            raise TextSpecError("version: missing")
        spec = cls(version=d["version"], max_bytes=d.get("max_bytes", 8192), decode_rounds=d.get("decode_rounds", 2), shape=d.get("shape", "target"),
                   ngrams=d.get("ngrams"), tokens=d.get("tokens"), keywords=list(d.get("keywords", [])))
        spec.check()
        return spec

    def check(self) -> None:
        if self.version != 1:
            raise TextSpecError(f"version: text features version {self.version} is not known here (1 is)")
        if not (isinstance(self.max_bytes, int) and 1 <= self.max_bytes <= MAX_BYTES):
            raise TextSpecError(f"max_bytes: expected 1 to {MAX_BYTES}, got {self.max_bytes}")
        if not (isinstance(self.decode_rounds, int) and 0 <= self.decode_rounds <= MAX_ROUNDS):
            raise TextSpecError(f"decode_rounds: expected 0 to {MAX_ROUNDS}, got {self.decode_rounds}")
        if self.shape not in ("target", "form"):
            raise TextSpecError(f"shape: {self.shape!r} is not target or form")
        for key in ("ngrams", "tokens"):
            h = getattr(self, key)
            if h is None:
                continue
            if set(h) != {"n", "buckets"}:
                raise TextSpecError(f"{key}: expected exactly n and buckets")
            if not 1 <= h["n"] <= MAX_N:
                raise TextSpecError(f"{key}.n: expected 1 to {MAX_N}, got {h['n']}")
            if not 1 <= h["buckets"] <= MAX_BUCKETS:
                raise TextSpecError(f"{key}.buckets: expected 1 to {MAX_BUCKETS}, got {h['buckets']}")
        for g, group in enumerate(self.keywords):
            if not group.get("terms"):
                raise TextSpecError(f"keywords[{g}].terms: expected at least one term")
            for t, term in enumerate(group["terms"]):
                if not 1 <= len(term.encode()) <= MAX_TERM:
                    raise TextSpecError(f"keywords[{g}].terms[{t}]: expected 1 to {MAX_TERM} bytes")


def value_bytes(value: Any) -> bytes:
    """The bytes a text feature reads from a record's value (as `spec.loads_record` returns it):
    a string's UTF-8 (a lone surrogate from a `\\u` escape is U+FFFD, as the plugin unescapes it),
    a number as written, `true`/`false`; `None` is empty."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", value).encode("utf-8")
    if isinstance(value, (int, float)):
        return str(value).encode()
    raise TypeError(type(value).__name__)


def _hex(b: int) -> int | None:
    return int(chr(b), 16) if b in _HEX else None


def decode(src: bytes, plus: bool, rounds: int) -> tuple[bytes, int]:
    """Percent-decode as the plugin does: up to `rounds` rounds (`%XX`, `%uXXXX`; `+` as a space in
    the first when `plus`), stopping after a round that changes nothing, then overlong two-byte
    UTF-8 folded to ASCII. Returns the bytes and how many escapes were decoded."""
    out = src
    decoded = 0
    for r in range(rounds):
        tmp = bytearray()
        changed = False
        i, n = 0, len(out)
        while i < n:
            b = out[i]
            if b == 0x25:  # %
                h = _hex(out[i + 1]) if i + 1 < n else None
                lo = _hex(out[i + 2]) if i + 2 < n else None
                if h is not None and lo is not None:
                    tmp.append(h << 4 | lo)
                    decoded += 1
                    changed = True
                    i += 3
                    continue
                if i + 1 < n and out[i + 1] in b"uU" and i + 6 <= n:
                    digits = out[i + 2:i + 6]
                    if all(c in _HEX for c in digits):
                        cp = int(digits, 16)
                        if not 0xD800 <= cp <= 0xDFFF:
                            tmp += chr(cp).encode("utf-8")
                            decoded += 1
                            changed = True
                            i += 6
                            continue
                tmp.append(b)
            elif b == 0x2B and plus and r == 0:  # +
                tmp.append(0x20)
                changed = True
            else:
                tmp.append(b)
            i += 1
        out = bytes(tmp)
        if not changed:
            break
    folded = bytearray()
    i, n = 0, len(out)
    while i < n:
        b = out[i]
        if b in (0xC0, 0xC1) and i + 1 < n and 0x80 <= out[i + 1] <= 0xBF:
            folded.append((b & 0x1F) << 6 | (out[i + 1] & 0x3F))
            decoded += 1
            i += 2
        else:
            folded.append(b)
            i += 1
    return bytes(folded), decoded


@dataclass
class Pieces:
    """A value split and decoded: the normalised text, the tokens (hashed bytes, what to show),
    and the counts the split gives."""

    norm: bytes
    tokens: list[tuple[bytes, bytes]]
    encoded: int
    params: int
    depth: int


def split(spec: TextSpec, value: bytes) -> Pieces:
    raw = value[:spec.max_bytes]
    rounds = spec.decode_rounds
    n = (spec.tokens or {}).get("n", 1)
    norm = bytearray()
    tokens: list[tuple[bytes, bytes]] = []
    encoded = params = depth = 0
    if spec.shape == "form":
        path, query = None, raw
    elif b"?" in raw:
        q = raw.index(b"?")
        path, query = raw[:q], raw[q + 1:]
    else:
        path, query = raw, None
    if path is not None:
        segs = path.split(b"/")
        for i, seg in enumerate(segs):
            if i > 0:
                norm += b"/"
            piece, k = decode(seg, False, rounds)
            encoded += k
            piece = piece.translate(_LOWER)
            norm += piece
            last = i == len(segs) - 1
            if seg:
                depth += 1
            if last or piece:
                # A segment with a digit (an id, a date) is known by its shape.
                known = piece.translate(_CLASS) if any(48 <= b <= 57 for b in piece) else piece
                tokens.append(((b"F" if last else b"P") + known, piece))
    if query is not None:
        if path is not None:
            norm += b"?"
        for i, part in enumerate(query.split(b"&")):
            if i > 0:
                norm += b"&"
            if not part:
                continue
            params += 1
            raw_name, eq, raw_value = part.partition(b"=")
            name, k = decode(raw_name, True, rounds)
            encoded += k
            name = name.translate(_LOWER)
            norm += name
            value_text = b""
            if eq:
                value_text, k = decode(raw_value, True, rounds)
                encoded += k
                norm += b"=" + value_text.translate(_LOWER)
            shown = name + b"=" + value_text
            tokens.append((b"K" + name, shown))
            tokens.append((b"L" + name + b":" + str(len(value_text).bit_length()).encode(), shown))
            shape = b"^" + value_text.translate(_CLASS) + b"$"
            for g in range(max(len(shape) - n, 0) + 1):
                tokens.append((b"V" + name + b":" + shape[g:g + n], shown))
    return Pieces(bytes(norm), tokens, encoded, params, depth)


def featurize(spec: TextSpec, value: bytes) -> np.ndarray:
    """One value's block: `spec.width` float32 columns."""
    out = np.zeros(spec.width, dtype=np.float64)
    p = split(spec, value)
    norm = p.norm
    histogram = [0] * 256
    for b in norm:
        histogram[b] += 1
    digits = sum(histogram[48:58])
    letters = sum(histogram[65:91]) + sum(histogram[97:123])
    printable = sum(histogram[0x20:0x7F])
    control = sum(histogram[0:0x20]) + histogram[0x7F]
    non_ascii = sum(histogram[0x80:])
    counts = [len(value), digits, letters, printable - digits - letters, control, non_ascii, p.encoded, p.params, p.depth]
    for i, c in enumerate(counts):
        out[i] = math.log1p(c)
    out[9] = entropy(histogram, len(norm))
    for g, group in enumerate(spec.keywords):
        hits = sum(norm.count(t.encode().translate(_LOWER)) for t in group["terms"])
        out[len(COUNTS) + g] = math.log1p(hits)
    base = len(COUNTS) + len(spec.keywords)
    if spec.ngrams:
        n, buckets = spec.ngrams["n"], spec.ngrams["buckets"]
        counts_ng = np.zeros(buckets)
        for i in range(len(norm) - n + 1):
            counts_ng[fnv1a32(norm[i:i + n]) % buckets] += 1
        out[base:base + buckets] = counts_ng
        base += buckets
    if spec.tokens:
        buckets = spec.tokens["buckets"]
        counts_tok = np.zeros(buckets)
        for hashed, _ in p.tokens:
            counts_tok[fnv1a32(hashed) % buckets] += 1
        out[base:base + buckets] = counts_tok
    hashed_from = len(COUNTS) + len(spec.keywords)
    for i in np.nonzero(out[hashed_from:])[0]:
        out[hashed_from + i] = math.log1p(out[hashed_from + i])
    return out.astype(np.float32)


def entropy(histogram: list[int], n: int) -> float:
    if n == 0:
        return 0.0
    h = 0.0
    for c in histogram:
        if c:
            p = c / n
            h -= p * math.log2(p)
    return h
