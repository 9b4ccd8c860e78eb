"""Upstreams: the small provider interface and one module per provider kind."""
