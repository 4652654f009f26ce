"""The thinnest end-to-end slice: a key creates a sub-account and lists it."""

from tests.factories import make_lines


def test_create_and_list_sub_account(api, tenant):
    created = api.post("/sub-accounts", {"name": "Client ABC – Sales Campaign"})
    assert created.status_code == 201, created.content
    listed = api.get("/sub-accounts").json()
    assert [item["name"] for item in listed["items"]] == [
        "Available",
        "Client ABC – Sales Campaign",
    ]
    assert listed["count"] == 2


def test_lines_arrive_in_available(api, tenant):
    lines = make_lines(tenant.partner, 3)
    body = api.get("/sub-accounts").json()
    assert body["items"][0]["line_count"] == 3
    assert {line.sub_account.kind for line in lines} == {"available"}
