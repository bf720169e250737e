"""Auditing run directories: checksums, output comparison, run diffs and reproduction."""
