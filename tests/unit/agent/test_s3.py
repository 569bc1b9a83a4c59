"""S3Upload/S3Download (stdlib SigV4) against the real S3-compatible server fixture."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures.s3 import S3Endpoint
from tests.unit.agent.helpers import Agent, simple


def test_upload_and_download_files_folders_and_multipart(
    agent: Agent, tmp_path: Path, s3_server: S3Endpoint, s3_bucket: str
):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 12345))
    out = tmp_path / "out"
    doc = simple(
        {
            "name": "UpFile",
            "action": "S3Upload",
            "inputs": [{"source": f"{src}/a.txt", "destination": f"s3://{s3_bucket}/single/"}],
        },
        {
            "name": "UpDir",
            "action": "S3Upload",
            "inputs": [
                {"source": str(src), "destination": f"s3://{s3_bucket}/tree", "recurse": True}
            ],
        },
        {
            "name": "UpBig",
            "action": "S3Upload",
            "inputs": [{"source": str(big), "destination": f"s3://{s3_bucket}/big.bin"}],
        },
        {
            "name": "DownOne",
            "action": "S3Download",
            "inputs": [
                {
                    "source": "{{ build.UpFile.outputs.destination }}",
                    "destination": f"{out}/one.txt",
                }
            ],
        },
        {
            "name": "DownAll",
            "action": "S3Download",
            "inputs": [{"source": f"s3://{s3_bucket}/tree/*", "destination": f"{out}/tree"}],
        },
        {
            "name": "DownBig",
            "action": "S3Download",
            "inputs": [{"source": f"s3://{s3_bucket}/big.bin", "destination": f"{out}/"}],
        },
    )
    env = {**s3_server.env(), "VMBUILD_AGENT_S3_PART_SIZE": str(5 * 1024 * 1024)}
    result = agent.run(doc, env=env, timeout=120)
    assert result.code == 0, result.stderr + result.stdout
    assert result.step("UpFile")["outputs"] == {"destination": f"s3://{s3_bucket}/single/a.txt"}
    assert (out / "one.txt").read_text() == "alpha"
    assert (out / "tree" / "sub" / "b.txt").read_text() == "beta"
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-2"), "a file over the part size goes multipart"
    keys = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    assert keys == ["big.bin", "single/a.txt", "tree/a.txt", "tree/sub/b.txt"]


def test_bad_credentials_fail_without_leaking_the_secret(
    agent: Agent, tmp_path: Path, s3_server: S3Endpoint, s3_bucket: str
):
    (tmp_path / "f").write_text("x")
    doc = simple(
        {
            "name": "Up",
            "action": "S3Upload",
            "inputs": [{"source": f"{tmp_path}/f", "destination": f"s3://{s3_bucket}/f"}],
        }
    )
    secret = "wrong-secret-value-1234"
    env = {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": secret}
    result = agent.run(doc, env=env)
    assert result.code == 1
    message = result.step("Up")["failureMessage"]
    assert "HTTP 403" in message and f"s3://{s3_bucket}/f" in message
    everything = result.stdout + result.stderr + (result.exec_dir / "console.log").read_text()
    everything += (result.exec_dir / "detailedoutput.json").read_text()
    assert secret not in everything


def test_credentials_from_a_profile_file(
    agent: Agent, tmp_path: Path, s3_server: S3Endpoint, s3_bucket: str
):
    s3_server.client().put_object(Bucket=s3_bucket, Key="k.txt", Body=b"from profile")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[build]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_SHARED_CREDENTIALS_FILE": str(creds),
            "AWS_PROFILE": "build",
            "AWS_ENDPOINT_URL_S3": s3_server.url,
            "AWS_REGION": s3_server.region,
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
        }
    )
    doc = simple(
        {
            "name": "Down",
            "action": "S3Download",
            "inputs": [{"source": f"s3://{s3_bucket}/k.txt", "destination": f"{tmp_path}/k"}],
        }
    )
    result = agent.run(doc, env=env)
    assert result.code == 0, result.stdout
    assert (tmp_path / "k").read_text() == "from profile"
