"""Writing and reading model bundles: a directory or a `.tar` holding `model.onnx`,
`manifest.json` and, when signed, `manifest.sig`."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .manifest import sha256, validate

MODEL = "model.onnx"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


@dataclass
class Bundle:
    manifest: dict
    manifest_bytes: bytes
    model_bytes: bytes
    signature: bytes | None = None


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=1, allow_nan=False) + "\n").encode()


def write(directory: str | os.PathLike, model_bytes: bytes, manifest: dict) -> Path:
    """Write a bundle directory; files are written to temporary names and renamed, so a
    watcher never sees a half-written bundle."""
    validate(manifest)
    if manifest["model_sha256"] != sha256(model_bytes):
        raise ValueError("model_sha256 does not match the model")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in ((MODEL, model_bytes), (MANIFEST, manifest_bytes(manifest))):
        tmp = d / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(d / name)
    stale = d / SIGNATURE
    if stale.exists():
        stale.unlink()
    return d


def to_tar(directory: str | os.PathLike, tar_path: str | os.PathLike) -> Path:
    """Pack a bundle directory into an uncompressed tar with files at its root."""
    d, out = Path(directory), Path(tar_path)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in (MODEL, MANIFEST, SIGNATURE):
            p = d / name
            if p.exists():
                info = tarfile.TarInfo(name)
                data = p.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def read(path: str | os.PathLike) -> Bundle:
    p = Path(path)
    if p.is_dir():
        files = {n: (p / n).read_bytes() for n in (MODEL, MANIFEST, SIGNATURE) if (p / n).exists()}
    else:
        files = {}
        with tarfile.open(p, "r") as tar:
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                if m.isfile() and base in (MODEL, MANIFEST, SIGNATURE):
                    files[base] = tar.extractfile(m).read()
    for need in (MODEL, MANIFEST):
        if need not in files:
            raise FileNotFoundError(f"{path}: bundle has no {need}")
    manifest = json.loads(files[MANIFEST])
    return Bundle(manifest, files[MANIFEST], files[MODEL], files.get(SIGNATURE))
