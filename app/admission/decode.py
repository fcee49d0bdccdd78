"""AdmissionReview JSON → typed request, or `InvalidReview` saying what is wrong.

Only the fields the webhook uses are read, and each is checked for type, so a
malformed review is rejected with a message rather than half-understood.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ADMISSION_V1 = "admission.k8s.io/v1"
ADMISSION_V1BETA1 = "admission.k8s.io/v1beta1"
SUPPORTED_API_VERSIONS = (ADMISSION_V1, ADMISSION_V1BETA1)


class InvalidReview(ValueError):  # noqa: N818 - reads as a verdict: `raise InvalidReview`
    """The body is not an AdmissionReview this webhook can answer.

    Carries whatever was learnt before the problem, so the error response can
    still echo the request's uid and apiVersion.
    """

    def __init__(self, message: str, *, uid: str = "", api_version: str = ADMISSION_V1) -> None:
        super().__init__(message)
        self.uid = uid
        self.api_version = api_version


@dataclass(frozen=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of `AdmissionReview.request` the webhook acts on."""

    api_version: str
    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: str
    name: str
    dry_run: bool
    object: Mapping[str, Any] | None


@dataclass(frozen=True)
class ObjectMetadata:
    """A Pod's metadata as far as labelling goes.

    `labels` is None both when the key is absent and when it is null: either way
    there is no map to add keys to.
    """

    exists: bool
    name: str
    generate_name: str
    labels: Mapping[str, str] | None


def decode_review(document: object) -> AdmissionRequest:
    """Check and unpack an AdmissionReview (already parsed from JSON)."""
    api_version, request, uid = _envelope(document)

    def field(name: str, expected: type, default: object = None) -> Any:
        # A missing key and an explicit null mean the same, as in Kubernetes' decoder.
        value = request.get(name)
        if value is None:
            value = default
        if not isinstance(value, expected):
            raise InvalidReview(
                f"request.{name} must be {_json_type_name(expected)}, not {_kind_of(value)}",
                uid=uid,
                api_version=api_version,
            )
        return value

    kind = field("kind", dict)
    group, version, kind_name = (kind.get(key, "") for key in ("group", "version", "kind"))
    if not all(isinstance(part, str) for part in (group, version, kind_name)) or not kind_name:
        raise InvalidReview(
            "request.kind must have string group, version and kind",
            uid=uid,
            api_version=api_version,
        )
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise InvalidReview(
            f"request.object must be an object, not {_kind_of(obj)}",
            uid=uid,
            api_version=api_version,
        )
    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        kind=GroupVersionKind(group=group, version=version, kind=kind_name),
        operation=field("operation", str),
        namespace=field("namespace", str, ""),
        name=field("name", str, ""),
        dry_run=field("dryRun", bool, False),
        object=obj,
    )


def _envelope(document: object) -> tuple[str, dict[str, Any], str]:
    """apiVersion, request and uid of a review, each checked, in the order an error
    can echo them."""
    if not isinstance(document, dict):
        raise InvalidReview(f"an AdmissionReview must be a JSON object, not {_kind_of(document)}")
    api_version = document.get("apiVersion")
    if not isinstance(api_version, str) or api_version not in SUPPORTED_API_VERSIONS:
        raise InvalidReview(
            f"unsupported apiVersion {api_version!r}: expected one of "
            + ", ".join(SUPPORTED_API_VERSIONS)
        )
    if document.get("kind") != "AdmissionReview":
        raise InvalidReview(
            f"kind must be 'AdmissionReview', not {document.get('kind')!r}",
            api_version=api_version,
        )
    request = document.get("request")
    if request is None:
        raise InvalidReview("the AdmissionReview has no request", api_version=api_version)
    if not isinstance(request, dict):
        raise InvalidReview(
            f"request must be an object, not {_kind_of(request)}", api_version=api_version
        )
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("the request has no uid", api_version=api_version)
    return api_version, request, uid


def decode_metadata(request: AdmissionRequest) -> ObjectMetadata:
    """The object's metadata and labels; the object must be present."""
    if request.object is None:
        raise InvalidReview(
            f"request.object is missing for a {request.kind.kind} {request.operation}",
            uid=request.uid,
            api_version=request.api_version,
        )

    def invalid(message: str) -> InvalidReview:
        return InvalidReview(message, uid=request.uid, api_version=request.api_version)

    metadata = request.object.get("metadata")
    if metadata is None:
        return ObjectMetadata(exists=False, name="", generate_name="", labels=None)
    if not isinstance(metadata, dict):
        raise invalid(f"request.object.metadata must be an object, not {_kind_of(metadata)}")
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    if not isinstance(name, str | None) or not isinstance(generate_name, str | None):
        raise invalid("request.object.metadata.name and generateName must be strings")
    labels = metadata.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise invalid(
                f"request.object.metadata.labels must be an object, not {_kind_of(labels)}"
            )
        for key, value in labels.items():
            if not isinstance(value, str):
                raise invalid(f"label {key!r} must have a string value, not {_kind_of(value)}")
    return ObjectMetadata(
        exists=True, name=name or "", generate_name=generate_name or "", labels=labels
    )


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _json_type_name(expected: type) -> str:
    return _JSON_NAMES.get(expected, expected.__name__)


def _kind_of(value: object) -> str:
    """The JSON name of a value's type, for messages a Kubernetes user can read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_NAMES.get(type(value), type(value).__name__)
