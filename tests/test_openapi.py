"""The OpenAPI document as generated clients read it (domain §6): short operation ids, tags
by resource, and every status an operation can answer declared with its body schema.

The fuzz campaign (tests/fuzz) checks every answer it provokes against the document;
the statuses it cannot provoke (413, 415, 429, Idempotency-Key refusals) are provoked
here and checked the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from portal.api import RESOURCE_TAGS, api, error_statuses, resource_tag
from portal.core.api import ErrorOut
from portal.lines.models import LineOrder
from tests.conftest import Api
from tests.factories import make_lines, make_sub_account

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in one JSON object: {keys}"
    return dict(pairs)


@pytest.fixture
def document(db) -> dict[str, Any]:
    """The document as /api/v1/openapi.json serves it, every JSON object checked for
    duplicate keys (ninja once wrote a file endpoint's 200 twice)."""
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return json.loads(response.content, object_pairs_hook=_reject_duplicate_keys)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_operation_ids_are_short_unique_snake_case_names(document):
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for operation_id in ids:
        assert SNAKE_CASE.fullmatch(operation_id), operation_id
        assert len(operation_id) <= 40, operation_id
        assert not operation_id.startswith(("portal", "api_")), operation_id
    assert "create_sub_account" in ids
    assert "disconnect_line" in ids


def test_every_operation_has_one_resource_tag(document):
    tags = {}
    for method, path, operation in _operations(document):
        assert len(operation["tags"]) == 1, (method, path)
        tags[method, path] = operation["tags"][0]
        assert tags[method, path] in RESOURCE_TAGS.values(), (method, path, operation["tags"])
    assert tags["post", "/api/v1/sub-accounts"] == "Sub-accounts"
    assert tags["post", "/api/v1/line-orders"] == "Line orders"
    assert tags["get", "/api/v1/sub-accounts/{sub_account_id}/analytics"] == "Analytics"
    assert tags["get", "/api/v1/analytics/sub-accounts"] == "Analytics"
    assert tags["get", "/api/v1/invoices/{invoice_id}/csv"] == "Invoices"


@pytest.mark.parametrize(
    ("path", "tag"),
    [
        ("/merge-requests/{merge_request_id}/approve", "Merge requests"),
        ("/credits/balance", "Credits"),
        ("/new-things/{id}", "New things"),
        ("/", "API"),
    ],
)
def test_resource_tag(path, tag):
    assert resource_tag(path) == tag


def test_every_operation_declares_its_errors_with_the_error_schema(document):
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    assert "ErrorOut" in document["components"]["schemas"]
    assert "ValidationIssueOut" in document["components"]["schemas"]
    for method, path, operation in _operations(document):
        declared = {int(status) for status in operation["responses"]}
        expected = {400, 401, 403, 404, 429}
        if method in {"post", "patch", "delete"}:
            expected |= {409, 413, 415, 422}
        if operation.get("parameters"):
            expected.add(422)
        assert expected <= declared, (method, path, sorted(declared))
        assert any(200 <= status < 300 for status in declared), (method, path)
        if 204 in declared:  # no content: nothing for a client to parse
            assert "content" not in operation["responses"]["204"], (method, path)
        for status in sorted(s for s in declared if s >= 300):
            response = operation["responses"][str(status)]
            assert response["content"] == {"application/json": {"schema": error_ref}}
            assert response["description"]
        assert "Retry-After" in operation["responses"]["429"]["headers"]


def test_a_file_endpoint_keeps_its_own_success_response(document):
    csv = document["paths"]["/api/v1/invoices/{invoice_id}/csv"]["get"]["responses"]["200"]
    assert list(csv["content"]) == ["text/csv"]
    assert "CSV" in csv["description"]


def test_statuses_are_strings_in_the_generated_schema_too():
    """As served (JSON) and as built: one key per status, never 200 beside "200"."""
    generated = api.get_openapi_schema(path_prefix="/api/v1/")
    for methods in generated["paths"].values():
        for method, operation in methods.items():
            assert all(isinstance(status, str) for status in operation["responses"])
            assert {str(s) for s in error_statuses(method, operation)} <= set(
                operation["responses"]
            )


# --- Real error answers are declared and match the schema ------------------------------


def _check(document: dict[str, Any], method: str, path: str, response: Any, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    declared = document["paths"]["/api/v1" + path][method]["responses"]
    assert str(status) in declared, (method, path, status)
    ErrorOut.model_validate(response.json())
    assert list(response.json()) == ["detail"]


def test_each_error_status_answers_the_declared_body(document, tenant, api_as, settings):
    admin = api_as(tenant.keys["admin"])
    viewer = api_as(tenant.keys["viewer"])
    line = make_lines(tenant.partner, 1)[0]
    sub_account = make_sub_account(tenant.partner, "Declared")
    sub = f"/sub-accounts/{sub_account.pk}"
    _check(document, "post", "/sub-accounts", admin.post("/sub-accounts", raw="{"), 400)
    _check(document, "get", "/lines", Api(None).get("/lines"), 401)
    _check(document, "post", "/line-orders", viewer.post("/line-orders", {"quantity": 1}), 403)
    _check(document, "get", "/lines/{line_id}", admin.get("/lines/999999"), 404)
    _check(
        document,
        "post",
        "/sub-accounts",
        admin.post("/sub-accounts", {"name": "Declared"}),
        409,
    )
    invalid = admin.patch(sub, {"contact_email": 5, "unknown": 1})
    _check(document, "patch", "/sub-accounts/{sub_account_id}", invalid, 422)
    assert isinstance(invalid.json()["detail"], list)
    not_json = admin.client.generic(
        "POST", f"/api/v1/lines/{line.pk}/disconnect", b"a=b", content_type="text/plain"
    )
    _check(document, "post", "/lines/{line_id}/disconnect", not_json, 415)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    too_large = admin.post("/line-orders", {"quantity": 1, "area_code": "9" * 200})
    _check(document, "post", "/line-orders", too_large, 413)


def test_idempotency_refusals_answer_the_declared_body(document, api, tenant):
    key = {"HTTP_IDEMPOTENCY_KEY": "declared"}
    api.ok_post("/line-orders", {"quantity": 1}, **key)
    _check(document, "post", "/line-orders", api.post("/line-orders", {"quantity": 2}, **key), 422)
    bad_key = api.post("/line-orders", {"quantity": 1}, HTTP_IDEMPOTENCY_KEY="k" * 300)
    _check(document, "post", "/line-orders", bad_key, 400)
    assert LineOrder.objects.count() == 1


def test_rate_limited_answers_the_declared_body(document, api, settings):
    settings.RATE_LIMITS_ENABLED = True
    settings.PORTAL_RATE_LIMITS = {"api": "1/60"}
    assert api.get("/lines").status_code == 200
    refused = api.get("/lines")
    _check(document, "get", "/lines", refused, 429)
    assert int(refused["Retry-After"]) >= 1
