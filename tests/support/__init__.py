"""Programs and fakes the tests run (not collected as tests)."""
