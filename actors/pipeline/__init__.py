"""The per-request pipeline: auth -> reserve -> stream -> settle, one nursery per request."""
