"""Data stage: generate or ingest raw records, validate them against the contract, split by time."""
