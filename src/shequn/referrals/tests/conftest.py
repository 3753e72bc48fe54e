import pytest


@pytest.fixture(autouse=True)
def _sql_leaderboards_unless_redis_test(request, settings):
    """The Redis mirror is written on commit, which never happens inside a test transaction, and
    tenant ids repeat across test databases: only tests marked ``redis`` read the Redis mirror."""
    if "redis" not in request.keywords:
        settings.REDIS_URL = None
