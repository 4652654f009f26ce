"""Request bookkeeping shared by every web process (no partner data, no audit events)."""

from __future__ import annotations

from django.db import models


class RateLimitBucket(models.Model):
    """How many requests one client made under one rate limit in one fixed window.

    Written only by :func:`portal.core.ratelimit.hit`: one atomic upsert per request
    (``INSERT … ON CONFLICT DO UPDATE SET hits = hits + 1``), so every process counts
    into the same row. Unique per (``scope``, ``window_start``). ``scope`` is the
    limit's name and the client (``api:key:<keyed hash of the key>``,
    ``page:user:<id>``, ``password_reset_email:<keyed hash>``), never a secret or a raw
    address. Times are Unix seconds. A row still counts during the next window (the
    sliding estimate weighs it), so ``expires_at`` is two windows after its start; the
    periodic ``prune_rate_limit_buckets`` job deletes expired rows.
    """

    scope = models.CharField(max_length=100)
    window_start = models.BigIntegerField()
    hits = models.PositiveIntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "window_start"], name="rate_limit_bucket_scope_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} @ {self.window_start}: {self.hits}"
