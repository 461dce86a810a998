"""Image tests: `make image-test` (a package, so that its conftest is not mistaken for tests/conftest.py)."""
