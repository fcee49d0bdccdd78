"""A Pod's volumes, laid out as kubelet lays them out, and container paths pointed at them.

Secret volumes are projected as kubelet's AtomicWriter does (files behind a `..data`
symlink swapped atomically when the Secret changes: how cert-manager's renewals
reach the server); emptyDir volumes are fresh directories. There is no mount
namespace, so paths in a container's args and env are rewritten to these directories.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
from pathlib import Path

from localcp.layout import EMPTY_DIRS, FILES
from localcp.podspec import Container, Volume

log = logging.getLogger("localcp.kubelet")


def volume_directory(uid: str, volume: Volume) -> Path:
    if volume.secret is None:
        return EMPTY_DIRS / uid[:8] / volume.name
    return FILES.pod(uid) / volume.name


def mounts(uid: str, container: Container) -> dict[str, Path]:
    """Each mount path of the container and the local directory behind it."""
    return {v.mount_path: volume_directory(uid, v) for v in container.volumes}


def rewrite_path(value: str, mounts: dict[str, Path]) -> str:
    """Point a container path, or the path of a `--flag=path`, at its volume's local
    directory: the longest mount path that contains it wins, and it is applied once."""
    flag, path = "", value
    if value.startswith("-") and "=" in value:
        name, _, path = value.partition("=")
        flag = name + "="
    for mount_path in sorted(mounts, key=len, reverse=True):
        base = mount_path.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return flag + str(mounts[mount_path]) + path[len(base) :]
    return value


def write_secret_volume(target: Path, files: dict[str, bytes], mode: int) -> bool:
    """Project a Secret the way kubelet's AtomicWriter does; returns True if it changed.

    Files live in a timestamped directory; `..data` points at it and each key is a
    symlink through `..data`, so a reader never sees a half-updated set of files.
    """
    decoded = dict(sorted(files.items()))
    digest = hashlib.sha256(repr(sorted(decoded.items())).encode()).hexdigest()[:16]
    payload = f"..{digest}"
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    if old == payload:
        return False
    target.mkdir(parents=True, exist_ok=True)
    (target / payload).mkdir(exist_ok=True)
    for key, content in decoded.items():
        (target / payload / key).write_bytes(content)
        (target / payload / key).chmod(mode)
    staging = target / "..data_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(payload)
    os.replace(staging, data_link)
    for key in decoded:
        if not (target / key).is_symlink():
            (target / key).symlink_to(f"..data/{key}")
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def secret_files(
    data: dict[str, str], items: tuple[tuple[str, str], ...]
) -> dict[str, bytes] | None:
    """The files a Secret volume holds, from the Secret's (base64) data. With `items`,
    only those keys, at their paths; None while a listed key is missing: kubelet then
    fails the mount ("couldn't find key") and the container does not start."""
    if not items:
        return {key: base64.b64decode(value) for key, value in data.items()}
    if any(key not in data for key, _ in items):
        return None
    return {path: base64.b64decode(data[key]) for key, path in items}


def mount_volumes(uid: str, container: Container, secrets: dict[str, dict[str, str]]) -> bool:
    """Project every volume; False while a Secret, or a key its `items` name, does not
    exist yet (kubelet waits too).

    `secrets` maps a Secret's name to its `data` (base64 values, as the API gives them).
    """
    for volume in container.volumes:
        target = volume_directory(uid, volume)
        if volume.secret is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        data = secrets.get(volume.secret)
        if data is None:
            log.info("waiting for Secret %s", volume.secret)
            return False
        files = secret_files(data, volume.items)
        if files is None:
            log.info("waiting for the keys %s of Secret %s", volume.items, volume.secret)
            return False
        if write_secret_volume(target, files, volume.mode):
            log.info("pod %s: Secret %s projected", uid[:8], volume.secret)
    return True


def remove_volumes(uid: str) -> None:
    shutil.rmtree(FILES.pod(uid), ignore_errors=True)
    shutil.rmtree(EMPTY_DIRS / uid[:8], ignore_errors=True)
