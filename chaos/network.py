"""Separate "hosts" for the partition scenario: network namespaces joined to this one by veths.

Each host is a network namespace with one veth pair: ``10.231.N.2`` inside,
``10.231.N.1`` here (the private servers listen there too). Cutting a host
takes its veth down on this side: its connections stall (no reset, like a
pulled cable) until it is healed. Needs root and ``ip``; everything is removed
on ``close``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


class NetworkUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip``, no permission)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One namespace: ``address`` is its own, ``server_address`` the servers' side of its link."""

    namespace: str
    link: str  # the veth end on this side
    address: str
    server_address: str

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.link, "up")

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    """``count`` hosts, made at once, removed by ``close``."""

    def __init__(self, count: int = 2) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NetworkUnavailable("network namespaces need root and the 'ip' command")
        self.hosts: list[Host] = []
        base = 10 + os.getpid() % 200  # third octet: distinct for concurrent runs (mostly)
        try:
            for i in range(count):
                octet = (base + i) % 250 + 1
                tag = f"ojc{os.getpid() % 100000}{i}"
                host = Host(f"{tag}ns", f"{tag}h", f"10.231.{octet}.2", f"10.231.{octet}.1")
                _ip("netns", "add", host.namespace)
                self.hosts.append(host)
                _ip("link", "add", host.link, "type", "veth", "peer", "name", f"{tag}w")
                _ip("link", "set", f"{tag}w", "netns", host.namespace)
                _ip("addr", "add", f"{host.server_address}/30", "dev", host.link)
                _ip("link", "set", host.link, "up")
                inside = ["-n", host.namespace]
                _ip(*inside, "addr", "add", f"{host.address}/30", "dev", f"{tag}w")
                _ip(*inside, "link", "set", f"{tag}w", "up")
                _ip(*inside, "link", "set", "lo", "up")
        except NetworkUnavailable:
            self.close()
            raise

    @property
    def server_addresses(self) -> list[str]:
        return [h.server_address for h in self.hosts]

    def close(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
        self.hosts = []
