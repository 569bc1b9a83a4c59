"""Test: boot a fresh VM from the new image (on a throwaway overlay, with a fresh seed)
and run every component's test phase. The image is the standalone snapshot; when the
recipe wants it compressed, `image.qcow2` is being compressed from those same bytes
meanwhile (stages/snapshot.py). The image itself is never written."""

from __future__ import annotations

import contextlib
import time

from vmbuild import disk
from vmbuild.build import BuildContext
from vmbuild.pipeline import BaseStage
from vmbuild.stages.guest import RunningVM, fetch_logs, push_payload, run_phase


class TestImage(BaseStage):
    name = "test"
    title = "Testing the new image in a fresh VM"

    def __init__(self) -> None:
        self.vm: RunningVM | None = None

    def run(self, ctx: BuildContext) -> None:
        snapshot = ctx.snapshot
        assert snapshot is not None
        self.vm = RunningVM.boot_ready(
            ctx, "test", lambda: disk.overlay(snapshot, ctx.tmp / "test.qcow2")
        )
        assert self.vm.session is not None
        push_payload(ctx, self.vm.session)
        deadline = time.monotonic() + ctx.recipe.test.timeout
        try:
            run_phase(ctx, self.vm, "test", deadline=deadline)
        finally:
            if self.vm.session is not None and self.vm.session.is_active():
                with contextlib.suppress(Exception):
                    fetch_logs(self.vm.session, ctx.logs / "agent-test")
        self.vm.close(None)  # done with it: free its CPU and memory before output
        self.vm = None
        (ctx.tmp / "test.qcow2").unlink(missing_ok=True)

    def cleanup(self, ctx: BuildContext) -> None:
        if self.vm is not None:
            self.vm.close(ctx.error)
        (ctx.tmp / "test.qcow2").unlink(missing_ok=True)
