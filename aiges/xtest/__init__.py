"""aiges xtest: a protocol-aware load tester reading the original AIGes xtest.toml."""
