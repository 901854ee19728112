"""The live feed behind `GET /v1/stream`: resumable positions, the event journal, the wake-up.

`core` holds the pure parts (positions, journal entries of an ingest batch, merging readings
and journal rows in commit order); `wakeup` the in-process wake-up the ingest shell rings
after each commit.
"""
