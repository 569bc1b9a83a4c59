"""Test: boot a fresh VM from the new image (on a throwaway overlay, with a fresh seed)
and run every component's test phase. The VM boots the final build disk, whose bytes
`image.qcow2` is being written from meanwhile (stages/snapshot.py); neither is written.

Once the tests pass, copying the agent's logs out and destroying the VM go on in the
background while the output stage runs; the build completes only after both
(`BuildContext.join_pending`).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future

from vmbuild import disk, events
from vmbuild.build import BuildContext
from vmbuild.pipeline import BaseStage
from vmbuild.stages.guest import RunningVM, fetch_logs, push_payload, run_phase


class TestImage(BaseStage):
    name = "test"
    title = "Testing the new image in a fresh VM"

    def __init__(self) -> None:
        self.vm: RunningVM | None = None
        self.teardown: Future[None] | None = None

    def run(self, ctx: BuildContext) -> None:
        source = ctx.overlay  # final: the build VM is off
        assert source is not None
        self.vm = RunningVM.boot_ready(
            ctx, "test", lambda: disk.overlay(source, ctx.tmp / "test.qcow2")
        )
        assert self.vm.session is not None
        push_payload(ctx, self.vm.session)
        deadline = time.monotonic() + ctx.recipe.test.timeout
        try:
            run_phase(ctx, self.vm, "test", deadline=deadline)
        except BaseException:
            fetch_logs(self.vm, ctx.logs / "agent-test")
            raise
        vm, self.vm = self.vm, None
        self.teardown = events.submit(lambda: self._tear_down(ctx, vm), "test-teardown")
        ctx.pending.append(self.teardown)

    @staticmethod
    def _tear_down(ctx: BuildContext, vm: RunningVM) -> None:
        """Copy the logs out, destroy the VM (freeing its CPU and memory), drop its disk."""
        fetch_logs(vm, ctx.logs / "agent-test")
        vm.close(None)
        (ctx.tmp / "test.qcow2").unlink(missing_ok=True)

    def cleanup(self, ctx: BuildContext) -> None:
        if self.teardown is not None:  # a failure was raised by join_pending already
            with contextlib.suppress(Exception):
                self.teardown.result()
        if self.vm is not None:
            self.vm.close(ctx.error)
        (ctx.tmp / "test.qcow2").unlink(missing_ok=True)
