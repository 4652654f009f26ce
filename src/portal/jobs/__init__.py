"""The background worker: queued tasks, periodic jobs, recovery of stalled tasks."""
