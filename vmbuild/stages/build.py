"""Launch the build VM and run the components' build and validate phases in it."""

from __future__ import annotations

import time

from vmbuild import events, warm
from vmbuild.build import BuildContext
from vmbuild.pipeline import BaseStage
from vmbuild.stages.guest import RunningVM, fetch_logs, push_payload, run_phase


class LaunchBuildVM(BaseStage):
    name = "launch"
    title = "Booting the build VM"

    def __init__(self) -> None:
        self.vm: RunningVM | None = None

    def run(self, ctx: BuildContext) -> None:
        assert ctx.overlay is not None
        reason = warm.ineligible(ctx)
        if reason is None:
            self.vm = warm.start_build_vm(ctx)
        else:
            events.info(f"booting cold: {reason}")
        if self.vm is None:
            overlay = ctx.overlay
            self.vm = RunningVM.boot_ready(ctx, "build", lambda: ctx.parent_overlay(overlay))
        ctx.machine = self.vm

    def cleanup(self, ctx: BuildContext) -> None:
        if self.vm is not None:
            self.vm.close(ctx.error)


class RunPhases(BaseStage):
    name = "build"
    title = "Running build and validate phases"

    def run(self, ctx: BuildContext) -> None:
        vm: RunningVM = ctx.machine
        assert vm.session is not None
        push_payload(ctx, vm.session)
        deadline = time.monotonic() + ctx.timeouts()["build"]
        try:
            for phase in ("build", "validate"):
                with events.stage(f"phase:{phase}", f"{phase} phase"):
                    run_phase(ctx, vm, phase, deadline=deadline)
        finally:
            fetch_logs(vm, ctx.logs / "agent-build")
