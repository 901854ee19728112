"""Serial links: pure line framing, checksums and value parsing, a port shell, an ASCII driver."""
