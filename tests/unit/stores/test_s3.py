"""S3 store against a real SeaweedFS on 127.0.0.1: multipart, ETag verification, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_server) -> None:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)


def s3_config(s3_server, bucket: str, **extra) -> dict:
    return {
        "name": "objects",
        "type": "s3",
        "bucket": bucket,
        "endpoint_url": s3_server.url,
        "prefix": "images/{name}/{version}/",
        **extra,
    }


def test_multipart_upload_verified_and_skipped(aws_env, s3_server, s3_bucket, sample_build: Path):
    build = load_build(sample_build)
    raw = [f for f in build.files if f.format == "raw"]
    # 64 MiB raw in 5 MiB parts: a real multipart upload, ETag "<md5>-13".
    store = stores.load(s3_config(s3_server, s3_bucket, multipart_chunk_mib=5), "distribute[0]")
    store.check()
    result = store.publish(build.files, build.image)
    assert result["verified"] and not result["skipped"]
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="images/demo/1.2.3/demo-1.2.3.raw")
    assert head["ContentLength"] == raw[0].size
    assert head["ETag"].strip('"').endswith("-13")
    assert head["Metadata"]["sha256"] == raw[0].sha256
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="images/demo/1.2.3/demo-1.2.3.raw")
    assert body["Body"].read() == raw[0].path.read_bytes()
    assert store.publish(build.files, build.image)["skipped"]
    assert {r.name for r in store.list()} == {f"images/demo/1.2.3/{f.name}" for f in build.files}
    store.delete("images/demo/1.2.3/demo-1.2.3.raw")
    assert len(store.list()) == len(build.files) - 1


def test_tampered_object_is_uploaded_again(aws_env, s3_server, s3_bucket, sample_build: Path):
    build = load_build(sample_build)
    file = build.files[0]
    key = f"images/demo/1.2.3/{file.name}"
    s3_server.client().put_object(
        Bucket=s3_bucket, Key=key, Body=b"\0" * file.size, Metadata={"sha256": file.sha256}
    )
    store = stores.load(s3_config(s3_server, s3_bucket), "distribute[0]")
    result = store.publish([file], build.image)
    assert not result["skipped"]
    got = s3_server.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert got == file.path.read_bytes()


def test_missing_bucket(aws_env, s3_server):
    store = stores.load(s3_config(s3_server, "no-such-bucket"), "distribute[2]")
    with pytest.raises(InputError, match=r"distribute\[2\] \(name: objects\): bucket: .*does not"):
        store.check()


def test_wrong_credentials_are_not_echoed(monkeypatch, aws_env, s3_server, s3_bucket):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    store = stores.load(s3_config(s3_server, s3_bucket), "distribute[0]")
    with pytest.raises(InputError) as exc:
        store.check()
    assert "credentials were refused" in str(exc.value)
    assert "wrong-secret-value" not in str(exc.value) + str(exc.value.hint)


def test_unreachable_endpoint(aws_env, s3_bucket):
    from vmbuild.netutil import free_port

    config = {"name": "x", "type": "s3", "bucket": s3_bucket}
    config["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    store = stores.load(config, "distribute[0]")
    with pytest.raises(InputError, match="endpoint_url: cannot reach"):
        store.check()
