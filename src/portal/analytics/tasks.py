"""Analytics has no background work yet: conversations and rollups are brought up to date
in the ingestion request's own transaction (see ``services.message_events_ingest``), so
there is nothing to schedule. A rebuild after a partner's timezone changes would live here.
"""
