"""The JSONPatch (RFC 6902) that gives a Pod its labels, and a minimal applier.

Only `add` and `replace` on object members are ever produced, which is also all
`apply_patch` understands: it exists so the `mutate` CLI shows the result of the
very patch the webhook would send, without a JSONPatch library at runtime.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JSONPatchOperation = dict[str, Any]

LABELS_POINTER = "/metadata/labels"


def escape_pointer_token(token: str) -> str:
    """RFC 6901: '~' becomes '~0' and '/' becomes '~1', in that order."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_pointer_token(token: str) -> str:
    """The inverse of `escape_pointer_token` ('~1' first, so '~01' stays '~1')."""
    return token.replace("~1", "/").replace("~0", "~")


@dataclass(frozen=True)
class Overwrite:
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class LabelChanges:
    """What labelling one object takes: the patch, and what it means for the log."""

    operations: tuple[JSONPatchOperation, ...]
    # Keys the patch sets (added or overwritten).
    set: tuple[str, ...]
    overwritten: tuple[Overwrite, ...]
    # Keys left at a different existing value because overwriting is off.
    kept: tuple[Overwrite, ...]


def plan_labels(
    existing: Mapping[str, str] | None,
    wanted: Sequence[tuple[str, str]],
    *,
    overwrite: bool,
    metadata_exists: bool = True,
) -> LabelChanges:
    """The smallest patch that makes `existing` carry every `wanted` label.

    A label already at the wanted value gets no operation; when nothing changes
    the patch is empty. With no labels map at all (absent or null) a single `add`
    creates it whole, since JSONPatch cannot add a member to a missing parent.
    """
    if existing is None:
        labels = dict(wanted)
        if metadata_exists:
            operation = {"op": "add", "path": LABELS_POINTER, "value": labels}
        else:
            operation = {"op": "add", "path": "/metadata", "value": {"labels": labels}}
        return LabelChanges(operations=(operation,), set=tuple(labels), overwritten=(), kept=())

    operations: list[JSONPatchOperation] = []
    set_keys: list[str] = []
    overwritten: list[Overwrite] = []
    kept: list[Overwrite] = []
    for key, value in wanted:
        path = f"{LABELS_POINTER}/{escape_pointer_token(key)}"
        if key not in existing:
            operations.append({"op": "add", "path": path, "value": value})
            set_keys.append(key)
        elif existing[key] == value:
            continue
        elif overwrite:
            operations.append({"op": "replace", "path": path, "value": value})
            set_keys.append(key)
            overwritten.append(Overwrite(key=key, old=existing[key], new=value))
        else:
            kept.append(Overwrite(key=key, old=existing[key], new=value))
    return LabelChanges(
        operations=tuple(operations),
        set=tuple(set_keys),
        overwritten=tuple(overwritten),
        kept=tuple(kept),
    )


class PatchError(ValueError):
    """An operation `apply_patch` cannot apply to the document."""


def apply_patch(document: Mapping[str, Any], operations: Sequence[Mapping[str, Any]]) -> Any:
    """Apply `add`/`replace` operations on object members to a copy of `document`."""
    result = copy.deepcopy(dict(document))
    for operation in operations:
        op, path = operation.get("op"), operation.get("path")
        if op not in ("add", "replace") or not isinstance(path, str) or not path.startswith("/"):
            raise PatchError(f"unsupported operation {operation!r}")
        *parents, last = (unescape_pointer_token(token) for token in path[1:].split("/"))
        target: Any = result
        for token in parents:
            if not isinstance(target, dict) or token not in target:
                raise PatchError(f"path {path!r} does not exist")
            target = target[token]
        if not isinstance(target, dict):
            raise PatchError(f"the parent of {path!r} is not an object")
        if op == "replace" and last not in target:
            raise PatchError(f"cannot replace {path!r}: it does not exist")
        target[last] = copy.deepcopy(operation["value"])
    return result
