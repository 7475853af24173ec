"""The evaluation tests' hand-built event table, reused by the velocity feature tests (the `schema` fixture
is the root one, tests/conftest.py)."""

from tests.evaluation.conftest import events  # noqa: F401  (pytest fixture)
