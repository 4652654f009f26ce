"""Seed a database with the bench's reseller platform, for a load test of your own.

``make bench-seed`` (or ``python -m bench.seed``) drops and re-creates
``BENCH_DATABASE_URL`` (PostgreSQL), migrates it, writes the data of
:func:`bench.data.make_reseller_dataset` (``BENCH_SCALE`` applies) and prints what a
load test needs: the large reseller's admin login and an admin and a viewer API key.
Serve it with ``DATABASE_URL=<the same URL> portal serve``; the default rate limits
(600 requests a minute per key) apply unless ``PORTAL_RATE_LIMIT_API`` raises them.
"""

from __future__ import annotations

import secrets
import sys

from bench.run import bench_scale, setup_database, timed


def main() -> int:
    setup_database()
    from bench.data import BENCH, make_reseller_dataset
    from portal.accounts.models import Membership, User
    from portal.accounts.services import api_key_create
    from portal.core.roles import Role

    with timed() as took:
        data = make_reseller_dataset(scale=bench_scale())
    partner = data.large.partner
    password = secrets.token_urlsafe(12)
    admin = User.objects.create_user(email="admin@large-reseller.example", password=password)
    Membership.objects.create(partner=partner, user=admin, role=Role.ADMIN)
    keys = {
        role.label: api_key_create(
            principal=BENCH.acting_for(partner.pk), name=f"Load test {role.label}", role=role
        ).raw
        for role in (Role.ADMIN, Role.VIEWER)
    }
    print(
        f"Seeded in {took():.0f} s: {data.partners} partners, {data.lines:,} lines; "
        f"{partner.name} has {data.large.lines:,} lines in "
        f"{len(data.large.sub_account_ids):,} sub-accounts."
    )
    print(f"Log in as admin@large-reseller.example with password {password}")
    for label, key in keys.items():
        print(f"{label} API key: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
