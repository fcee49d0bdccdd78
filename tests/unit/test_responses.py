"""responses: the allowed / patched / errored AdmissionReview builders."""

from __future__ import annotations

import base64
import json

from app.admission.decode import ADMISSION_V1BETA1
from app.admission.responses import allowed, encode_patch, errored, patched

OPERATIONS = [{"op": "add", "path": "/metadata/labels/a", "value": "1"}]


def test_allowed_echoes_uid_kind_and_api_version() -> None:
    assert allowed("uid-1", api_version=ADMISSION_V1BETA1) == {
        "apiVersion": ADMISSION_V1BETA1,
        "kind": "AdmissionReview",
        "response": {"uid": "uid-1", "allowed": True},
    }


def test_allowed_carries_warnings_only_when_there_are_some() -> None:
    assert allowed("u", warnings=["careful"])["response"]["warnings"] == ["careful"]
    assert "warnings" not in allowed("u", warnings=[])["response"]


def test_patched_sends_a_base64_jsonpatch() -> None:
    response = patched("u", OPERATIONS)["response"]

    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == OPERATIONS


def test_patched_without_operations_sends_no_patch_at_all() -> None:
    response = patched("u", [])["response"]

    assert response == {"uid": "u", "allowed": True}


def test_encode_patch_is_compact_json() -> None:
    assert base64.b64decode(encode_patch(OPERATIONS)) == (
        b'[{"op":"add","path":"/metadata/labels/a","value":"1"}]'
    )


def test_errored_refuses_with_code_and_message() -> None:
    assert errored(400, "bad", uid="u")["response"] == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 400, "message": "bad"},
    }
