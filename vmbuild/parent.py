"""Resolving a recipe's parent image to a local file: a path, a URL with sha256, a base-image
definition (bootstrapped and cached), or an earlier build folder.

Downloads are cached by checksum under the `downloads` cache and verified before use;
a download that fails or does not match leaves nothing in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vmbuild import events
from vmbuild.errors import BuildError, InputError
from vmbuild.fsutil import atomic_path, cache_key, sha256_file, write_json
from vmbuild.paths import cache_dir


@dataclass(frozen=True)
class ResolvedParent:
    """The parent image as a local file, with where it came from and its checksum."""

    path: Path
    sha256: str
    source: dict[str, str]


def _check_sha256(value: str, field: str) -> str:
    value = value.lower().removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InputError(f"{field}: not a sha256 hex digest: {value!r}")
    return value


def download(url: str, sha256: str, *, timeout: float = 60) -> Path:
    """Fetch `url` into the download cache unless an entry with `sha256` is already there."""
    sha256 = _check_sha256(sha256, "parent.sha256")
    dest = cache_dir("downloads") / f"{sha256}.img"
    if dest.exists():
        return dest
    digest = hashlib.sha256()
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                done = 0
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    events.progress(done, total, label="download parent")
            if digest.hexdigest() != sha256:
                raise BuildError(
                    f"parent.url: checksum mismatch for {url}: "
                    f"expected {sha256}, got {digest.hexdigest()}",
                    hint="check parent.sha256 in the recipe, or the server's file",
                )
    except (urllib.error.URLError, OSError) as exc:
        raise BuildError(f"parent.url: cannot download {url}: {exc}") from exc
    return dest


def from_build(folder: Path) -> Path:
    """The image of an earlier vmbuild build folder (its manifest must say it succeeded)."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"parent.build: {folder} is not a vmbuild build folder (no manifest.json)")
    data = json.loads(manifest.read_text())
    if data.get("status") != "success":
        raise InputError(
            f"parent.build: build {folder} did not succeed (status {data.get('status')})"
        )
    image = folder / data.get("image", {}).get("path", "image.qcow2")
    if not image.is_file():
        raise InputError(f"parent.build: {image} is missing")
    return image


RACY_SECONDS = 3.0


def known_sha256(image: Path) -> str:
    """The sha256 of `image`, read again only when the file changed.

    Hashing a multi-GiB parent costs seconds on every build; the digest is remembered
    in the cache under the file's identity (device, inode, size, mtime in ns), which any
    write or replacement of the file changes. A file modified in the last few seconds
    is not remembered (a rewrite within the clock's granularity would keep its mtime).
    """
    st = image.stat()
    identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    entry = cache_dir("digests") / f"{cache_key(str(image.resolve()))}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        known = json.loads(entry.read_text())
        if known["identity"] == identity:
            return str(known["sha256"])
    digest = sha256_file(image)
    if time.time() - st.st_mtime < RACY_SECONDS:
        return digest
    with contextlib.suppress(OSError):
        write_json(entry, {"path": str(image.resolve()), "identity": identity, "sha256": digest})
    return digest


def resolve(
    *,
    path: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    bootstrap: Path | None = None,
    build: Path | None = None,
    mirror: str | None = None,
) -> ResolvedParent:
    """Turn exactly one parent form into a local image path plus its sha256."""
    if path is not None:
        if not path.is_file():
            raise InputError(f"parent.path: {path} does not exist")
        image, source = path, {"path": str(path)}
    elif url is not None:
        if sha256 is None:
            raise InputError("parent.sha256: required with parent.url")
        image, source = download(url, sha256), {"url": url}
    elif bootstrap is not None:
        from vmbuild.bootstrap import ensure_image

        image, source = ensure_image(bootstrap, mirror=mirror), {"bootstrap": str(bootstrap)}
    elif build is not None:
        image, source = from_build(build), {"build": str(build)}
    else:
        raise InputError("parent: one of path, url, bootstrap or build is required")
    digest = sha256 if url is not None and sha256 else known_sha256(image)
    return ResolvedParent(image.resolve(), digest.lower().removeprefix("sha256:"), source)
