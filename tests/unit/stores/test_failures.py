"""Failed uploads leave nothing under the final name; dropped connections are retried.

Where a server can fail for real on cue it does (a dropped SSH connection, a blob
whose digest the registry refuses, a libvirt stream cut short); a full disk and a
corrupted read-back cannot be produced here, so those two inject the fault and say so.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import requests

from vmbuild import events, stores
from vmbuild.distribute import load_build
from vmbuild.errors import BuildError
from vmbuild.stores.base import LocalFile, Store


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Store, "BACKOFF", 0.0)


def test_directory_full_disk_leaves_nothing(tmp_path: Path, sample_build: Path, monkeypatch):
    """Injected ENOSPC after part of the copy (a disk cannot be filled on cue here)."""
    import vmbuild.stores.directory as directory

    def partial_copy(src, dest, progress=None):
        Path(dest).write_bytes(Path(src).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(directory, "copy_sparse", partial_copy)
    build = load_build(sample_build)
    store = stores.load({"name": "d", "type": "directory", "path": str(tmp_path)}, "d[0]")
    with pytest.raises(OSError, match="No space"):
        store.publish(build.files[:1], build.image)
    assert list(tmp_path.iterdir()) == []


def sftp_store(server, path: Path):
    config = {
        "name": "mirror", "type": "sftp", "host": server.host, "port": server.port,
        "user": server.user, "key_file": str(server.key_file), "host_key": server.host_key,
        "path": str(path),
    }  # fmt: skip
    return stores.load(config, "distribute[0]")


def test_sftp_dropped_connection_is_retried(
    no_backoff, sshd_server, sftp_dir: Path, sample_build: Path
):
    build = load_build(sample_build)
    store = sftp_store(sshd_server, sftp_dir)
    warnings: list[str] = []
    unsubscribe = events.subscribe(
        lambda e: warnings.append(e.message) if e.kind == "warning" else None
    )
    try:
        store.check()
        store._ssh.get_transport().sock.close()  # the connection dies under the store
        result = store.publish(build.files[:1], build.image)
    finally:
        unsubscribe()
        store.close()
    assert result["verified"]
    assert any("retry 1/3" in w for w in warnings)
    assert (sftp_dir / build.files[0].name).read_bytes() == build.files[0].path.read_bytes()


def test_sftp_bad_readback_leaves_nothing(sshd_server, sftp_dir: Path, sample_build: Path):
    """Injected read-back mismatch (the server cannot be made to corrupt a file on cue)."""
    build = load_build(sample_build)
    store = sftp_store(sshd_server, sftp_dir)
    store._remote_sha256 = lambda path: (0, "0" * 64)
    with pytest.raises(BuildError, match="read-back differs"):
        store.publish(build.files[:1], build.image)
    store.close()
    assert list(sftp_dir.iterdir()) == []


def test_oci_refused_blob_leaves_no_tag(oci_registry, sample_build: Path, monkeypatch):
    import vmbuild.stores.oci as oci

    real = oci.containerdisk_layer

    def wrong_digest(file):
        blob = real(file)
        blob.digest = "sha256:" + "0" * 64  # the registry recomputes it and refuses the blob
        return blob

    monkeypatch.setattr(oci, "containerdisk_layer", wrong_digest)
    build = load_build(sample_build)
    config = {"name": "k", "type": "oci", "registry": oci_registry.address, "insecure": True}
    store = stores.load({**config, "repository": "broken/demo"}, "distribute[0]")
    with pytest.raises(BuildError, match="HTTP 400"):
        store.publish(store.select(build.files), build.image)
    resp = requests.head(f"{oci_registry.url}/v2/broken/demo/manifests/1.2.3", timeout=10)
    assert resp.status_code == 404


def test_libvirt_short_stream_removes_volume(libvirt_pool: str, sample_build: Path, tmp_path):
    import libvirt

    build = load_build(sample_build)
    raw = next(f for f in build.files if f.format == "raw")
    # The manifest promises more bytes than the file holds: the stream ends short.
    liar = LocalFile(raw.path, "raw", raw.sha256, raw.size + 1024 * 1024)
    store = stores.load(
        {"name": "p", "type": "libvirt-pool", "pool": libvirt_pool, "volume": "short.raw",
         "retries": 0},
        "distribute[0]",
    )  # fmt: skip
    with pytest.raises((BuildError, libvirt.libvirtError)):
        store.publish([liar], build.image)
    store.close()
    conn = libvirt.open("qemu:///system")
    try:
        assert "short.raw" not in conn.storagePoolLookupByName(libvirt_pool).listVolumes()
    finally:
        conn.close()
