"""S3-compatible object storage through boto3: multipart uploads, verified by ETag.

An object appears under its key only when the upload (or multipart completion)
succeeds; s3transfer aborts a failed multipart upload. After transfer the object's
size, its `sha256` metadata and its ETag (MD5, or the multipart MD5-of-MD5s the
server computed) are compared with the local file.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

from vmbuild.stores import _aws
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema

MIB = 1024 * 1024

S3_PROPERTIES: dict[str, Any] = {
    "bucket": {"type": "string", "minLength": 3},
    "prefix": {"type": "string", "description": "key prefix template, e.g. 'images/{name}/'"},
    "endpoint_url": {"type": "string", "pattern": "^https?://"},
    "region": {"type": "string"},
    "profile": {"type": "string", "description": "AWS shared-config profile"},
    "multipart_chunk_mib": {"type": "integer", "minimum": 5, "maximum": 5120},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
    "storage_class": {"type": "string"},
    "verify": {
        "enum": ["etag", "size"],
        "default": "etag",
        "description": "etag: MD5 ETag as S3 computes it; size: size and sha256 metadata only "
        "(for servers whose ETag is no MD5, such as SSE-KMS buckets)",
    },
}


@cache
def _md5_parts(path: str, mtime_ns: int, part_size: int) -> list[bytes]:
    # Keyed on mtime so a changed file is re-read; the etag check may run twice per upload.
    digests = []
    with open(path, "rb") as fh:
        while chunk := fh.read(part_size):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return digests


class S3Store(Store):
    TYPE = "s3"
    SCHEMA = store_schema(TYPE, S3_PROPERTIES, required=["bucket"])

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.bucket: str = config["bucket"]
        self.endpoint_url: str | None = config.get("endpoint_url")
        self.prefix = ""
        self.chunk = int(config.get("multipart_chunk_mib", 64)) * MIB
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            sess = _aws.session(self.config, self)
            self._client = _aws.client(sess, "s3", self.endpoint_url, self.config.get("region"))
        return self._client

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        return _aws.call(self, fn, bucket=self.bucket, **kwargs)

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        self.prefix = self.render("prefix", "", image)
        return [Item(self.prefix + f.name, [f]) for f in files]

    def check(self) -> None:
        self._call(self.client.head_bucket, Bucket=self.bucket)

    def location(self, item: Item | None = None) -> str:
        return f"s3://{self.bucket}/{item.name if item else self.prefix}"

    def is_transient(self, exc: BaseException) -> bool:
        return _aws.is_transient(exc) or super().is_transient(exc)

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.chunk,
            multipart_chunksize=self.chunk,
            max_concurrency=int(self.config.get("max_concurrency", 4)),
        )

    def upload(self, item: Item) -> None:
        extra: dict[str, Any] = {"Metadata": {"sha256": item.file.sha256}}
        if self.config.get("storage_class"):
            extra["StorageClass"] = self.config["storage_class"]
        self.put_file(item.file, item.name, extra)

    def put_file(self, file: LocalFile, key: str, extra: dict[str, Any]) -> None:
        """Upload one file under `key` (also used by the AMI store for its staging object)."""
        progress = Progress(f"{self.name}: {key}", file.size)
        self._call(
            self.client.upload_file,
            Filename=str(file.path),
            Bucket=self.bucket,
            Key=key,
            ExtraArgs=extra,
            Callback=progress,
            Config=self.transfer_config(),
        )

    def stat(self, item: Item) -> Remote | None:
        return self.head(item.name)

    def head(self, key: str) -> Remote | None:
        import botocore.exceptions

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _aws.translate(
                exc, self, endpoint_field="endpoint_url", bucket=self.bucket
            ) from None
        except Exception as exc:
            raise _aws.translate(exc, self, endpoint_field="endpoint_url") from None
        return Remote(
            key,
            int(head["ContentLength"]),
            head.get("ETag", "").strip('"'),
            {"sha256": head.get("Metadata", {}).get("sha256")},
        )

    def expected_etag(self, file: LocalFile) -> str:
        """The ETag S3 computes: MD5 of the body, or MD5 of part MD5s plus `-N` for multipart."""
        from s3transfer.utils import ChunksizeAdjuster

        st = file.path.stat()
        if file.size < self.chunk:
            parts = _md5_parts(str(file.path), st.st_mtime_ns, max(file.size, 1))
            return (parts[0] if parts else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
        part = ChunksizeAdjuster().adjust_chunksize(self.chunk, file.size)
        parts = _md5_parts(str(file.path), st.st_mtime_ns, part)
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"

    def matches(self, item: Item, remote: Remote) -> bool:
        if remote.size != item.file.size or remote.extra.get("sha256") != item.file.sha256:
            return False
        if self.config.get("verify", "etag") == "size":
            return True
        return remote.digest == self.expected_etag(item.file)

    def list(self) -> list[Remote]:
        static = str(self.config.get("prefix", "")).split("{", 1)[0]
        pages = self._call(self.client.get_paginator, operation_name="list_objects_v2")
        out = []
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=static):
                for obj in page.get("Contents", []):
                    out.append(Remote(obj["Key"], int(obj["Size"]), obj["ETag"].strip('"')))
        except Exception as exc:
            raise _aws.translate(
                exc, self, endpoint_field="endpoint_url", bucket=self.bucket
            ) from None
        return out

    def delete(self, name: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=name)
