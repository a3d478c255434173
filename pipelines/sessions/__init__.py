"""Sessions: the durable record of each conversation, its stores, metrics, settings gate and dashboard.

The server builds on this package: ``SessionStore`` (``SQLiteSessionStore``
embedded, ``RedisSessionStore`` shared), ``SessionMetrics`` for
``GET /metrics``, ``SettingsGate`` for runtime settings changes, and
``DASHBOARD_DIR`` for the static page served at ``/dashboard``.
"""
