"""NoCloud seed: the ISO read back with pycdlib, user-data content and merging."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest
import yaml

from vmbuild.errors import InputError
from vmbuild.keys import generate_host_keys
from vmbuild.seed import SeedSpec, merge_user_data, read_iso, write_seed

BUILD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuildKeyForTestsOnly vmbuild-test"


@pytest.fixture(scope="module")
def host_keys():
    return generate_host_keys(("ed25519", "ecdsa"))


def _spec(host_keys, **kw) -> SeedSpec:
    base = dict(
        instance_id="vmbuild-t1-build-abc123",
        hostname="vmbuild-build",
        authorized_keys=[BUILD_KEY],
        host_keys=host_keys,
        mac="52:54:00:AB:CD:EF",
    )
    return SeedSpec(**{**base, **kw})


def test_iso_label_names_and_extensions(tmp_path: Path, host_keys) -> None:
    path = write_seed(tmp_path / "seed.iso", _spec(host_keys))
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        assert iso.has_rock_ridge() and iso.has_joliet()
        joliet = sorted(
            c.file_identifier().decode("utf-16_be")
            for c in iso.list_children(joliet_path="/")
            if not (c.is_dot() or c.is_dotdot())
        )
        assert joliet == ["meta-data", "network-config", "user-data"]
        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, joliet_path="/meta-data")
        assert yaml.safe_load(buf.getvalue())["instance-id"] == "vmbuild-t1-build-abc123"
    finally:
        iso.close()
    assert not list(tmp_path.glob("*.part")), "no temporary file left behind"


def test_user_data_has_build_user_and_pinned_host_keys(tmp_path: Path, host_keys) -> None:
    files = read_iso(write_seed(tmp_path / "seed.iso", _spec(host_keys)))
    assert files["user-data"].startswith(b"#cloud-config\n")
    data = yaml.safe_load(files["user-data"])
    (user,) = data["users"]
    assert user["name"] == "build"
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["ssh_authorized_keys"] == [BUILD_KEY]
    assert data["ssh_pwauth"] is False
    assert data["ssh_deletekeys"] is False
    assert data["ssh_keys"]["ed25519_public"] == host_keys[0].public
    assert data["ssh_keys"]["ed25519_private"] == host_keys[0].private
    assert data["ssh_keys"]["ecdsa_public"] == host_keys[1].public
    assert "BEGIN OPENSSH PRIVATE KEY" in data["ssh_keys"]["ecdsa_private"]

    meta = yaml.safe_load(files["meta-data"])
    assert meta == {"instance-id": "vmbuild-t1-build-abc123", "local-hostname": "vmbuild-build"}

    net = yaml.safe_load(files["network-config"])
    assert net["version"] == 2
    (nic,) = net["ethernets"].values()
    assert nic["match"] == {"macaddress": "52:54:00:ab:cd:ef"}
    assert nic["dhcp4"] is True


def test_recipe_user_data_is_merged(tmp_path: Path, host_keys) -> None:
    extra = {
        "packages": ["curl"],
        "users": [{"name": "alice"}],
        "write_files": [{"path": "/etc/motd", "content": "hello\nworld\n"}],
        "ssh_pwauth": False,
    }
    files = read_iso(write_seed(tmp_path / "s.iso", _spec(host_keys, extra_user_data=extra)))
    data = yaml.safe_load(files["user-data"])
    assert [u["name"] for u in data["users"]] == ["build", "alice"]
    assert data["packages"] == ["curl"]
    assert data["write_files"][0]["content"] == "hello\nworld\n"
    assert data["ssh_keys"]["ed25519_public"] == host_keys[0].public


def test_merge_rules() -> None:
    base = {"a": {"x": 1, "l": [1]}, "b": [1], "c": "old"}
    merged = merge_user_data(base, {"a": {"y": 2, "l": [2]}, "b": [2], "c": "new"})
    assert merged == {"a": {"x": 1, "y": 2, "l": [1, 2]}, "b": [1, 2], "c": "new"}
    assert base["b"] == [1], "the base is not modified"


@pytest.mark.parametrize("key", ["ssh_keys", "ssh_deletekeys"])
def test_recipe_may_not_undo_host_key_pinning(key: str, host_keys, tmp_path: Path) -> None:
    spec = _spec(host_keys, extra_user_data={key: True}, extra_source="recipe.yml: user_data")
    with pytest.raises(InputError, match=rf"recipe.yml: user_data\.{key}"):
        write_seed(tmp_path / "seed.iso", spec)
    assert not list(tmp_path.iterdir()), "nothing written on bad input"


def test_user_data_must_be_a_mapping(host_keys, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="user_data: must be a mapping"):
        write_seed(tmp_path / "seed.iso", _spec(host_keys, extra_user_data=["x"]))


def test_no_mac_means_no_network_config(tmp_path: Path, host_keys) -> None:
    files = read_iso(write_seed(tmp_path / "seed.iso", _spec(host_keys, mac=None)))
    assert sorted(files) == ["meta-data", "user-data"]
