"""Shared fixtures: one tiny world and untrained tiny checkpoint per session (tests/embeddings/world.py)."""

from __future__ import annotations

import pytest

from tests.embeddings.world import World, session_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return session_world(tmp_path_factory)
