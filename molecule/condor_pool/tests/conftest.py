"""Order of condor_pool's tests.

test_tags_alone.py runs first: it needs the pool exactly as molecule's
converge and idempotence steps left it, and the other tests change the pool
(drains, an upgrade, a removed token) on purpose. First, it needs no converge
of its own, which would cost minutes.
"""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name != "test_tags_alone.py")
