"""Where the dashboard's static files are, for the server to serve at ``/dashboard/``.

The page (``index.html``, ``dashboard.js``, ``dashboard.css``; no CDN, works
offline) polls ``GET /health`` (a ``Health``) and ``GET /sessions?state=S&limit=100&cursor=C``
(a ``Page``) on its own origin, or on ``?api=URL``; ``?every=SECONDS`` sets
the refresh period (2 s by default). It links its files relatively, so it
must be served from a path ending in ``/``: Starlette's
``StaticFiles(directory=DASHBOARD_DIR, html=True)`` mounted at ``/dashboard``
redirects ``/dashboard`` there by itself.
"""

from importlib.resources import files

DASHBOARD_DIR = files("pipelines.sessions") / "web"
"""The folder holding the dashboard pages and their scripts and style (package data, found through importlib.resources)."""
