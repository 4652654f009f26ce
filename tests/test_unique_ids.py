"""Every page a person opens has unique ``id`` attributes (issue 18, point 8): a label,
an ``aria-describedby`` or a fragment link naming a repeated id points at the wrong
element. Walks the same routes as the CSRF test, as a partner admin and as staff."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser

from tests.test_csrf_routes import _urls, world  # noqa: F401 (``world`` is a fixture)

# Django's admin is not ours; logging out would end the session the other pages use.
SKIPPED = ("admin/",)
SKIPPED_NAMES = {"accounts:logout", "web:healthz"}


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids[value] += 1


def repeated_ids(html: str) -> list[str]:
    parser = _Ids()
    parser.feed(html)
    return sorted(i for i, n in parser.ids.items() if n > 1)


def test_repeated_ids_are_found():
    assert repeated_ids('<p id="a"></p><input id="a"><b id="b">') == ["a"]


def test_no_page_repeats_an_id(world):  # noqa: F811
    checked, repeated = 0, []
    for route, url in _urls(world):
        if route.prefix.startswith(SKIPPED) or route.name in SKIPPED_NAMES:
            continue
        response = world.client_for(route).get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        checked += 1
        found = repeated_ids(response.content.decode())
        if found:
            repeated.append(f"{url} ({route.name}): {', '.join(found)}")
    assert checked > 40
    assert not repeated, "Pages repeating an id:\n" + "\n".join(repeated)
