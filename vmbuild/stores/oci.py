"""OCI registry: a KubeVirt containerDisk image, or an OCI artifact holding the disk files.

Talks the OCI distribution API directly (requests). Blobs go up first and the
registry checks each against its digest; the manifest is put last, so the tag
only ever names a complete image. `containerdisk` mode wraps one qcow2 or raw
disk in a deterministic, uncompressed tar layer as `/disk/<file>` owned by
107:107 (KubeVirt's qemu user) and streams it without a temporary copy;
`artifact` mode puts each file as its own layer, titled with its file name
(the way ORAS stores files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.formats import FORMATS
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
DEFAULT_ARTIFACT_TYPE = "application/vnd.vmbuild.disk-image.v1"
QEMU_UID = 107  # KubeVirt runs qemu as 107:107 and reads the disk under /disk/


@dataclass
class Blob:
    """A blob to push: its descriptor fields and how to read it."""

    media_type: str
    digest: str
    size: int
    segments: list[bytes | Path]  # concatenated in order
    annotations: dict[str, str] | None = None

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


class SegmentReader(io.RawIOBase):
    """A read-only stream over bytes and files in sequence, reporting progress."""

    def __init__(self, segments: list[bytes | Path], total: int, progress: Callable[[int], None]):
        self._segments = list(segments)
        self._current: Any = None
        self._total = total
        self._progress = progress

    def __len__(self) -> int:  # requests sends Content-Length from this
        return self._total

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 1024 * 1024 if size is None or size < 0 else size
        while True:
            if self._current is None:
                if not self._segments:
                    return b""
                seg = self._segments.pop(0)
                self._current = io.BytesIO(seg) if isinstance(seg, bytes) else open(seg, "rb")  # noqa: SIM115
            chunk = self._current.read(size)
            if chunk:
                self._progress(len(chunk))
                return chunk
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


def _digest(segments: list[bytes | Path]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for seg in segments:
        if isinstance(seg, bytes):
            digest.update(seg)
            size += len(seg)
            continue
        with open(seg, "rb") as fh:
            while chunk := fh.read(4 * 1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def containerdisk_layer(file: LocalFile) -> Blob:
    """The tar layer `disk/<file>`: fixed owner, mode and mtime, so its digest is stable."""
    headers = b""
    for name, kind, size, mode in (
        ("disk", tarfile.DIRTYPE, 0, 0o555),
        (f"disk/{file.name}", tarfile.REGTYPE, file.size, 0o444),
    ):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime = kind, size, mode, 0
        info.uid = info.gid = QEMU_UID
        headers += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    trailer = b"\0" * ((-file.size) % 512) + b"\0" * 1024
    segments: list[bytes | Path] = [headers, file.path, trailer]
    # One read of the disk: the layer digest covers headers, content and padding.
    digest, size = _digest(segments)
    return Blob(TAR_LAYER, digest, size, segments)


class RegistryClient:
    """The few OCI distribution API calls a push needs, with Basic or Bearer auth."""

    def __init__(self, store: OciStore) -> None:
        import requests

        self.store = store
        self.session = requests.Session()
        scheme = "http" if store.config.get("insecure") else "https"
        self.origin = f"{scheme}://{store.registry}"
        self.root = f"{self.origin}/v2/"
        self.base = f"{self.root}{store.repository}/"
        self.timeout = float(store.config.get("timeout", 60))
        self._credentials: tuple[str, str] | None = None
        if store.config.get("username"):
            var = store.config.get("password_env")
            if var and var not in os.environ:
                raise store.error("password_env", f"environment variable {var} is not set")
            self._credentials = (store.config["username"], os.environ.get(var, "") if var else "")

    def _authenticate(self, challenge: str) -> None:
        import requests

        scheme, _, params = challenge.partition(" ")
        if self._credentials is None and scheme.lower() == "basic":
            raise self.store.error("username", "the registry requires credentials")
        if scheme.lower() == "basic":
            self.session.auth = self._credentials
            return
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", "")}
        query["scope"] = f"repository:{self.store.repository}:pull,push,delete"
        resp = requests.get(
            fields["realm"], params=query, auth=self._credentials, timeout=self.timeout
        )
        if resp.status_code in (401, 403):
            raise self.store.error(
                "username", f"the registry refused the credentials (HTTP {resp.status_code})"
            )
        resp.raise_for_status()
        token = resp.json().get("token") or resp.json().get("access_token")
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, url: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        import requests

        if url.startswith("/"):  # a Location header relative to the registry
            url = self.origin + url
        elif not url.startswith("http"):
            url = self.base + url
        kwargs.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, url, **kwargs)
            # A streamed body cannot be replayed; auth is settled by earlier calls anyway.
            replayable = isinstance(kwargs.get("data"), bytes | None)
            if resp.status_code == 401 and "WWW-Authenticate" in resp.headers and replayable:
                self._authenticate(resp.headers["WWW-Authenticate"])
                resp = self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError:
            raise self.store.error(
                "insecure",
                f"TLS failed talking to {self.store.registry}",
                hint="a plain-HTTP registry needs `insecure: true`",
            ) from None
        except requests.exceptions.ConnectionError as exc:
            if kwargs.get("data") is not None:
                raise  # mid-transfer: transient, retried by the store
            raise self.store.error(
                "registry", f"cannot reach {self.store.registry} ({type(exc).__name__})"
            ) from None
        if resp.status_code == 401:
            raise self.store.error("username", "the registry refused the credentials (HTTP 401)")
        if resp.status_code not in ok:
            from vmbuild.errors import BuildError

            raise BuildError(
                f"{self.store.where}: {method} {url.split('?')[0]}: HTTP {resp.status_code} "
                f"{resp.text[:300]}"
            )
        return resp


class OciStore(Store):
    TYPE = "oci"
    SCHEMA = store_schema(
        TYPE,
        {
            "registry": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9.-]+(:[0-9]+)?$",
                "description": "registry host[:port]",
            },
            "repository": {"type": "string", "pattern": r"^[a-z0-9]+([._/-][a-z0-9]+)*$"},
            "tag": {"type": "string", "description": "tag template (default '{version}')"},
            "mode": {"enum": ["containerdisk", "artifact"], "default": "containerdisk"},
            "artifact_type": {"type": "string"},
            "insecure": {"type": "boolean", "description": "plain HTTP (a local registry)"},
            "username": {"type": "string"},
            "password_env": {"type": "string"},
            "timeout": {"type": "number", "minimum": 1},
        },
        required=["registry", "repository"],
    )

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.registry: str = config["registry"]
        self.repository: str = config["repository"]
        self.mode: str = config.get("mode", "containerdisk")
        self.ACCEPTS = ("qcow2", "raw") if self.mode == "containerdisk" else FORMATS
        self._client: RegistryClient | None = None
        self._plans: dict[str, tuple[list[Blob], bytes]] = {}
        self._image = ImageRef("", "", "")  # set by items()

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            self._client = RegistryClient(self)
        return self._client

    def select(self, files: Any) -> list[LocalFile]:
        chosen = super().select(files)
        if self.mode == "containerdisk":
            if self.config.get("formats") and len(chosen) > 1:
                raise self.error("formats", "a containerDisk holds one disk: name one format")
            chosen = sorted(chosen, key=lambda f: self.ACCEPTS.index(f.format))[:1]
        return chosen

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        self._image = image
        return [Item(self.render("tag", "{version}", image), files)]

    def location(self, item: Item | None = None) -> str:
        ref = f"{self.registry}/{self.repository}"
        return f"oci://{ref}:{item.name}" if item else f"oci://{ref}"

    def is_transient(self, exc: BaseException) -> bool:
        import requests

        return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)

    def check(self) -> None:
        self.client.request("GET", self.client.root, ok=(200,))

    def _plan(self, item: Item) -> tuple[list[Blob], bytes]:
        """(blobs, manifest bytes) for an item; computed once (a containerDisk reads the disk)."""
        if item.name in self._plans:
            return self._plans[item.name]
        annotations = {
            "org.opencontainers.image.version": self._image.version,
            "io.vmbuild.image.name": self._image.name,
            "io.vmbuild.build-id": self._image.build_id,
        }
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST}
        if self.mode == "containerdisk":
            layer = containerdisk_layer(item.file)
            config_body = _json_bytes(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                }
            )
            layers = [layer]
            config = Blob(IMAGE_CONFIG, *_digest([config_body]), [config_body])
        else:
            config_body = b"{}"
            config = Blob(EMPTY_CONFIG, *_digest([config_body]), [config_body])
            manifest["artifactType"] = self.config.get("artifact_type", DEFAULT_ARTIFACT_TYPE)
            layers = [
                Blob(
                    f"application/vnd.vmbuild.image.layer.v1.{f.format}",
                    f"sha256:{f.sha256}",
                    f.size,
                    [f.path],
                    {"org.opencontainers.image.title": f.name},
                )
                for f in item.files
            ]
        manifest["config"] = config.descriptor()
        manifest["layers"] = [b.descriptor() for b in layers]
        manifest["annotations"] = annotations
        plan = ([config, *layers], _json_bytes(manifest))
        self._plans[item.name] = plan
        return plan

    def manifest_digest(self, item: Item) -> str:
        return f"sha256:{hashlib.sha256(self._plan(item)[1]).hexdigest()}"

    def _push_blob(self, blob: Blob, label: str) -> None:
        client = self.client
        if client.request("HEAD", f"blobs/{blob.digest}", ok=(200, 404)).status_code == 200:
            return  # content-addressed: already there, identical
        start = client.request("POST", "blobs/uploads/", ok=(202,))
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        body = SegmentReader(blob.segments, blob.size, Progress(label, blob.size))
        try:
            # The registry recomputes the digest and refuses a mismatch (HTTP 400).
            client.request(
                "PUT",
                f"{location}{sep}digest={blob.digest}",
                ok=(201,),
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        finally:
            body.close()

    def upload(self, item: Item) -> None:
        blobs, manifest = self._plan(item)
        for blob in blobs:
            self._push_blob(blob, f"{self.name}: {item.name} {blob.digest[7:19]}")
        self.client.request(
            "PUT",
            f"manifests/{item.name}",
            ok=(201,),
            data=manifest,
            headers={"Content-Type": MANIFEST},
        )

    def stat(self, item: Item) -> Remote | None:
        resp = self.client.request(
            "HEAD", f"manifests/{item.name}", ok=(200, 404), headers={"Accept": MANIFEST}
        )
        if resp.status_code == 404:
            return None
        return Remote(item.name, None, resp.headers.get("Docker-Content-Digest"))

    def matches(self, item: Item, remote: Remote) -> bool:
        return remote.digest == self.manifest_digest(item)

    def verify(self, item: Item) -> bool:
        if not super().verify(item):
            return False
        for blob in self._plan(item)[0]:
            resp = self.client.request("HEAD", f"blobs/{blob.digest}", ok=(200, 404))
            if resp.status_code != 200 or int(resp.headers.get("Content-Length", -1)) != blob.size:
                return False
        return True

    def details(self, item: Item) -> dict[str, Any]:
        return {
            "digest": self.manifest_digest(item),
            "reference": f"{self.registry}/{self.repository}:{item.name}",
            "mode": self.mode,
        }

    def list(self) -> list[Remote]:
        resp = self.client.request("GET", "tags/list", ok=(200, 404))
        tags = (resp.json().get("tags") or []) if resp.status_code == 200 else []
        return [Remote(tag) for tag in sorted(tags)]

    def delete(self, name: str) -> None:
        resp = self.client.request(
            "HEAD", f"manifests/{name}", ok=(200, 404), headers={"Accept": MANIFEST}
        )
        if resp.status_code == 404:
            return
        digest = resp.headers["Docker-Content-Digest"]
        self.client.request("DELETE", f"manifests/{digest}", ok=(202, 404))

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
        self._client = None
