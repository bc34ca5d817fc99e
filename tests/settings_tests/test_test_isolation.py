"""The suite forgets its own cache keys between tests and nothing else in the Redis database."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection

from tests.support.fixtures import forget_test_cache_keys


def test_keys_outside_the_test_prefix_survive():
    redis = get_redis_connection("default")
    foreign = "calendar_sync_prod:1:monitoring:offline_incidents"
    redis.set(foreign, "someone else's")
    try:
        cache.set("ours", 1)
        forget_test_cache_keys()
        assert cache.get("ours") is None
        assert redis.get(foreign) == b"someone else's"
    finally:
        redis.delete(foreign)
    assert settings.CACHES["default"]["KEY_PREFIX"] == "calendar_sync_test"
