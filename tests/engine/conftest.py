import pytest

from .harness import Engine


@pytest.fixture
def engine():
    e = Engine()
    yield e
    e.close()
