"""Benchmarks (`python -m bench.server`) and the throwaway certificates they and the tests use."""
