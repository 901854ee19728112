"""The audit trail: rejected messages, admin actions and command results in one hash chain.

`chain` is pure (aggregation of rejections, link hashes, sealing, verification); each storage
backend keeps the rows (collector.storage.sqlite.audit, collector.storage.postgres.audit) and
`collector audit verify` checks them.
"""
