"""What a run writes: the run directory, its typed manifest, input identities and PNG provenance."""
