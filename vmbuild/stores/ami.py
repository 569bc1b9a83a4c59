"""Amazon Machine Images, by one of three routes (`method`):

- `import-image`: stage the disk in S3, VM Import `ImportImage`, poll until the AMI exists;
- `import-snapshot`: stage in S3, `ImportSnapshot`, poll, then `RegisterImage`;
- `ebs-direct`: write the raw disk's non-zero 512 KiB blocks with the EBS direct APIs
  (`StartSnapshot`, `PutSnapshotBlock`, `CompleteSnapshot`), then `RegisterImage`,
  skipping VM Import and S3 entirely.

The AMI is tagged `vmbuild:ami-name` and `vmbuild:sha256` (the uploaded file's
digest): a re-run finds an identical AMI and skips; a different one under the same
name is replaced. Anything created on the way (staging object, snapshot, import
task, an untagged AMI) is removed when a later step fails; the staging object is
also removed on success unless `keep_s3_object` is set.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from vmbuild import events
from vmbuild.errors import BuildError
from vmbuild.stores import _aws
from vmbuild.stores._sparse import extents
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema
from vmbuild.stores.s3 import S3Store

GIB = 1024**3
# EBS direct APIs take 512 KiB blocks only (moto reports a smaller BlockSize; it is ignored).
BLOCK = 512 * 1024
ZERO_BLOCK = bytes(BLOCK)
DISK_FORMAT = {"vmdk": "VMDK", "vhd": "VHD", "vhdx": "VHDX", "raw": "RAW", "ova": "OVA"}
ACCEPTS_BY_METHOD = {
    "import-image": ("vmdk", "raw", "vhd", "vhdx", "ova"),
    "import-snapshot": ("vmdk", "raw", "vhd"),
    "ebs-direct": ("raw",),
}
TAG_NAME, TAG_SHA, TAG_SNAPSHOT = "vmbuild:ami-name", "vmbuild:sha256", "vmbuild:snapshot-id"


def _b64_sha256(data: bytes) -> tuple[bytes, str]:
    raw = hashlib.sha256(data).digest()
    return raw, base64.b64encode(raw).decode()


class AmiStore(Store):
    TYPE = "ami"
    SCHEMA = store_schema(
        TYPE,
        {
            "method": {"enum": list(ACCEPTS_BY_METHOD), "default": "import-image"},
            "region": {"type": "string"},
            "profile": {"type": "string"},
            "endpoint_url": {"type": "string", "pattern": "^https?://", "description": "EC2/EBS"},
            "bucket": {"type": "string", "minLength": 3, "description": "S3 staging bucket"},
            "prefix": {"type": "string", "description": "staging key prefix template"},
            "s3_endpoint_url": {"type": "string", "pattern": "^https?://"},
            "keep_s3_object": {"type": "boolean", "default": False},
            "ami_name": {"type": "string", "description": "default '{name}-{version}-{build_id}'"},
            "description": {"type": "string"},
            "role_name": {"type": "string", "description": "VM Import service role (vmimport)"},
            "license_type": {"enum": ["AWS", "BYOL"]},
            "boot_mode": {"enum": ["legacy-bios", "uefi", "uefi-preferred"]},
            "architecture": {"enum": ["x86_64", "arm64", "i386"], "default": "x86_64"},
            "platform": {"enum": ["Linux", "Windows"]},
            "root_device_name": {"type": "string", "default": "/dev/xvda"},
            "volume_type": {"enum": ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"]},
            "ena_support": {"type": "boolean", "default": True},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "timeout": {"type": "number", "minimum": 1, "default": 7200},
            "poll_interval": {"type": "number", "minimum": 0, "default": 15},
            "threads": {"type": "integer", "minimum": 1, "maximum": 64, "default": 8},
        },
    )
    SCHEMA["allOf"] = [
        {
            "if": {
                "properties": {"method": {"enum": ["import-image", "import-snapshot"]}},
            },
            "then": {"required": ["bucket"]},
        }
    ]

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.method: str = config.get("method", "import-image")
        self.ACCEPTS = ACCEPTS_BY_METHOD[self.method]
        self.region: str = config.get("region") or os.environ.get("AWS_DEFAULT_REGION", "")
        self.timeout = float(config.get("timeout", 7200))
        self.poll_interval = float(config.get("poll_interval", 15))
        self._ec2: Any = None
        self._ebs: Any = None
        self._staging: S3Store | None = None
        self._done: dict[str, dict[str, Any]] = {}
        self._image: ImageRef | None = None
        self._cleanup_keys: list[str] = []

    # -- clients -------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        sess = _aws.session(self.config, self)
        return _aws.client(sess, service, self.config.get("endpoint_url"), self.region or None)

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = self._client("ec2")
        return self._ec2

    @property
    def ebs(self) -> Any:
        if self._ebs is None:
            self._ebs = self._client("ebs")
        return self._ebs

    @property
    def staging(self) -> S3Store:
        if self._staging is None:
            s3_config = {"name": self.name, "type": "s3", "bucket": self.config["bucket"]}
            for key, s3_key in (("s3_endpoint_url", "endpoint_url"), ("region", "region")):
                if self.config.get(key):
                    s3_config[s3_key] = self.config[key]
            if self.config.get("profile"):
                s3_config["profile"] = self.config["profile"]
            self._staging = S3Store(s3_config, self.where)
        return self._staging

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        return _aws.call(self, fn, **kwargs)

    # -- store hooks ---------------------------------------------------------------------
    def select(self, files: Any) -> list[LocalFile]:
        chosen = super().select(files)
        if self.config.get("formats") and len(chosen) > 1:
            raise self.error("formats", "one AMI is made from one disk: name one format")
        return sorted(chosen, key=lambda f: self.ACCEPTS.index(f.format))[:1]

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        self._image = image
        return [Item(self.render("ami_name", "{name}-{version}-{build_id}", image), files)]

    def location(self, item: Item | None = None) -> str:
        region = self.region or "default-region"
        if item and item.name in self._done:
            return f"ec2://{region}/{self._done[item.name]['image_id']}"
        return f"ec2://{region}/{item.name}" if item else f"ec2://{region}"

    def is_transient(self, exc: BaseException) -> bool:
        return _aws.is_transient(exc)

    def check(self) -> None:
        self._call(
            self.ec2.describe_images,
            Owners=["self"],
            Filters=[{"Name": f"tag:{TAG_NAME}", "Values": ["vmbuild-preflight"]}],
        )
        if self.method != "ebs-direct":
            self.staging.check()

    def _find(self, name: str) -> list[dict[str, Any]]:
        resp = self._call(
            self.ec2.describe_images,
            Owners=["self"],
            Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}],
        )
        return list(resp.get("Images", []))

    def stat(self, item: Item) -> Remote | None:
        return self._remote(item.name)

    def _remote(self, name: str) -> Remote | None:
        images = self._find(name)
        if not images:
            return None
        image = images[0]
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        snapshots = [
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]
        if tags.get(TAG_SNAPSHOT) and tags[TAG_SNAPSHOT] not in snapshots:
            snapshots.append(tags[TAG_SNAPSHOT])
        extra = {"image_id": image["ImageId"], "state": image.get("State"), "snapshots": snapshots}
        return Remote(name, None, tags.get(TAG_SHA), extra)

    def matches(self, item: Item, remote: Remote) -> bool:
        same = remote.digest == item.file.sha256 and remote.extra.get("state") == "available"
        if same and item.name not in self._done:  # found by a re-run: report what is there
            snapshots = remote.extra.get("snapshots") or [None]
            self._done[item.name] = {
                "image_id": remote.extra["image_id"],
                "snapshot_id": snapshots[0],
                "method": self.method,
                "region": self.region or None,
            }
        return same

    def details(self, item: Item) -> dict[str, Any]:
        return dict(self._done.get(item.name, {}))

    def list(self) -> list[Remote]:
        resp = self._call(
            self.ec2.describe_images,
            Owners=["self"],
            Filters=[{"Name": "tag-key", "Values": [TAG_NAME]}],
        )
        return [
            Remote(
                next(t["Value"] for t in image.get("Tags", []) if t["Key"] == TAG_NAME),
                None,
                None,
                {"image_id": image["ImageId"]},
            )
            for image in resp.get("Images", [])
        ]

    def delete(self, name: str) -> None:
        remote = self._remote(name)
        if remote is None:
            return
        self._call(self.ec2.deregister_image, ImageId=remote.extra["image_id"])
        for snapshot in remote.extra["snapshots"]:
            with contextlib.suppress(Exception):
                self.ec2.delete_snapshot(SnapshotId=snapshot)

    # -- upload --------------------------------------------------------------------------
    def _tags(self, item: Item) -> builtins.list[dict[str, str]]:
        assert self._image is not None
        tags = {
            "Name": item.name,
            TAG_NAME: item.name,
            TAG_SHA: item.file.sha256,
            "vmbuild:build-id": self._image.build_id,
            "vmbuild:version": self._image.version,
            **self.config.get("tags", {}),
        }
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def upload(self, item: Item) -> None:
        if self._remote(item.name) is not None:
            events.warn(f"{self.name}: replacing the AMI named {item.name} (content differs)")
            self.delete(item.name)
        snapshot_id: str | None
        with ExitStack() as undo:
            if self.method == "ebs-direct":
                snapshot_id = self._ebs_direct(item, undo)
                image_id = self._register(item, snapshot_id, undo)
            else:
                key = self._stage(item, undo)
                if self.method == "import-snapshot":
                    snapshot_id = self._import_snapshot(item, key, undo)
                    image_id = self._register(item, snapshot_id, undo)
                else:
                    image_id, snapshot_id = self._import_image(item, key, undo)
            tags = [*self._tags(item)]
            if snapshot_id:
                tags.append({"Key": TAG_SNAPSHOT, "Value": snapshot_id})
            resources = [image_id, *([snapshot_id] if snapshot_id else [])]
            self._call(self.ec2.create_tags, Resources=resources, Tags=tags)
            self._wait_available(image_id)
            undo.pop_all()  # success: keep the AMI and snapshot
        self._done[item.name] = {
            "image_id": image_id,
            "snapshot_id": snapshot_id,
            "method": self.method,
            "region": self.region or None,
        }
        events.result(f"{self.name}: AMI {image_id}", image_id=image_id, store=self.name)

    def _stage(self, item: Item, undo: ExitStack) -> str:
        """Put the disk in the staging bucket; its removal is registered for every outcome."""
        staging = self.staging
        assert self._image is not None
        prefix = self.render("prefix", "vmbuild-import/{build_id}/", self._image)
        key = f"{prefix}{item.file.name}"
        if not self.config.get("keep_s3_object"):
            # Removed on success too (ExitStack.pop_all would keep it): registered outside undo.
            self._cleanup_keys.append(key)
        existing = staging.head(key)
        staged = Item(key, [item.file])
        if existing is None or not staging.matches(staged, existing):
            staging.put_file(item.file, key, {"Metadata": {"sha256": item.file.sha256}})
            if not staging.verify(staged):
                raise BuildError(
                    f"{self.where}: staging object s3://{staging.bucket}/{key} differs"
                )
        return key

    def _poll(self, describe: Any, cancel_id: str, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        last = None
        while True:
            task = describe()
            status = str(task.get("Status", "")).lower()
            message = task.get("StatusMessage", "")
            pct = float(task.get("Progress") or (100 if status == "completed" else 0))
            if (status, message, pct) != last:
                events.progress(pct, 100, unit="%", label=f"{self.name}: {kind} {message}".strip())
                last = (status, message, pct)
            if status == "completed":
                return task
            if status in ("deleted", "deleting", "cancelled", "error"):
                raise BuildError(f"{self.where}: {kind} {cancel_id} ended {status}: {message}")
            if time.monotonic() > deadline:
                with contextlib.suppress(Exception):
                    self.ec2.cancel_import_task(ImportTaskId=cancel_id)
                raise BuildError(
                    f"{self.where}: {kind} {cancel_id} still {status} after {self.timeout:.0f}s; "
                    "cancelled",
                    hint="raise the store's timeout",
                )
            time.sleep(self.poll_interval)

    def _disk_container(self, item: Item, key: str) -> dict[str, Any]:
        return {
            "Description": item.file.name,
            "Format": DISK_FORMAT[item.file.format],
            "UserBucket": {"S3Bucket": self.config["bucket"], "S3Key": key},
        }

    def _import_image(self, item: Item, key: str, undo: ExitStack) -> tuple[str, str | None]:
        request: dict[str, Any] = {
            "Architecture": self.config.get("architecture", "x86_64"),
            "Description": self.config.get("description", item.name),
            "DiskContainers": [self._disk_container(item, key)],
            "ClientToken": uuid.uuid4().hex,
            "TagSpecifications": [{"ResourceType": "import-image-task", "Tags": self._tags(item)}],
        }
        for field, param in (
            ("boot_mode", "BootMode"),
            ("license_type", "LicenseType"),
            ("role_name", "RoleName"),
            ("platform", "Platform"),
        ):
            if self.config.get(field):
                request[param] = self.config[field]
        task_id = self._call(self.ec2.import_image, **request)["ImportTaskId"]
        undo.callback(self._cancel, task_id)
        task = self._poll(
            lambda: self._call(self.ec2.describe_import_image_tasks, ImportTaskIds=[task_id])[
                "ImportImageTasks"
            ][0],
            task_id,
            "ImportImage",
        )
        image_id = task["ImageId"]
        snapshots = [
            s["SnapshotId"] for s in task.get("SnapshotDetails", []) if s.get("SnapshotId")
        ]
        undo.callback(self._drop_image, image_id, snapshots)
        return image_id, (snapshots[0] if snapshots else None)

    def _import_snapshot(self, item: Item, key: str, undo: ExitStack) -> str:
        request: dict[str, Any] = {
            "Description": self.config.get("description", item.name),
            "DiskContainer": self._disk_container(item, key),
            "ClientToken": uuid.uuid4().hex,
            "TagSpecifications": [
                {"ResourceType": "import-snapshot-task", "Tags": self._tags(item)}
            ],
        }
        if self.config.get("role_name"):
            request["RoleName"] = self.config["role_name"]
        task_id = self._call(self.ec2.import_snapshot, **request)["ImportTaskId"]
        undo.callback(self._cancel, task_id)
        detail = self._poll(
            lambda: self._call(self.ec2.describe_import_snapshot_tasks, ImportTaskIds=[task_id])[
                "ImportSnapshotTasks"
            ][0]["SnapshotTaskDetail"],
            task_id,
            "ImportSnapshot",
        )
        snapshot_id = detail["SnapshotId"]
        undo.callback(self._drop_snapshot, snapshot_id)
        return snapshot_id

    def _register(self, item: Item, snapshot_id: str, undo: ExitStack) -> str:
        root = self.config.get("root_device_name", "/dev/xvda")
        ebs: dict[str, Any] = {"SnapshotId": snapshot_id, "DeleteOnTermination": True}
        ebs["VolumeType"] = self.config.get("volume_type", "gp3")
        request: dict[str, Any] = {
            "Name": item.name,
            "Description": self.config.get("description", item.name),
            "Architecture": self.config.get("architecture", "x86_64"),
            "RootDeviceName": root,
            "VirtualizationType": "hvm",
            "EnaSupport": bool(self.config.get("ena_support", True)),
            "BlockDeviceMappings": [{"DeviceName": root, "Ebs": ebs}],
        }
        if self.config.get("boot_mode"):
            request["BootMode"] = self.config["boot_mode"]
        image_id = self._call(self.ec2.register_image, **request)["ImageId"]
        undo.callback(self._drop_image, image_id, [])
        return image_id

    def _ebs_direct(self, item: Item, undo: ExitStack) -> str:
        """Write the raw disk's non-zero blocks into a new snapshot; return its id."""
        file = item.file
        started = self._call(
            self.ebs.start_snapshot,
            VolumeSize=max(1, math.ceil(file.size / GIB)),
            Description=self.config.get("description", item.name),
            Tags=self._tags(item),
            ClientToken=uuid.uuid4().hex,
            Timeout=60,
        )
        snapshot_id = started["SnapshotId"]
        undo.callback(self._drop_snapshot, snapshot_id)
        fd = os.open(file.path, os.O_RDONLY)
        try:
            indices = sorted(
                {
                    i
                    for offset, length, is_data in extents(fd, file.size)
                    if is_data
                    for i in range(offset // BLOCK, (offset + length - 1) // BLOCK + 1)
                }
            )
            progress = Progress(f"{self.name}: {snapshot_id}", len(indices) * BLOCK)

            def put(index: int) -> bytes | None:
                data = os.pread(fd, BLOCK, index * BLOCK).ljust(BLOCK, b"\0")
                progress(BLOCK)
                if data == ZERO_BLOCK:
                    return None  # EBS snapshots read unwritten blocks as zeros
                raw, b64 = _b64_sha256(data)
                self.retry(
                    f"block {index}",
                    lambda: self._call(
                        self.ebs.put_snapshot_block,
                        SnapshotId=snapshot_id,
                        BlockIndex=index,
                        BlockData=data,
                        DataLength=BLOCK,
                        Checksum=b64,
                        ChecksumAlgorithm="SHA256",
                    ),
                )
                return raw

            with ThreadPoolExecutor(int(self.config.get("threads", 8))) as pool:
                digests = list(pool.map(put, indices))
        finally:
            os.close(fd)
        written = {i: d for i, d in zip(indices, digests, strict=True) if d is not None}
        _, aggregate = _b64_sha256(b"".join(written[i] for i in sorted(written)))
        self._call(
            self.ebs.complete_snapshot,
            SnapshotId=snapshot_id,
            ChangedBlocksCount=len(written),
            Checksum=aggregate,
            ChecksumAlgorithm="SHA256",
            ChecksumAggregationMethod="LINEAR",
        )
        self._verify_blocks(snapshot_id, written)
        self._wait_snapshot(snapshot_id)
        return snapshot_id

    def _verify_blocks(self, snapshot_id: str, written: dict[int, bytes]) -> None:
        """The snapshot lists exactly the blocks sent; the first one reads back identical."""
        listed: dict[int, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"SnapshotId": snapshot_id}
            if token:
                kwargs["NextToken"] = token
            page = self._call(self.ebs.list_snapshot_blocks, **kwargs)
            listed.update({b["BlockIndex"]: b["BlockToken"] for b in page.get("Blocks", [])})
            token = page.get("NextToken")
            if not token:
                break
        if set(listed) != set(written):
            raise BuildError(
                f"{self.where}: snapshot {snapshot_id} holds {len(listed)} blocks, "
                f"{len(written)} were written"
            )
        if written:
            first = min(written)
            block = self._call(
                self.ebs.get_snapshot_block,
                SnapshotId=snapshot_id,
                BlockIndex=first,
                BlockToken=listed[first],
            )
            if hashlib.sha256(block["BlockData"].read()).digest() != written[first]:
                raise BuildError(f"{self.where}: snapshot {snapshot_id} block {first} differs")

    def _wait_snapshot(self, snapshot_id: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            snap = self._call(self.ec2.describe_snapshots, SnapshotIds=[snapshot_id])["Snapshots"]
            state = snap[0]["State"] if snap else "missing"
            if state == "completed":
                return
            if state in ("error", "missing") or time.monotonic() > deadline:
                raise BuildError(f"{self.where}: snapshot {snapshot_id} is {state}")
            time.sleep(self.poll_interval)

    def _wait_available(self, image_id: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            images = self._call(self.ec2.describe_images, ImageIds=[image_id])["Images"]
            state = images[0]["State"] if images else "missing"
            if state == "available":
                return
            if state in ("failed", "error", "deregistered", "invalid", "missing"):
                raise BuildError(f"{self.where}: AMI {image_id} is {state}")
            if time.monotonic() > deadline:
                raise BuildError(f"{self.where}: AMI {image_id} still {state}; timed out")
            time.sleep(self.poll_interval)

    # -- cleanup helpers (best effort: they run while another error is propagating) --------
    def _cancel(self, task_id: str) -> None:
        with contextlib.suppress(Exception):
            self.ec2.cancel_import_task(ImportTaskId=task_id)

    def _drop_image(self, image_id: str, snapshots: builtins.list[str]) -> None:
        with contextlib.suppress(Exception):
            self.ec2.deregister_image(ImageId=image_id)
        for snapshot in snapshots:
            self._drop_snapshot(snapshot)

    def _drop_snapshot(self, snapshot_id: str) -> None:
        with contextlib.suppress(Exception):
            self.ec2.delete_snapshot(SnapshotId=snapshot_id)

    def publish(self, files: Any, image: ImageRef) -> dict[str, Any]:
        self._cleanup_keys = []
        try:
            return super().publish(files, image)
        finally:
            for key in self._cleanup_keys:
                with contextlib.suppress(Exception):
                    self.staging.delete(key)

    def close(self) -> None:
        if self._staging is not None:
            self._staging.close()
