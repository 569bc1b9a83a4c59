"""OCI store against Debian's docker-registry on 127.0.0.1 (tests/fixtures/registry.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import requests

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def oci_config(registry, repo: str, **extra) -> dict:
    return {
        "name": "kubevirt",
        "type": "oci",
        "registry": registry.address,
        "repository": repo,
        "insecure": True,
        **extra,
    }


def pull_manifest(registry, repo: str, tag: str) -> dict:
    resp = requests.get(
        f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST}, timeout=30
    )
    resp.raise_for_status()
    return resp.json()


def pull_blob(registry, repo: str, digest: str) -> bytes:
    resp = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=60)
    resp.raise_for_status()
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest
    return resp.content


def test_containerdisk(oci_registry, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(oci_config(oci_registry, "vms/demo"), "distribute[0]")
    files = store.select(build.files)
    assert [f.format for f in files] == ["qcow2"]
    store.check()
    result = store.publish(files, build.image)
    assert result["verified"] and not result["skipped"]
    manifest = pull_manifest(oci_registry, "vms/demo", "1.2.3")
    assert result["objects"][0]["digest"].startswith("sha256:")
    (layer,) = manifest["layers"]
    blob = pull_blob(oci_registry, "vms/demo", layer["digest"])
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.getmember("disk/demo-1.2.3.qcow2")
        assert (member.uid, member.gid) == (107, 107)
        content = tar.extractfile(member).read()
    assert hashlib.sha256(content).hexdigest() == files[0].sha256
    config = json.loads(pull_blob(oci_registry, "vms/demo", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    # A second run finds the same manifest digest and uploads nothing.
    again = stores.load(oci_config(oci_registry, "vms/demo"), "distribute[0]")
    assert again.publish(files, build.image)["skipped"]
    assert [r.name for r in again.list()] == ["1.2.3"]
    again.delete("1.2.3")
    assert (
        requests.head(
            f"{oci_registry.url}/v2/vms/demo/manifests/1.2.3",
            headers={"Accept": MANIFEST},
            timeout=9,
        ).status_code
        == 404
    )


def test_artifact_holds_every_file(oci_registry, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(
        oci_config(oci_registry, "artifacts/demo", mode="artifact", tag="{version}-disks"),
        "distribute[0]",
    )
    result = store.publish(store.select(build.files), build.image)
    assert result["verified"]
    manifest = pull_manifest(oci_registry, "artifacts/demo", "1.2.3-disks")
    assert manifest["artifactType"] == "application/vnd.vmbuild.disk-image.v1"
    titles = {x["annotations"]["org.opencontainers.image.title"]: x for x in manifest["layers"]}
    assert set(titles) == {f.name for f in build.files}
    for f in build.files:
        assert titles[f.name]["digest"] == f"sha256:{f.sha256}"
        assert titles[f.name]["size"] == f.size


def test_containerdisk_refuses_vmdk(oci_registry, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(oci_config(oci_registry, "x", formats=["vmdk"]), "distribute[4]")
    with pytest.raises(
        InputError, match=r"distribute\[4\] \(name: kubevirt\): formats\[0\]: .*vmdk"
    ):
        store.select(build.files)


def test_registry_auth(oci_registry_auth, sample_build: Path, monkeypatch):
    build = load_build(sample_build)
    monkeypatch.setenv("REG_PASSWORD", oci_registry_auth.password)
    config = oci_config(
        oci_registry_auth, "auth/demo", username="vmbuild", password_env="REG_PASSWORD"
    )
    store = stores.load(config, "distribute[0]")
    store.check()
    assert store.publish(store.select(build.files), build.image)["verified"]
    monkeypatch.setenv("REG_PASSWORD", "not-the-password")
    with pytest.raises(InputError, match="username: the registry refused") as exc:
        stores.load(config, "distribute[0]").check()
    assert "not-the-password" not in str(exc.value)
    with pytest.raises(InputError, match="username: the registry requires credentials"):
        stores.load(oci_config(oci_registry_auth, "auth/demo"), "distribute[0]").check()


def test_unreachable_registry(sample_build: Path):
    from vmbuild.netutil import free_port

    config = {"name": "r", "type": "oci", "registry": f"127.0.0.1:{free_port()}"}
    config.update(repository="x", insecure=True)
    with pytest.raises(InputError, match="registry: cannot reach"):
        stores.load(config, "distribute[0]").check()
