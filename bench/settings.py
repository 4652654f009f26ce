"""Settings of the web bench's server: the portal's, with the bench's extra URLs.

``portal serve`` runs with ``DJANGO_SETTINGS_MODULE=bench.settings`` so the portal's
API and the bare baseline views (:mod:`bench.urls`) are answered by the same gunicorn
workers, middleware and database connections: only the view differs.
"""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# The limiter stays on, so its cost (one counter upsert per request) is in the figures,
# but with a ceiling the 16 clients never reach: the bench measures speed, not refusals.
PORTAL_RATE_LIMITS = {**PORTAL_RATE_LIMITS, "api": "100000000/60", "page": "100000000/60"}  # noqa: F405

# Connections are kept for the whole run (the portal recycles them after 60 s): the bench
# reads the server's CPU from its processes, and a backend that closes mid-run would take
# its CPU seconds with it (it once made the portal look cheaper than the bare view).
DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405
