"""The VM layer: accelerator probe, domain XML, networking and the VM lifecycle.

Typical use::

    spec = VMSpec(build_id=..., role="build", disk=overlay, workdir=work, console_log=log)
    with launch(spec) as vm, vm.wait_ready() as ssh:
        ssh.run("uname -a", stream=print_line)
        vm.shutdown()
"""

from vmbuild.vm.accel import Accelerator, kvm_works, select
from vmbuild.vm.machine import (
    Machine,
    ReadyTimeouts,
    VMSpec,
    domain_name,
    launch,
    leftover_domains,
    remove_leftovers,
)

__all__ = [
    "Accelerator",
    "Machine",
    "ReadyTimeouts",
    "VMSpec",
    "domain_name",
    "kvm_works",
    "launch",
    "leftover_domains",
    "remove_leftovers",
    "select",
]
