"""SFTP store against a real OpenSSH sshd on 127.0.0.1 (fixture `sshd_server`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError


def sftp_config(server, path: Path, **extra) -> dict:
    return {
        "name": "mirror",
        "type": "sftp",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "key_file": str(server.key_file),
        "host_key": server.host_key,
        "path": str(path),
        "prefix": "{version}/",
        **extra,
    }


def test_upload_verify_skip_list_delete(sshd_server, sftp_dir: Path, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(sftp_config(sshd_server, sftp_dir / "images"), "distribute[0]")
    try:
        store.check()
        result = store.publish(build.files, build.image)
        assert result["verified"] and not result["skipped"]
        for f in build.files:
            remote = sftp_dir / "images" / "1.2.3" / f.name
            assert remote.read_bytes() == f.path.read_bytes()
            assert (remote.parent / f"{f.name}.sha256").read_text().split()[0] == f.sha256
        # No temporary names left behind.
        assert not list(sftp_dir.rglob("*.part"))
        assert store.publish(build.files, build.image)["skipped"]
        assert [r.name for r in store.list()] == sorted(f"1.2.3/{f.name}" for f in build.files)
        store.delete(f"1.2.3/{build.files[0].name}")
        assert not (sftp_dir / "images" / "1.2.3" / build.files[0].name).exists()
    finally:
        store.close()


def test_wrong_host_key_is_refused(sshd_server, sftp_dir: Path, tmp_path: Path):
    from vmbuild.proc import run

    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")])
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    store = stores.load(sftp_config(sshd_server, sftp_dir, host_key=other), "distribute[1]")
    with pytest.raises(InputError, match=r"\(name: mirror\): host_key: .*does not match"):
        store.check()


def test_unknown_host_is_refused(sshd_server, sftp_dir: Path, tmp_path: Path):
    config = sftp_config(sshd_server, sftp_dir)
    del config["host_key"]
    (tmp_path / "known_hosts").write_text("")
    config["known_hosts"] = str(tmp_path / "known_hosts")
    store = stores.load(config, "distribute[0]")
    with pytest.raises(InputError, match="host_key: .* is not known"):
        store.check()
    # The same server is accepted once its key is in the known_hosts file.
    (tmp_path / "known_hosts").write_text(sshd_server.known_hosts_line() + "\n")
    ok = stores.load(config, "distribute[0]")
    ok.check()
    ok.close()


def test_bad_key_and_unreachable(sshd_server, sftp_dir: Path, tmp_path: Path):
    from vmbuild.netutil import free_port
    from vmbuild.proc import run

    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")])
    config = sftp_config(sshd_server, sftp_dir, key_file=str(tmp_path / "stranger"))
    with pytest.raises(InputError, match="key_file: authentication as"):
        stores.load(config, "distribute[0]").check()
    config = sftp_config(sshd_server, sftp_dir, port=free_port())
    with pytest.raises(InputError, match="host: cannot reach 127.0.0.1"):
        stores.load(config, "distribute[0]").check()
