"""API bodies are JSON: another content type gets 415 ``{"detail"}`` and changes nothing (§6).

Every operation that takes a body (POST and PATCH, enumerated from the OpenAPI document)
is sent every common non-JSON content type, with real ids in its path, so that a body
taken for JSON, or ignored, would show as a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from portal.accounts.models import IdempotencyRecord
from portal.api import api
from tests.conftest import Api
from tests.factories import make_lines, make_sub_account, make_tenant, make_user
from tests.fuzz import support
from tests.fuzz.support import PATH_KINDS, World

FIELDS = {"name": "Form body", "reason": "form", "quantity": "1"}

# (label, Content-Type or None for none at all, body)
NOT_JSON: list[tuple[str, str | None, bytes]] = [
    ("multipart", MULTIPART_CONTENT, encode_multipart(BOUNDARY, FIELDS)),
    (
        "form-encoded",
        "application/x-www-form-urlencoded",
        b"name=Form+body&reason=form&quantity=1",
    ),
    ("text", "text/plain", json.dumps(FIELDS).encode()),
    ("xml", "application/xml", b"<request><name>Form body</name></request>"),
    ("octet-stream", "application/octet-stream", json.dumps(FIELDS).encode()),
    ("missing", None, json.dumps(FIELDS).encode()),
    ("JSON in Latin-1", "application/json; charset=latin-1", json.dumps(FIELDS).encode()),
]


def _body_operations() -> list[tuple[str, str]]:
    document = api.get_openapi_schema(path_prefix="/")
    return [
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if method in {"post", "patch", "put", "delete"}
    ]


OPERATIONS = _body_operations()


def _send(
    client: Client, method: str, path: str, content_type: str | None, body: bytes, **extra: str
):
    if content_type is None:
        extra["CONTENT_TYPE"] = ""
        content_type = "application/octet-stream"  # replaced by the empty CONTENT_TYPE
    return client.generic(method, "/api/v1" + path, body, content_type=content_type, **extra)


@pytest.fixture
def world(db) -> Iterator[World]:
    yield support.seed_world()


def _fill(path: str, world: World) -> str:
    ids = world.sides["a"].ids
    return path.format(**{name: ids[kind][0] for name, kind in PATH_KINDS.items()})


def test_every_operation_with_a_body_is_enumerated():
    assert ("POST", "/sub-accounts") in OPERATIONS
    assert ("PATCH", "/sub-accounts/{sub_account_id}") in OPERATIONS
    assert ("POST", "/lines/{line_id}/disconnect") in OPERATIONS
    assert len(OPERATIONS) >= 20


@pytest.mark.parametrize(("label", "content_type", "body"), NOT_JSON, ids=[c[0] for c in NOT_JSON])
def test_a_body_that_is_not_json_is_refused_by_every_operation(world, label, content_type, body):
    keys = {
        "admin": f"Bearer {world.sides['a'].tenant.keys['admin']}",
        "staff": f"Bearer {world.staff_key}",
    }
    answers: dict[str, Any] = {}
    for method, template in OPERATIONS:
        path = _fill(template, world)
        for role, authorization in keys.items():
            before, last_event = support.snapshot(), support.last_audit_id()
            response = _send(
                Client(), method, path, content_type, body, HTTP_AUTHORIZATION=authorization
            )
            where = f"{method} {path} as {role}"
            answers[where] = response.status_code
            assert response.status_code == 415, (where, response.content[:300])
            assert response["Content-Type"] == "application/json", where
            assert list(response.json()) == ["detail"], where
            assert "application/json" in response.json()["detail"]
            assert support.snapshot() == before, where
            assert not support.audit_actions_since(last_event), where
    assert len(answers) == 2 * len(OPERATIONS)


def test_a_refused_body_claims_no_idempotency_key(world):
    key = world.sides["a"].tenant.keys["admin"]
    response = _send(
        Client(),
        "POST",
        "/sub-accounts",
        MULTIPART_CONTENT,
        encode_multipart(BOUNDARY, FIELDS),
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_IDEMPOTENCY_KEY="form-first",
    )
    assert response.status_code == 415
    assert not IdempotencyRecord.objects.exists()
    # The same key then works for the JSON request the client meant to send.
    created = Api(key).post(
        "/sub-accounts", {"name": "Form body"}, HTTP_IDEMPOTENCY_KEY="form-first"
    )
    assert created.status_code == 201, created.content


def test_without_a_key_a_form_body_is_refused_before_anything_reads_it(db):
    response = _send(Client(), "POST", "/sub-accounts", MULTIPART_CONTENT, b"--x--\r\n")
    assert response.status_code == 415
    assert response["Accept-Post"] == "application/json"


@pytest.fixture
def tenant_line(db):
    tenant = make_tenant("Plain Partner")
    line = make_lines(tenant.partner, 1)[0]
    return tenant, line


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "Application/JSON",
        "application/merge-patch+json",
    ],
)
def test_json_and_its_variants_are_accepted(tenant_line, content_type):
    tenant, _ = tenant_line
    sub_account = make_sub_account(tenant.partner, "Variants")
    response = _send(
        Client(),
        "PATCH",
        f"/sub-accounts/{sub_account.pk}",
        content_type,
        json.dumps({"contact_name": "Ana"}).encode(),
        HTTP_AUTHORIZATION=f"Bearer {tenant.keys['admin']}",
    )
    assert response.status_code == 200, response.content
    assert response.json()["contact_name"] == "Ana"


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_an_empty_body_passes_whatever_it_claims_to_be(tenant_line, content_type):
    """curl -X POST and form libraries send a body-less POST with no or any content type."""
    tenant, line = tenant_line
    extra = {"CONTENT_TYPE": content_type} if content_type else {}
    response = Client().generic(
        "POST",
        f"/api/v1/lines/{line.pk}/disconnect",
        b"",
        HTTP_AUTHORIZATION=f"Bearer {tenant.keys['admin']}",
        **extra,
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "disconnected"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (MULTIPART_CONTENT, encode_multipart(BOUNDARY, {"name": "Page form"})),
        ("text/plain", b"name=Page+form"),
        ("application/json", b'{"name": "Page form"}'),
    ],
)
def test_pages_answer_odd_bodies_without_a_server_error(tenant_line, content_type, body):
    tenant, _ = tenant_line
    client = Client()
    client.force_login(make_user(tenant.partner, "admin@plain.example", "admin"))
    for path in ["/sub-accounts/new/", "/lines/", "/accounts/login/"]:
        response = client.generic("POST", path, body, content_type=content_type)
        assert response.status_code < 500, (path, response.status_code)
