"""Helpers that build tiny offline checkpoints for tests, benchmarks and demos."""
