"""The test suite is a package so that ``from tests.conftest import free_port`` works in every folder."""
