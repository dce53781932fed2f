"""`n` warm `Engine.authorize` calls from Python, or the same call `n` times inside Rust
(`time_authorize`): the two sides `benches/scripts/instructions.sh` counts under callgrind.

    python aegis-py/bench/call_loop.py N python|rust
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))

from payments_setup import TOOL, engine, finance_chain, pay  # noqa: E402

ARGS = {**pay(10), "amount": 0}


def main() -> None:
    n, side = int(sys.argv[1]), sys.argv[2]
    eng = engine()
    chain = finance_chain("instructions")
    for _ in range(50):  # warm: the chain verified, the request kept, the reasons' objects made
        eng.authorize(chain, TOOL, ARGS)
    if side == "rust":
        eng.time_authorize(chain, TOOL, ARGS, n)
        return
    for _ in range(n):
        eng.authorize(chain, TOOL, ARGS)


if __name__ == "__main__":
    main()
