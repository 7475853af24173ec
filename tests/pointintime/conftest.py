"""The evaluation tests' hand-built event table and schema, reused by the velocity feature tests."""

from tests.evaluation.conftest import events, schema  # noqa: F401  (pytest fixtures)
