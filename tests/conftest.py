"""Fixtures shared by the tests of the user-facing API."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["native", "reference"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every behaviour that must not depend on the backend runs once on each."""
    return request.param
