"""The province CA and the certificates the broker checks (DESIGN section 11, broker isolation).

`certificates` builds them (pure: keys and times in, certificates out); `store` keeps them in
files, private keys 0600.
"""
