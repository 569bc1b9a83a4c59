"""`vmbuild run` end to end under TCG with real libvirt, QEMU, SSH and S3.

One successful cold build is shared by the assertions about its result (each VM boot
costs about a minute under TCG); failures and interrupts get builds of their own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.imagefs import ImageFS
from tests.integration.buildkit import (
    DATA,
    agent_steps,
    assert_nothing_left,
    domains_of,
    manifest,
    only_build_dir,
    write_recipe,
)
from vmbuild import disk
from vmbuild.build import BuildOptions, run_build
from vmbuild.config import load_recipe
from vmbuild.errors import BuildError
from vmbuild.fsutil import sha256_file

pytestmark = pytest.mark.integration
GREETING = "hello from the integration test"


@pytest.fixture(scope="module")
def cold_build(base_image, s3_server, tmp_path_factory):
    """A full cold build (build VM, sanitize, snapshot, test VM, outputs, distribution)."""
    folder = tmp_path_factory.mktemp("run-cold")
    bucket = "vmbuild-run-test"
    s3_server.client().create_bucket(Bucket=bucket)
    parent_sum = sha256_file(base_image)
    recipe = write_recipe(
        folder, "cold", base_image,
        [{"path": str(DATA / "marker.yml"), "parameters": {"greeting": GREETING}},
         {"path": str(DATA / "after-cloud-init.yml")}],
        # cloud-init's last stage: the agent starts meanwhile and waits at its gate.
        user_data={"runcmd": ["sleep 3; echo ran > /run/vmbuild-runcmd"]},
        sanitize={"extra_paths": ["/opt/build-secret.txt"]},
        output={"formats": ["qcow2", "raw"]},
        distribute=[
            {"name": "share", "type": "directory", "path": str(folder / "share")},
            {"name": "objects", "type": "s3", "bucket": bucket, "endpoint_url": s3_server.url,
             "region": s3_server.region, "prefix": "images/{name}/{version}/",
             "formats": ["qcow2"]},
        ],
    )  # fmt: skip
    saved = {k: os.environ.get(k) for k in s3_server.env()}
    os.environ.update(s3_server.env())
    try:
        ctx = run_build(load_recipe(recipe), BuildOptions(warm=False))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"ctx": ctx, "folder": folder, "bucket": bucket, "parent_sum": parent_sum}


def test_new_image_holds_the_build_and_is_sanitized(cold_build):
    image = cold_build["ctx"].build_dir / "image.qcow2"
    info = disk.info(image)
    assert info.format == "qcow2" and info.backing_file is None
    assert info.compression == "zstd"
    with ImageFS(image) as fs:
        assert fs.read("/etc/vmbuild-marker") == GREETING + "\n"
        assert not fs.exists("/opt/build-secret.txt")  # sanitize.extra_paths
        assert [n for n in fs.names("/etc/ssh") if n.startswith("ssh_host_")] == []
        assert fs.read("/etc/machine-id") == ""
        assert "build" not in fs.names("/home")
        assert "build:" not in fs.read("/etc/passwd")
        assert not fs.exists("/etc/sudoers.d/90-cloud-init-users")
        assert fs.names("/var/lib/cloud") == []
        assert fs.names("/var/tmp") == []  # includes the agent and its state
        assert fs.names("/var/lib/dhcp") == [] or not any(
            n.endswith(".leases") for n in fs.names("/var/lib/dhcp")
        )
        assert not fs.exists("/root/.bash_history")


def test_test_phase_ran_in_a_second_vm_booted_from_the_new_image(cold_build):
    build_dir = cold_build["ctx"].build_dir
    build_steps = agent_steps(build_dir / "logs" / "agent-build")
    test_steps = agent_steps(build_dir / "logs" / "agent-test")
    assert build_steps["WriteMarker"]["status"] == "Success"
    assert build_steps["CheckMarker"]["status"] == "Success"
    assert test_steps["MarkerInNewImage"]["status"] == "Success"
    # Both VMs booted cold: no step ran before cloud-init had finished.
    assert build_steps["RuncmdRanBeforeBuild"]["status"] == "Success"
    assert test_steps["RuncmdRanBeforeTest"]["status"] == "Success"

    def boot_id(step):
        return re.search(r"BOOT_ID=(\S+)", step["outputs"]["stdout"]).group(1)

    assert boot_id(build_steps["WriteMarker"]) != boot_id(test_steps["MarkerInNewImage"])
    assert "vmbuild-test" in (build_dir / "logs" / "console-test.log").read_text(errors="replace")


def test_manifest_sums_outputs_and_parent(cold_build, base_image):
    ctx = cold_build["ctx"]
    data = manifest(ctx.build_dir)
    assert data["status"] == "success"
    assert data["parent"]["sha256"] == cold_build["parent_sum"] == sha256_file(base_image)
    assert data["components"][0]["sha256"] == sha256_file(DATA / "marker.yml")
    assert data["host"]["qemu"] and data["host"]["libvirt"]
    for stage in ("prepare", "launch", "build", "sanitize", "snapshot", "test", "output"):
        assert data["stage_seconds"][stage] > 0
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (ctx.build_dir / "SHA256SUMS").read_text().splitlines()
    )
    assert sums["image.qcow2"] == sha256_file(ctx.build_dir / "image.qcow2")
    formats = {o["format"]: o for o in data["outputs"]}
    assert set(formats) == {"qcow2", "raw"}
    raw = ctx.build_dir / formats["raw"]["path"]
    assert sums[formats["raw"]["path"]] == sha256_file(raw)
    assert disk.compare(raw, ctx.build_dir / "image.qcow2")
    assert_nothing_left_but_image(ctx.build_dir)


def assert_nothing_left_but_image(build_dir: Path) -> None:
    assert not (build_dir / ".tmp").exists()
    assert domains_of(build_dir) == []


def test_distributed_to_directory_and_s3(cold_build, s3_server):
    ctx = cold_build["ctx"]
    data = manifest(ctx.build_dir)
    names = {d["store"] for d in data["distributions"]}
    assert names == {"share", "objects"}
    shared = {sha256_file(p) for p in (cold_build["folder"] / "share").rglob("*") if p.is_file()}
    assert {o["sha256"] for o in data["outputs"]} <= shared
    listing = s3_server.client().list_objects_v2(
        Bucket=cold_build["bucket"], Prefix="images/cold/1.0.0/"
    )
    keys = {o["Key"]: o["Size"] for o in listing.get("Contents", [])}
    qcow2 = next(o for o in data["outputs"] if o["format"] == "qcow2")
    assert keys == {"images/cold/1.0.0/cold-1.0.0.qcow2": qcow2["size"]}


def test_failing_build_phase_fails_clearly_and_leaves_nothing(base_image, tmp_path):
    recipe = write_recipe(tmp_path, "fails", base_image,
                          [{"path": str(DATA / "fails-build.yml")}])  # fmt: skip
    with pytest.raises(BuildError) as caught:
        run_build(load_recipe(recipe), BuildOptions(warm=False, test=False))
    message = str(caught.value)
    assert "fails-build.yml" in message and "build phase failed" in message
    assert "BreaksOnPurpose" in message and "exit" in message
    build_dir = only_build_dir(tmp_path / "work")
    assert manifest(build_dir)["status"] == "failed"
    assert_nothing_left(build_dir)
    assert (build_dir / "logs" / "console-build.log").stat().st_size > 0


def test_cloud_init_error_fails_before_any_step_and_leaves_nothing(base_image, tmp_path):
    """The agent starts while cloud-init's last stage runs; when that stage fails, the
    gate stays closed: the build fails naming cloud-init, and no step has run."""
    recipe = write_recipe(tmp_path, "cloud-init-fails", base_image,
                          [{"path": str(DATA / "marker.yml"), "parameters": {"greeting": "x"}}],
                          user_data={"runcmd": ["sleep 2; exit 3"]})  # fmt: skip
    with pytest.raises(BuildError) as caught:
        run_build(load_recipe(recipe), BuildOptions(warm=False, test=False))
    message = str(caught.value)
    assert "cloud-init failed" in message and "scripts" in message, message
    build_dir = only_build_dir(tmp_path / "work")
    assert agent_steps(build_dir / "logs" / "agent-build") == {}
    assert manifest(build_dir)["status"] == "failed"
    assert_nothing_left(build_dir)


def test_failing_test_phase_fails_the_run(base_image, tmp_path):
    recipe = write_recipe(tmp_path, "fails-test", base_image,
                          [{"path": str(DATA / "fails-test.yml")}])  # fmt: skip
    with pytest.raises(BuildError) as caught:
        run_build(load_recipe(recipe), BuildOptions(warm=False))
    message = str(caught.value)
    assert "test phase failed" in message and "ExpectsMissingFile" in message
    build_dir = only_build_dir(tmp_path / "work")
    assert manifest(build_dir)["status"] == "failed"
    assert_nothing_left(build_dir)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_mid_build_leaves_nothing(base_image, tmp_path, sig):
    component = {"path": str(DATA / "marker.yml"), "parameters": {"greeting": "x"}}
    recipe = write_recipe(tmp_path, "interrupted", base_image, [component])
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmbuild.cli", "run", "--no-warm", str(recipe)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    work = tmp_path / "work"
    while not (work.is_dir() and any(work.iterdir()) and domains_of(next(work.iterdir()))):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the build VM never started"
        time.sleep(0.5)
    time.sleep(2)  # mid-boot
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    build_dir = only_build_dir(tmp_path / "work")
    assert manifest(build_dir)["status"] == "interrupted"
    assert_nothing_left(build_dir)
