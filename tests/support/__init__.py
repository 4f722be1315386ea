"""Helpers shared by the test tiers and the benchmarks (no tests here)."""
