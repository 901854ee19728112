"""Make the gz/1 zstd dictionary `d1` (specs/zstd_d1.py) from the synthetic block corpus.

`python -m tests.support.zstd_dict` trains an 8 KiB dictionary (COVER, k=64, d=8, one thread:
deterministic) on tests.support.wire_corpus.training_samples() and writes it, base64, into
specs/zstd_d1.py. `d1` is frozen once shipped: agents and collectors of every version must
agree on its bytes (specs.encoding pins their SHA-256), so a better dictionary is a new name
(`zstd-d2`), never new bytes under `d1`. `--check` only tells whether training today would
give the shipped bytes (it does while the corpus and zstd's trainer are unchanged).

Sizes tried (bench/wire.py figures, 14-reading blocks): 4 KiB 27.8, 8 KiB 27.1, 16 KiB 27.8,
32 KiB 28.2 bytes per reading against 42.9 without a dictionary: 8 KiB is the best and small.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import textwrap
from pathlib import Path

import zstandard

from tests.support.wire_corpus import training_samples

DICT_SIZE = 8192
TARGET = Path(__file__).resolve().parents[2] / "specs" / "zstd_d1.py"

_HEADER = '''"""The gz/1 zstd dictionary `d1` (wire encoding `zstd-d1`), base64.

Made by `python -m tests.support.zstd_dict`; frozen: its SHA-256 is pinned in specs.encoding,
and the same bytes are published for other implementations as specs/examples/zstd-d1.dict.
Never edit by hand.
"""

from typing import Final

DICTIONARY_B64: Final = (
'''


def train() -> bytes:
    """The dictionary's bytes, trained on the synthetic corpus."""
    samples: list[bytes | bytearray | memoryview[int]] = list(training_samples())
    trained = zstandard.train_dictionary(DICT_SIZE, samples, k=64, d=8, level=3, threads=1)
    return trained.as_bytes()


def module_text(dictionary: bytes) -> str:
    """specs/zstd_d1.py holding `dictionary`."""
    lines = textwrap.wrap(base64.b64encode(dictionary).decode("ascii"), 92)
    return _HEADER + "".join(f'    "{line}"\n' for line in lines) + ")\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) specs/zstd_d1.py."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    dictionary = train()
    text = module_text(dictionary)
    if args.check:
        same = TARGET.read_text(encoding="ascii") == text
        print("same" if same else "differs", hashlib.sha256(dictionary).hexdigest())
        return 0 if same else 1
    TARGET.write_text(text, encoding="ascii")
    print(TARGET, hashlib.sha256(dictionary).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
