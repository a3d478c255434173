"""Which ``SessionStore`` a ``--store`` value names: ``store_for(location)``.

Kept apart from ``store.py`` (the interface the backends subclass), so the
interface never imports its implementations and no import loop joins them.
"""

from pipelines.sessions.sqlite_store import SQLiteSessionStore
from pipelines.sessions.store import SessionStore


def store_for(location: str, **options) -> SessionStore:
    """The store a ``--store`` value names: a ``redis://``/``rediss://``/``unix://`` URL, else a SQLite file path.

    Args:
        location: ``redis://HOST:PORT/DB`` (Redis) or a path such as
            ``sessions.db`` or ``sqlite:///var/lib/framegraph/sessions.db``.
        **options: Passed to the store (``ended_ttl_s``; ``prefix`` for Redis).

    Raises:
        ValueError: Empty location, or Redis asked for without the ``redis`` extra installed.
    """
    if not location.strip():
        raise ValueError("session store: give a SQLite file path or a redis:// URL")
    if location.startswith(("redis://", "rediss://", "unix://")):
        try:
            from pipelines.sessions.redis_store import RedisSessionStore  # only with the redis extra
        except ImportError as e:
            raise ValueError(
                f"session store {location}: Redis needs the 'redis' extra (pip install 'framegraph[redis]')"
            ) from e
        return RedisSessionStore(location, **options)
    return SQLiteSessionStore(location.removeprefix("sqlite://"), **options)
