"""`make demo`: a whole site and collector on this machine, started with the real commands."""
