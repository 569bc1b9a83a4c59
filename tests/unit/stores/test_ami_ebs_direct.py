"""AMI store, `ebs-direct` route, against moto's server on 127.0.0.1 (EBS direct + EC2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError
from vmbuild.stores.ami import BLOCK


def ami_config(endpoint: str, **extra) -> dict:
    return {
        "name": "aws",
        "type": "ami",
        "method": "ebs-direct",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "boot_mode": "uefi",
        "tags": {"team": "images"},
        "poll_interval": 0,
        **extra,
    }


def test_ebs_direct_registers_an_ami(moto_endpoint, aws_moto_env, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(ami_config(moto_endpoint), "distribute[0]")
    files = store.select(build.files)
    assert [f.format for f in files] == ["raw"]
    store.check()
    result = store.publish(files, build.image)
    (obj,) = result["objects"]
    assert result["verified"] and not obj["skipped"]
    assert obj["image_id"].startswith("ami-") and obj["snapshot_id"].startswith("snap-")
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    (image,) = ec2.describe_images(ImageIds=[obj["image_id"]])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["vmbuild:sha256"] == files[0].sha256
    assert tags["team"] == "images" and tags["Name"] == "demo-1.2.3-demo-1.2.3-1"
    # The snapshot holds the non-zero blocks of the raw disk, byte for byte.
    ebs = boto3.client("ebs", endpoint_url=moto_endpoint, region_name="us-east-1")
    blocks = ebs.list_snapshot_blocks(SnapshotId=obj["snapshot_id"])["Blocks"]
    data = files[0].path.read_bytes()
    expected = {
        i for i in range(len(data) // BLOCK) if data[i * BLOCK : (i + 1) * BLOCK].strip(b"\0")
    }
    assert {b["BlockIndex"] for b in blocks} == expected
    for b in blocks:
        got = ebs.get_snapshot_block(
            SnapshotId=obj["snapshot_id"], BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"]
        )["BlockData"].read()
        want = data[b["BlockIndex"] * BLOCK : (b["BlockIndex"] + 1) * BLOCK]
        assert hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
    # Re-run: the tagged AMI is found and nothing is uploaded.
    again = stores.load(ami_config(moto_endpoint), "distribute[0]").publish(files, build.image)
    assert again["skipped"] and again["objects"][0]["image_id"] == obj["image_id"]
    assert "demo-1.2.3-demo-1.2.3-1" in {r.name for r in store.list()}
    store.delete("demo-1.2.3-demo-1.2.3-1")
    assert ec2.describe_images(ImageIds=[obj["image_id"]])["Images"] == [] or all(
        i["State"] != "available" for i in ec2.describe_images(ImageIds=[obj["image_id"]])["Images"]
    )


def test_ebs_direct_takes_raw_only(moto_endpoint, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(ami_config(moto_endpoint, formats=["vmdk"]), "distribute[2]")
    with pytest.raises(InputError, match=r"formats\[0\]: a ami store cannot take vmdk"):
        store.select(build.files)


def test_import_needs_a_bucket():
    with pytest.raises(InputError, match=r"\(name: aws\): bucket: missing"):
        stores.load({"name": "aws", "type": "ami", "method": "import-image"}, "distribute[0]")
