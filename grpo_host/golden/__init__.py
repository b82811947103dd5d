"""Golden tests (filled in later)."""
