"""libvirt pool store against qemu:///system with a throwaway `dir` pool (fixture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuild import disk, stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError


def test_sparse_upload_verify_skip(libvirt_pool: str, sample_build: Path):
    import libvirt

    build = load_build(sample_build)
    store = stores.load(
        {"name": "pool", "type": "libvirt-pool", "pool": libvirt_pool, "volume": "{name}.{ext}"},
        "distribute[0]",
    )
    files = store.select(build.files)
    assert sorted(f.format for f in files) == ["qcow2", "raw"]
    try:
        store.check()
        result = store.publish(files, build.image)
        assert result["verified"] and not result["skipped"]
        paths = {o["name"]: Path(o["volume_path"]) for o in result["objects"]}
        assert set(paths) == {"demo.qcow2", "demo.raw"}
        raw = next(f for f in files if f.format == "raw")
        # Sent sparsely: the 64 MiB raw volume holds only its few MiB of data.
        assert os.stat(paths["demo.raw"]).st_blocks * 512 < raw.size // 4
        assert disk.compare(paths["demo.raw"], sample_build / "image.qcow2")
        assert disk.info(paths["demo.qcow2"]).format == "qcow2"
        assert store.publish(files, build.image)["skipped"]
        assert {"demo.qcow2", "demo.raw"} <= {r.name for r in store.list()}
    finally:
        store.delete("demo.qcow2")
        store.delete("demo.raw")
        store.close()
    conn = libvirt.open("qemu:///system")
    assert "demo.raw" not in conn.storagePoolLookupByName(libvirt_pool).listVolumes()
    conn.close()


def test_missing_pool(sample_build: Path):
    store = stores.load(
        {"name": "p", "type": "libvirt-pool", "pool": "no-such-pool-vmbuild"}, "distribute[1]"
    )
    with pytest.raises(InputError, match=r"distribute\[1\] \(name: p\): pool: no storage pool"):
        store.check()
