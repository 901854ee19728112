"""Data quality per gateway, enterprise or district (`GET /v1/quality`).

Online rate, completeness and timeliness come from aggregates the database computes; `core`
holds the pure parts: the presence intervals kept at ingest, the time window, the ratios.
"""
