"""``Retry-After`` HTTP-dates in every form RFC 9110 §5.6.7 says a recipient must accept."""

from __future__ import annotations

import pytest

from gateway.upstream import retry_after

# 2015-10-21 07:27:30 UTC: 30 s before the dates below.
NOW = 1445412450.0


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",  # IMF-fixdate
        "Wednesday, 21-Oct-15 07:28:00 GMT",  # obsolete RFC 850
        "Wed Oct 21 07:28:00 2015",  # obsolete asctime (no zone: HTTP-dates are UTC)
        "Wed, 21 Oct 2015 07:28:00 -0000",
    ],
)
def test_every_http_date_form_is_read_as_utc(value: str) -> None:
    assert retry_after({"retry-after": value}, now=NOW) == pytest.approx(30.0)
