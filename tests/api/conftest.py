"""Fixtures of the API's tests; they live with the helpers in api_world.py, which the test
modules import by that name (a bare ``conftest`` import would find another folder's)."""

from api_world import crd, live, media, origin, quiet_api  # noqa: F401 - fixtures, by name
