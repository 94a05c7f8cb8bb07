"""Data stage: generate or ingest raw emails, validate them against the contract, split by time."""
