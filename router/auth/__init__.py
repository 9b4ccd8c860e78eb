"""Credentials: router API keys, HS256 JWTs, the admin key; all become a `Principal`."""
