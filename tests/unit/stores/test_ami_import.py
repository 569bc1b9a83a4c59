"""AMI store, VM Import routes (ImportImage, ImportSnapshot + RegisterImage).

No server that runs here implements VM Import, so EC2 is a botocore Stubber: these
tests check the requests built and the polling. The S3 staging upload is real
(SeaweedFS on 127.0.0.1), including the removal of the staging object.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import BuildError


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_server) -> None:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)


NAME = "demo-1.2.3"


def make_store(s3_server, bucket: str, method: str, **extra):
    config = {
        "name": "aws",
        "type": "ami",
        "method": method,
        "region": "eu-west-1",
        "bucket": bucket,
        "s3_endpoint_url": s3_server.url,
        "ami_name": "{name}-{version}",
        "role_name": "vmimport-ci",
        "license_type": "BYOL",
        "boot_mode": "uefi",
        "tags": {"team": "images"},
        "poll_interval": 0,
        **extra,
    }
    store = stores.load(config, "distribute[0]")
    store._ec2 = boto3.client("ec2", region_name="eu-west-1")
    return store, Stubber(store._ec2)


def image(image_id: str, sha: str, state: str = "available") -> dict:
    tags = [{"Key": "vmbuild:ami-name", "Value": NAME}, {"Key": "vmbuild:sha256", "Value": sha}]
    return {"ImageId": image_id, "State": state, "Tags": tags}


def by_name() -> dict:
    return {"Owners": ["self"], "Filters": [{"Name": "tag:vmbuild:ami-name", "Values": [NAME]}]}


def expected_tags(file, extra=()) -> list:
    tags = [
        {"Key": "Name", "Value": NAME},
        {"Key": "vmbuild:ami-name", "Value": NAME},
        {"Key": "vmbuild:sha256", "Value": file.sha256},
        {"Key": "vmbuild:build-id", "Value": "demo-1.2.3-1"},
        {"Key": "vmbuild:version", "Value": "1.2.3"},
        {"Key": "team", "Value": "images"},
    ]
    return tags + list(extra)


def test_import_image(s3_env, s3_server, s3_bucket, sample_build: Path):
    build = load_build(sample_build)
    store, stub = make_store(s3_server, s3_bucket, "import-image")
    (vmdk,) = store.select(build.files)
    assert vmdk.format == "vmdk"  # preferred over raw for VM Import
    key = f"vmbuild-import/demo-1.2.3-1/{vmdk.name}"
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response(
        "import_image",
        {"ImportTaskId": "import-ami-0123"},
        {
            "Architecture": "x86_64",
            "Description": NAME,
            "DiskContainers": [
                {
                    "Description": vmdk.name,
                    "Format": "VMDK",
                    "UserBucket": {"S3Bucket": s3_bucket, "S3Key": key},
                }
            ],
            "ClientToken": ANY,
            "TagSpecifications": [
                {"ResourceType": "import-image-task", "Tags": expected_tags(vmdk)}
            ],
            "BootMode": "uefi",
            "LicenseType": "BYOL",
            "RoleName": "vmimport-ci",
        },
    )
    for status, progress in (("active", "27"), ("active", "80")):
        stub.add_response(
            "describe_import_image_tasks",
            {"ImportImageTasks": [{"Status": status, "Progress": progress}]},
            {"ImportTaskIds": ["import-ami-0123"]},
        )
    done = {"Status": "completed", "ImageId": "ami-0abc", "SnapshotDetails": [
        {"SnapshotId": "snap-0def"}
    ]}  # fmt: skip
    stub.add_response("describe_import_image_tasks", {"ImportImageTasks": [done]}, None)
    stub.add_response(
        "create_tags",
        {},
        {
            "Resources": ["ami-0abc", "snap-0def"],
            "Tags": [*expected_tags(vmdk), {"Key": "vmbuild:snapshot-id", "Value": "snap-0def"}],
        },
    )
    stub.add_response("describe_images", {"Images": [image("ami-0abc", vmdk.sha256)]}, None)
    stub.add_response("describe_images", {"Images": [image("ami-0abc", vmdk.sha256)]}, by_name())
    with stub:
        result = store.publish([vmdk], build.image)
    stub.assert_no_pending_responses()
    (obj,) = result["objects"]
    assert obj["image_id"] == "ami-0abc" and obj["snapshot_id"] == "snap-0def"
    assert result["location"] == "ec2://eu-west-1"
    # The staging object was removed once the import finished.
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


def test_import_snapshot_then_register(s3_env, s3_server, s3_bucket, sample_build: Path):
    build = load_build(sample_build)
    store, stub = make_store(
        s3_server, s3_bucket, "import-snapshot", formats=["raw"], keep_s3_object=True
    )
    (raw,) = store.select(build.files)
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response(
        "import_snapshot",
        {"ImportTaskId": "import-snap-1"},
        {
            "Description": NAME,
            "DiskContainer": {
                "Description": raw.name,
                "Format": "RAW",
                "UserBucket": {
                    "S3Bucket": s3_bucket,
                    "S3Key": f"vmbuild-import/demo-1.2.3-1/{raw.name}",
                },
            },
            "ClientToken": ANY,
            "TagSpecifications": [
                {"ResourceType": "import-snapshot-task", "Tags": expected_tags(raw)}
            ],
            "RoleName": "vmimport-ci",
        },
    )
    stub.add_response(
        "describe_import_snapshot_tasks",
        {"ImportSnapshotTasks": [{"SnapshotTaskDetail": {"Status": "active", "Progress": "5"}}]},
        {"ImportTaskIds": ["import-snap-1"]},
    )
    stub.add_response(
        "describe_import_snapshot_tasks",
        {"ImportSnapshotTasks": [{"SnapshotTaskDetail": {
            "Status": "completed", "SnapshotId": "snap-9"
        }}]},
        None,
    )  # fmt: skip
    stub.add_response(
        "register_image",
        {"ImageId": "ami-9"},
        {
            "Name": NAME,
            "Description": NAME,
            "Architecture": "x86_64",
            "RootDeviceName": "/dev/xvda",
            "VirtualizationType": "hvm",
            "EnaSupport": True,
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "SnapshotId": "snap-9",
                        "DeleteOnTermination": True,
                        "VolumeType": "gp3",
                    },
                }
            ],
            "BootMode": "uefi",
        },
    )
    stub.add_response("create_tags", {}, None)
    stub.add_response("describe_images", {"Images": [image("ami-9", raw.sha256, "pending")]}, None)
    stub.add_response("describe_images", {"Images": [image("ami-9", raw.sha256)]}, None)
    stub.add_response("describe_images", {"Images": [image("ami-9", raw.sha256)]}, by_name())
    with stub:
        result = store.publish([raw], build.image)
    stub.assert_no_pending_responses()
    assert result["objects"][0]["image_id"] == "ami-9"
    # keep_s3_object: the staged disk stays.
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [f"vmbuild-import/demo-1.2.3-1/{raw.name}"]


def test_import_timeout_cancels_and_cleans_up(s3_env, s3_server, s3_bucket, sample_build: Path):
    build = load_build(sample_build)
    store, stub = make_store(s3_server, s3_bucket, "import-image")
    store.timeout = 0  # the first poll is already past the deadline
    (vmdk,) = store.select(build.files)
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response("describe_images", {"Images": []}, by_name())
    stub.add_response("import_image", {"ImportTaskId": "import-ami-7"}, None)
    stub.add_response(
        "describe_import_image_tasks", {"ImportImageTasks": [{"Status": "active"}]}, None
    )
    stub.add_response("cancel_import_task", {}, {"ImportTaskId": "import-ami-7"})
    with stub, pytest.raises(BuildError, match="import-ami-7 still active .* cancelled"):
        store.publish([vmdk], build.image)
    stub.assert_no_pending_responses()
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
