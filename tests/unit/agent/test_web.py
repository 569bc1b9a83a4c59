"""WebDownload against a real HTTP server on 127.0.0.1: checksums, retries, folders, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.fixtures.http_server import HttpServer
from tests.unit.agent.helpers import Agent, simple


def download(name: str, **inputs) -> dict:
    return {"name": name, "action": "WebDownload", "inputs": [inputs]}


def test_download_with_checksum_retries_and_folder_destination(
    agent: Agent, tmp_path: Path, http_server: HttpServer
):
    payload = b"component payload\n" * 1000
    (http_server.root / "payload.bin").write_bytes(payload)
    sha256 = hashlib.sha256(payload).hexdigest()
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "dl"
    dest.mkdir()
    doc = simple(
        download(
            "Plain",
            source=http_server.url("payload.bin"),
            destination=f"{dest}/plain.bin",
            checksum=sha256,
        ),
        download(
            "Md5",
            source=http_server.url("payload.bin"),
            destination=f"{dest}/",
            checksum=md5,
            algorithm="MD5",
        ),
        download(
            "Flaky",
            source=http_server.url(f"flaky/2/payload.bin?{tmp_path.name}"),
            destination=f"{dest}/flaky.bin",
        ),
        {
            "name": "Use",
            "action": "Assert",
            "inputs": {"fileSHA256Equals": sha256, "path": "{{ build.Plain.outputs.destination }}"},
        },
    )
    result = agent.run(doc, timeout=60)
    assert result.code == 0, result.stderr
    assert (dest / "plain.bin").read_bytes() == payload
    assert (dest / "payload.bin").read_bytes() == payload
    assert (dest / "flaky.bin").read_bytes() == payload
    assert result.step("Plain")["outputs"] == {"destination": f"{dest}/plain.bin"}
    assert http_server.hits[f"/flaky/2/payload.bin?{tmp_path.name}"] == 3
    assert "retrying (1/3)" in result.stderr


def test_checksum_mismatch_and_missing_file_fail_cleanly(
    agent: Agent, tmp_path: Path, http_server: HttpServer
):
    (http_server.root / "small.txt").write_text("small")
    doc = simple(
        download(
            "Mismatch",
            source=http_server.url("small.txt"),
            destination=f"{tmp_path}/s.txt",
            checksum="0" * 64,
            algorithm="SHA256",
        ),
        download("Missing", source=http_server.url("no-such-file"), destination=f"{tmp_path}/m"),
        download(
            "Dead",
            source=http_server.url(f"flaky/9/small.txt?{tmp_path.name}"),
            destination=f"{tmp_path}/d",
        ),
        phase="build",
    )
    for step in doc["phases"][0]["steps"]:
        step["onFailure"] = "Ignore"
    result = agent.run(doc, timeout=90)
    assert result.code == 0
    assert "checksum mismatch" in result.step("Mismatch")["failureMessage"]
    assert "HTTP 404" in result.step("Missing")["failureMessage"]
    assert "after 3 attempts" in result.step("Dead")["failureMessage"]
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("doc.yml", "logs"))
    assert leftovers == [], "a failed download left a file behind"
