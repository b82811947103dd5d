"""pytest plugin for golden reward tests."""
