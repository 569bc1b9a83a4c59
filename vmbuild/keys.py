"""SSH keys of a build: the build user's key pair and the guest's SSH host keys.

vmbuild generates the guest's host keys itself and injects them through
cloud-init (`ssh_keys`), so the host key is known before the guest boots and is
pinned in a known_hosts file: a different key is refused, never accepted blindly.
Private keys are written with mode 0600; keep the folder they live in private.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vmbuild.errors import InputError
from vmbuild.fsutil import atomic_open

# cloud-init `ssh_keys` names (<type>_private / <type>_public) and the key's SSH name.
HOST_KEY_TYPES = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256", "rsa": "ssh-rsa"}


@dataclass(frozen=True)
class KeyPair:
    """A private key on disk (OpenSSH format) and its one-line public key."""

    private_path: Path
    public: str

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")


@dataclass(frozen=True)
class HostKey:
    """A guest SSH host key generated on the build host."""

    type: str  # a HOST_KEY_TYPES name: ed25519, ecdsa, rsa
    private: str  # OpenSSH private key text
    public: str  # "ssh-ed25519 AAAA..." (no comment)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


def _new_private_key(kind: str):  # -> cryptography private key
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise InputError(
        f"unknown SSH key type {kind!r}", hint=f"use one of {', '.join(HOST_KEY_TYPES)}"
    )


def _serialize(key) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


def generate_keypair(
    path: str | Path, *, comment: str = "vmbuild", kind: str = "ed25519"
) -> KeyPair:
    """Write a new private key to `path` (0600) and its public key to `path.pub`."""
    path = Path(path)
    private, public = _serialize(_new_private_key(kind))
    public = f"{public} {comment}".strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(private)
    with atomic_open(path.with_name(path.name + ".pub")) as fh:
        fh.write(public + "\n")
    return KeyPair(path, public)


def load_keypair(path: str | Path) -> KeyPair:
    """A key pair written earlier by `generate_keypair`."""
    path = Path(path)
    public = path.with_name(path.name + ".pub").read_text().strip()
    return KeyPair(path, public)


def generate_host_keys(types: Sequence[str] = ("ed25519",)) -> list[HostKey]:
    """Fresh host keys for a guest, one per type."""
    keys = []
    for kind in types:
        private, public = _serialize(_new_private_key(kind))
        keys.append(HostKey(kind, private, public))
    return keys


def cloud_init_ssh_keys(host_keys: Iterable[HostKey]) -> dict[str, str]:
    """The cloud-init `ssh_keys` mapping that installs these host keys."""
    mapping: dict[str, str] = {}
    for key in host_keys:
        mapping[f"{key.type}_private"] = key.private
        mapping[f"{key.type}_public"] = key.public
    return mapping


def known_hosts_name(host: str, port: int) -> str:
    """The host name OpenSSH and paramiko use in known_hosts (`[host]:port` unless 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def write_known_hosts(
    path: str | Path, host: str, port: int, host_keys: Iterable[HostKey | str]
) -> Path:
    """Pin the host keys of `host:port` in a known_hosts file of their own (atomic)."""
    name = known_hosts_name(host, port)
    lines = []
    for key in host_keys:
        public = key.public if isinstance(key, HostKey) else key
        kind, blob = public.split()[:2]
        lines.append(f"{name} {kind} {blob}\n")
    with atomic_open(path) as fh:
        fh.writelines(lines)
    return Path(path)


def fingerprint(public: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a one-line public key."""
    blob = base64.b64decode(public.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
