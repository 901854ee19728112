"""Re-verifying stored blocks: signatures over the stored bytes and the hash chain (DESIGN 6, 8).

`core` holds the pure checks, `service` pages through a storage that offers them.
"""
