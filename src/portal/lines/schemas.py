"""API shapes for lines and line orders."""

from __future__ import annotations

import datetime as dt

from ninja import Schema
from pydantic import ConfigDict, Field, StrictInt


class LineOut(Schema):
    id: int
    number: str
    status: str
    sub_account_id: int | None
    label: str
    user_name: str
    user_email: str
    daily_limit: int
    activated_at: dt.datetime
    disconnected_at: dt.datetime | None


class LineListOut(Schema):
    items: list[LineOut]
    count: int


# Ids and counts are StrictInt: lax parsing would read ``true`` as 1 and "5" or 5.0
# as 5, so a typo could move a line into sub-account 1 or order a line by accident.


class LineAssignIn(Schema):
    model_config = ConfigDict(extra="forbid")

    sub_account_id: StrictInt
    label: str
    user_name: str | None = None
    user_email: str | None = None
    daily_limit: StrictInt | None = None


class LineMoveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    sub_account_id: StrictInt
    from_sub_account_id: StrictInt | None = Field(
        None,
        description=(
            "The sub-account you saw the line in. The line moves only if it is still there; "
            "otherwise 409 says where it is now and since when (someone moved it meanwhile). "
            "An id you cannot see answers 404, like a missing sub-account. Leave it out to "
            "move the line from wherever it is."
        ),
    )


class LineBulkMoveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    line_ids: list[StrictInt] = Field(min_length=1, max_length=100_000)
    sub_account_id: StrictInt
    from_sub_account_id: StrictInt | None = Field(
        None,
        description=(
            "The sub-account you saw every line in. All or nothing: if any line is no longer "
            "there, none moves and 409 says where such lines are now and since when. An id "
            "you cannot see answers 404, like a missing sub-account."
        ),
    )


class BulkMoveOut(Schema):
    moved: int
    already_there: int


class LineOrderIn(Schema):
    model_config = ConfigDict(extra="forbid")

    quantity: StrictInt
    area_code: str | None = None


class LineOrderOut(Schema):
    id: int
    quantity: StrictInt
    area_code: str
    status: str
    fulfilled_count: int
    line_ids: list[int]
    requested_by: str
    created_at: dt.datetime


class LineOrderListOut(Schema):
    items: list[LineOrderOut]
    count: int
