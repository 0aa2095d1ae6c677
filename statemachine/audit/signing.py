"""Ed25519 keys for the audit log's signed checkpoints.

The private key signs; only its holder can write a checkpoint the public key accepts, so a forger
who can rewrite the file (and recompute the hash chain) still cannot re-sign it. The key id (a
hash of the public key) is written in every checkpoint so keys can be rotated: the checker picks
the public key by id. Private key material never reaches a log, a repr or an error message.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import SigningKeyError

#: The environment variable `python -m statemachine demo` reads a PEM private key from.
ENV_VAR = "STATEMACHINE_AUDIT_SIGNING_KEY"
PRIVATE_NAME = "audit-signing-key.pem"
PUBLIC_NAME = "audit-signing-key.pub.pem"
#: Signed bytes start with this, so a checkpoint signature means nothing anywhere else.
DOMAIN = b"statemachine-audit-checkpoint\n"


def key_id(public: Ed25519PublicKey) -> str:
    """A short public name for a key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class SigningKey:
    """A private key and its id. Its repr shows the id only."""

    __slots__ = ("_private", "key_id")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.key_id = key_id(private.public_key())

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def sign(self, body: str) -> str:
        """The signature of a checkpoint's body text, as 128 hex digits."""
        return self._private.sign(DOMAIN + body.encode()).hex()

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            # The library's message names the format problem, never the key bytes.
            raise SigningKeyError(
                f"{source} is not an unencrypted PEM private key ({type(exc).__name__}): "
                "make one with `python -m statemachine keygen DIR`") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(
                f"{source} holds a {type(private).__name__}, not an Ed25519 key: make one with "
                "`python -m statemachine keygen DIR`")
        return cls(private)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SigningKey:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the signing key {os.fspath(path)!r}: {exc.strerror or exc}; check "
                "the path, or make a key with `python -m statemachine keygen DIR`") from exc
        return cls.from_pem(data, source=f"signing key file {os.fspath(path)!r}")

    @classmethod
    def from_env(cls, name: str = ENV_VAR) -> SigningKey:
        value = os.environ.get(name)
        if not value:
            raise SigningKeyError(
                f"environment variable {name} is not set: put the PEM text of a private key "
                "in it (from `python -m statemachine keygen DIR`)")
        return cls.from_pem(value.encode(), source=f"environment variable {name}")


def load_signing_key(key: SigningKey | str | os.PathLike[str]) -> SigningKey:
    """A SigningKey as given, or read from a file path."""
    return key if isinstance(key, SigningKey) else SigningKey.from_file(key)


def load_public_key(path: str | os.PathLike[str]) -> tuple[str, Ed25519PublicKey]:
    """(key id, key) from a PEM public key file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the public key {os.fspath(path)!r}: "
                              f"{exc.strerror or exc}") from exc
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{os.fspath(path)!r} is not a PEM public key: give the "
                              f"{PUBLIC_NAME} that keygen wrote") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise SigningKeyError(f"{os.fspath(path)!r} holds a {type(public).__name__}, not an "
                              "Ed25519 public key")
    return key_id(public), public


def verify(public: Ed25519PublicKey, body: str, signature_hex: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature_hex), DOMAIN + body.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def keygen(directory: str | os.PathLike[str], *, force: bool = False,
           ) -> tuple[Path, Path, str]:
    """Write a new key pair into `directory` (created if missing; private file mode 0600).
    An existing pair is replaced only with `force`. Returns (private path, public path, key
    id). A place that cannot hold the keys is an `OutputError` (an `OSError`)."""
    from .. import outputs

    folder = Path(directory)
    outputs.new_folder(folder)
    private_path, public_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    for existing in (private_path, public_path):
        if existing.exists() and not force:
            raise SigningKeyError(f"{existing} already exists: keygen never overwrites a key "
                                  "unless given --force; choose another directory (keep the "
                                  "old public key to verify old logs)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key()
    try:
        if force:
            for existing in (private_path, public_path):
                existing.unlink(missing_ok=True)
        # O_EXCL with mode 0600 from the start: the key is never readable by others, not even
        # briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    except OSError as exc:
        raise outputs.failed(private_path, exc) from exc
    outputs.write(public_path, public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, key_id(public)
