"""Per-call cost of `authorize` from Python beside the same call measured in Rust, as a ratio.

    python aegis-py/bench/bench_authorize.py [iterations]

Both sides run the same engine build (whatever `maturin develop` produced: debug by default,
`maturin develop --release` for release figures) on the same warm request, so the ratio is the
cost of the binding: JSON conversion, the GIL hand-off and building the Python `Decision`.
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))

from payments_setup import TOOL, engine, finance_chain, pay  # noqa: E402


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    eng = engine()
    chain = finance_chain("bench-task")
    args = {**pay(10)}
    # Stay inside the task's budget: the benchmark repeats one small call many times.
    args["amount"] = 0
    for _ in range(100):
        eng.authorize(chain, TOOL, args)
    start = time.perf_counter()
    for _ in range(iterations):
        decision = eng.authorize(chain, TOOL, args)
    python_s = (time.perf_counter() - start) / iterations
    assert decision.outcome == "allow", decision
    rust_s = eng.time_authorize(chain, TOOL, args, iterations)
    print(f"authorize, warm, {iterations} calls")
    print(f"  from Python: {python_s * 1e6:9.2f} µs per call")
    print(f"  in Rust:     {rust_s * 1e6:9.2f} µs per call")
    print(f"  ratio:       {python_s / rust_s:9.2f}x")


if __name__ == "__main__":
    main()
