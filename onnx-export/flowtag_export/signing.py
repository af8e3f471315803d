"""Ed25519 signatures over `manifest.json` (which pins the model by its sha256).

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), as `openssl genpkey
-algorithm ed25519` writes them; `manifest.sig` holds the 64-byte signature in base64.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .bundle import MANIFEST, SIGNATURE


def keygen(private_path: str | os.PathLike, public_path: str | os.PathLike) -> None:
    key = Ed25519PrivateKey.generate()
    priv = Path(private_path)
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    priv.chmod(0o600)
    Path(public_path).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _private(path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not an unencrypted Ed25519 private key in PEM ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def _public(path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: not an Ed25519 public key in PEM ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def sign(bundle_dir: str | os.PathLike, private_key: str | os.PathLike) -> Path:
    d = Path(bundle_dir)
    signature = _private(private_key).sign((d / MANIFEST).read_bytes())
    out = d / SIGNATURE
    out.write_text(base64.b64encode(signature).decode() + "\n")
    return out


def verify(bundle_dir: str | os.PathLike, public_key: str | os.PathLike) -> None:
    """Raises ValueError when the bundle is unsigned or the signature does not match."""
    d = Path(bundle_dir)
    sig = d / SIGNATURE
    if not sig.exists():
        raise ValueError(f"{d}: no {SIGNATURE} (unsigned bundle)")
    try:
        _public(public_key).verify(base64.b64decode(sig.read_text().strip()), (d / MANIFEST).read_bytes())
    except InvalidSignature:
        raise ValueError(f"{d}: {SIGNATURE} does not match {MANIFEST} for this key") from None
