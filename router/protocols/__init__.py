"""Wire formats: parsing and preparing requests, metering responses, per client API."""
