"""The spec language: read YAML with marks, check it against the schema and the meaning
checks, and build the typed spec. Nothing here imports a deep-learning library."""
