"""What the node changes on the host, recorded before it starts and put back by `down`.

kubelet sets kernel settings on start (vm.overcommit_memory, kernel.panic,
kernel.panic_on_oops), kube-proxy sets route_localnet, the CNI bridge plugin turns on
IP forwarding, and all three add iptables chains. kubelet also creates a few
directories outside its root dir. The first `up` writes down how the host was;
`down` restores exactly that and forgets it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from localcp.layout import FILES

SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
)
# Directories kubelet makes whatever its --root-dir (its flags move the rest).
KUBELET_DIRS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def _read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def _chains(tool: str, table: str) -> list[str]:
    listed = subprocess.run(
        [tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[1] for line in listed.splitlines() if line.startswith("-N ")]


def _snapshot() -> dict[str, Any]:
    return {
        "sysctls": _read_sysctls(),
        "existing_dirs": [d for d in KUBELET_DIRS if Path(d).exists()],
        "chains": {
            f"{tool} {table}": _chains(tool, table) for tool in IPTABLES for table in TABLES
        },
    }


def record() -> None:
    """Write down the host as it is, unless an earlier `up` already did (then the host
    is already changed, and the first record is the true one)."""
    if FILES.host_state.exists():
        return
    FILES.host_state.parent.mkdir(parents=True, exist_ok=True)
    FILES.host_state.write_text(json.dumps(_snapshot(), indent=2))


def restore() -> list[str]:
    """Put the host back as recorded; returns what was put back, for the log."""
    if not FILES.host_state.exists():
        return []
    recorded = json.loads(FILES.host_state.read_text())
    restored = []
    for name, value in recorded["sysctls"].items():
        path = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)
                restored.append(f"{name.replace('/', '.')}={value}")
    for directory in KUBELET_DIRS:
        if directory not in recorded["existing_dirs"] and Path(directory).exists():
            shutil.rmtree(directory, ignore_errors=True)
            restored.append(f"removed {directory}")
    for key, before in recorded["chains"].items():
        tool, table = key.split()
        added = [c for c in _chains(tool, table) if c not in before]
        if added:
            _remove_chains(tool, table, added)
            restored.append(f"{tool} -t {table}: removed {len(added)} chains")
    differences = _differences(recorded, _snapshot())
    if differences:
        raise HostNotRestoredError(differences)
    FILES.host_state.unlink()
    return restored


class HostNotRestoredError(RuntimeError):
    """`down` could not put the host back as `up` found it; the record is kept."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__("the host is not as the first `up` found it: " + "; ".join(differences))


def _differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the host as recorded and as it is now."""
    found = [
        f"{name.replace('/', '.')} is {now['sysctls'].get(name)}, was {value}"
        for name, value in recorded["sysctls"].items()
        if now["sysctls"].get(name) != value
    ]
    found += [f"{d} is left" for d in now["existing_dirs"] if d not in recorded["existing_dirs"]]
    for key, before in recorded["chains"].items():
        added = sorted(set(now["chains"].get(key, [])) - set(before))
        if added:
            found.append(f"{key}: chains {', '.join(added)} are left")
    return found


def _remove_chains(tool: str, table: str, chains: list[str]) -> None:
    """Delete the rules of the built-in chains that jump to `chains`, then the chains.
    All are flushed before any is deleted, since they jump to one another."""
    rules = subprocess.run(
        [tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    targets = set(chains)
    for rule in rules:
        words = shlex.split(rule)  # comments are quoted
        if words[:1] == ["-A"] and words[1] in BUILTIN_CHAINS and _jumps_to(words, targets):
            subprocess.run([tool, "-w", "-t", table, "-D", *words[1:]], check=False)
    for chain in chains:
        subprocess.run([tool, "-w", "-t", table, "-F", chain], check=False)
    for chain in chains:
        subprocess.run([tool, "-w", "-t", table, "-X", chain], check=False)


def _jumps_to(words: list[str], targets: set[str]) -> bool:
    return any(
        flag in ("-j", "-g") and target in targets for flag, target in itertools.pairwise(words)
    )


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("make up runs a kubelet, containerd and network namespaces: it needs root")
