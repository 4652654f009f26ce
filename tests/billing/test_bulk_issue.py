"""What keeps issuing a large invoice fast gives exactly the answers of the plain code."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from portal.core.phone import display_number, display_number_fast


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["+1415", "+1212", "+1800", "+4420", "+447", "+336", "+4915", "+8190", "+6141"]
    ),
    st.text(alphabet="0123456789", min_size=4, max_size=9),
)
def test_the_block_template_formats_numbers_as_phonenumbers_does(prefix, rest):
    number = prefix + rest
    assert display_number_fast(number) == display_number(number)


def test_short_and_odd_numbers_fall_back_to_the_formatter():
    for number in ["+1", "+12345", "+44", "not a number", "+1415555010x"]:
        assert display_number_fast(number) == display_number(number)
