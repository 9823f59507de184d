"""Security policy packs, kept as data (YAML) and loaded by name."""
