"""Sessions: the durable record of each conversation, its stores, metrics, settings gate and dashboard.

What the server builds on, one module each:

- ``model``: ``Session``/``SessionSummary``/``SessionState``, resume tokens, ``Health``.
- ``store``: the ``SessionStore`` interface and its errors.
- ``backends``: ``store_for(location)``, the backend a ``--store`` value names.
- ``sqlite_store`` (embedded, one server) and ``redis_store`` (several servers;
  needs the ``redis`` extra): the two implementations.
- ``housekeeping``: ``Housekeeper``, the periodic expiry, gauge and heartbeat.
- ``metrics``: ``SessionMetrics``, a Prometheus registry per server.
- ``settings_gate``: ``SettingsGate``, which holds runtime settings changes
  while a response is generated or spoken.
- ``dashboard``: ``DASHBOARD_DIR``, the static page served at ``/dashboard/``.
"""
