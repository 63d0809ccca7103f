"""Warehouse reads behind the GET routes, and the pure functions that shape their rows.

Every read uses FINAL (ReplacingMergeTree dedup on Kafka coordinates) and ``LIMIT 1 BY`` the logical id (an
at-least-once retry can write the same record at two offsets). "Latest" always means the greatest
(record time, Kafka timestamp, offset) — the order the audits use — so a list row and its detail agree.
Lists use keyset pagination on (time, id) descending: stable while new rows arrive, no OFFSET scans.
"""
