"""Networking helpers: lease/agent address parsing, config validation, forwards, ports."""

from __future__ import annotations

import re

import pytest

from vmbuild.errors import InputError
from vmbuild.netutil import free_port
from vmbuild.vm.network import (
    Forward,
    UserNetwork,
    from_config,
    is_port_clash,
    pick_address,
    random_mac,
)

MAC = "52:54:00:ab:cd:ef"

# The shape libvirt's interfaceAddresses() returns (lease source and agent source).
LEASES = {
    "vnet3": {
        "hwaddr": "52:54:00:00:00:01",
        "addrs": [{"type": 0, "addr": "192.168.122.50", "prefix": 24}],
    },
    "vnet4": {
        "hwaddr": MAC.upper(),
        "addrs": [
            {"type": 1, "addr": "fd00::5", "prefix": 64},
            {"type": 0, "addr": "192.168.122.77", "prefix": 24},
        ],
    },
}
AGENT = {
    "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": 0, "addr": "127.0.0.1"}]},
    "ens3": {
        "hwaddr": MAC,
        "addrs": [
            {"type": 1, "addr": "fe80::5054:ff:feab:cdef", "prefix": 64},
            {"type": 0, "addr": "169.254.3.3", "prefix": 16},
            {"type": 0, "addr": "10.0.0.9", "prefix": 24},
        ],
    },
}


def test_pick_address_from_leases_matches_mac() -> None:
    assert pick_address(LEASES, MAC) == "192.168.122.77"
    assert pick_address(LEASES, MAC, ipv6=True) == "fd00::5"
    assert pick_address(LEASES, "52:54:00:99:99:99") is None


def test_pick_address_from_agent_skips_loopback_and_link_local() -> None:
    assert pick_address(AGENT, MAC) == "10.0.0.9"
    assert pick_address(AGENT, MAC, ipv6=True) is None
    assert pick_address({}, MAC) is None and pick_address(None, MAC) is None


def test_network_config_validation() -> None:
    assert from_config(None) == {"mode": "user", "name": "default"}
    assert from_config({"mode": "libvirt", "name": "br0net"}) == {
        "mode": "libvirt",
        "name": "br0net",
    }
    with pytest.raises(InputError, match=r"network\.mode: unknown value 'bridge'"):
        from_config({"mode": "bridge"})
    with pytest.raises(InputError, match="recipe.yml: network: unknown key"):
        from_config({"mode": "user", "bridge": "x"}, where="recipe.yml: network")


def test_forward_rule_text_and_qemu_args() -> None:
    assert Forward(5555, 80).hostfwd() == "tcp:127.0.0.1:5555-:80"
    net = UserNetwork.with_ssh(40000, mac=MAC)
    netdev = net.qemu_args()[1]
    assert netdev.startswith("user,id=vmbuildnet0,")
    assert netdev.endswith("hostfwd=tcp:127.0.0.1:40000-:22")
    assert net.ssh_port == 40000


def test_port_clash_detection() -> None:
    msg = "internal error: process exited while connecting to monitor: Could not set up host forwarding rule 'tcp:127.0.0.1:5-:22'"  # noqa: E501
    assert is_port_clash(msg)
    assert not is_port_clash("Cannot access storage file '/x.qcow2': No such file")


def test_mac_and_free_port() -> None:
    macs = {random_mac() for _ in range(20)}
    assert len(macs) == 20
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m) for m in macs)
    port = free_port()
    assert 1024 < port < 65536
