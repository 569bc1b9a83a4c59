"""S3Download and S3Upload through the stdlib SigV4 client."""

from __future__ import annotations

import os
from typing import Any

from vmbuild_agent.actions import Action, Field, as_bool, register
from vmbuild_agent.errors import StepFailed
from vmbuild_agent.fileops import atomic_write
from vmbuild_agent.sigv4 import PART_SIZE, S3Client, parse_s3_url


def _part_size() -> int:
    # Tests lower it to exercise multipart uploads with small files.
    return int(os.environ.get("VMBUILD_AGENT_S3_PART_SIZE", PART_SIZE))


@register
class S3Download(Action):
    """Downloads s3://bucket/key (or every object under s3://bucket/prefix/*) to `destination`."""

    name = "S3Download"
    fields = {
        "source": Field("string", required=True),
        "destination": Field("string", required=True),
        "expectedBucketOwner": Field("string"),
        "overwrite": Field("bool", default=True),
    }
    outputs = ("destination",)

    def run_item(self, item: dict, ctx: Any) -> Any:
        bucket, key = parse_s3_url(str(item["source"]))
        dest = str(item["destination"])
        client = S3Client(item.get("expectedBucketOwner"), ctx.check_deadline)
        overwrite = as_bool(item["overwrite"], True)
        if key.endswith("*"):
            prefix = key[:-1]
            written = []
            for found in client.list_keys(bucket, prefix):
                if found.endswith("/"):
                    continue
                target = os.path.join(dest, found[len(prefix) :])
                written.append(self._get(client, bucket, found, target, overwrite))
            if not written:
                raise StepFailed(f"S3Download: nothing under s3://{bucket}/{prefix}")
            return written
        if dest.endswith("/") or os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(key))
        return self._get(client, bucket, key, dest, overwrite)

    def _get(self, client: S3Client, bucket: str, key: str, dest: str, overwrite: bool) -> str:
        if os.path.exists(dest) and not overwrite:
            raise StepFailed(f"S3Download: {dest} exists and overwrite is false")
        try:
            with atomic_write(dest) as fh:
                client.download(bucket, key, fh.write)
        except OSError as exc:
            raise StepFailed(f"S3Download: cannot write {dest}: {exc.strerror}") from None
        return dest

    def combine(self, results: list) -> dict:
        return {"destination": results[0] if len(results) == 1 else results}


@register
class S3Upload(Action):
    """Uploads a file (or, with `recurse: true`, a folder) to an s3:// destination."""

    name = "S3Upload"
    fields = {
        "source": Field("string", required=True),
        "destination": Field("string", required=True),
        "recurse": Field("bool", default=False),
        "expectedBucketOwner": Field("string"),
    }
    outputs = ("destination",)

    def run_item(self, item: dict, ctx: Any) -> Any:
        source = str(item["source"])
        bucket, key = parse_s3_url(str(item["destination"]))
        client = S3Client(item.get("expectedBucketOwner"), ctx.check_deadline)
        if os.path.isdir(source):
            if not as_bool(item["recurse"]):
                raise StepFailed(f"S3Upload: {source} is a folder; set recurse: true")
            prefix = key if key.endswith("/") or not key else key + "/"
            uploaded = []
            for folder, _dirs, files in os.walk(source):
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, source).replace(os.sep, "/")
                    client.upload(bucket, prefix + rel, path, _part_size())
                    uploaded.append(f"s3://{bucket}/{prefix}{rel}")
            return uploaded
        if not os.path.isfile(source):
            raise StepFailed(f"S3Upload: no such file or folder {source}")
        if not key or key.endswith("/"):
            key += os.path.basename(source)
        client.upload(bucket, key, source, _part_size())
        return f"s3://{bucket}/{key}"

    def combine(self, results: list) -> dict:
        return {"destination": results[0] if len(results) == 1 else results}
