"""Per-call cost of `authorize` from Python beside the same call measured in Rust, two Python
threads against one, and the cost of a call late in a long task against an early one.

    python aegis-py/bench/bench_authorize.py [iterations]

Both sides run the same engine build (whatever `maturin develop` produced: debug by default,
`maturin develop --release` for figures worth quoting) on the same warm request, so the first
ratio is the cost of the binding: JSON conversion, the GIL hand-off and building the Python
`Decision`. Threads decide in tasks of their own (the GIL is released for the whole decision).
The long task is 10,001 calls (the first, which verifies the chain, untimed); the ratio is the
mean of the last 500 over calls 2-501, on the memory, SQLite and Redis stores (a private
loopback redis-server, when one is installed). Nothing is asserted about speed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, List, Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))

from payments_setup import TOOL, engine, finance_chain, pay, unique_task  # noqa: E402

# Stay inside the task's budget: the benchmark repeats one small call many times.
ARGS = {**pay(10), "amount": 0}


def per_call(eng, chain, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        decision = eng.authorize(chain, TOOL, ARGS)
    took = (time.perf_counter() - start) / iterations
    assert decision.outcome == "allow", decision
    return took


def binding(iterations: int) -> None:
    eng = engine()
    chain = finance_chain("bench-task")
    per_call(eng, chain, 100)
    # Python and Rust in alternation, five times: the median round (by ratio) is reported, with
    # the spread, so that one slow moment of the host does not decide the figure.
    rounds = []
    for _ in range(5):
        python_s = per_call(eng, chain, iterations)
        rust_s = eng.time_authorize(chain, TOOL, ARGS, iterations)
        rounds.append((python_s / rust_s, python_s, rust_s))
    rounds.sort()
    ratio, python_s, rust_s = rounds[2]
    spread = ", ".join(f"{r[0]:.2f}" for r in rounds)
    print(f"authorize, warm, {iterations} calls, median of 5 rounds")
    print(f"  from Python: {python_s * 1e6:9.2f} µs per call")
    print(f"  in Rust:     {rust_s * 1e6:9.2f} µs per call")
    print(f"  ratio:       {ratio:9.2f}x  (rounds: {spread}; goal: at most 1.15x)")


def threads(iterations: int) -> None:
    """Decisions per second with one and two Python threads, each in its own task."""
    eng = engine()

    def rate(n: int) -> float:
        chains = [finance_chain(unique_task(f"bench-thread-{i}")) for i in range(n)]
        for c in chains:
            per_call(eng, c, 50)
        barrier = threading.Barrier(n + 1)

        def work(c) -> None:
            barrier.wait()
            per_call(eng, c, iterations)

        workers = [threading.Thread(target=work, args=(c,)) for c in chains]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        return n * iterations / (time.perf_counter() - start)

    # One and two threads in alternation, three times: the median pair (by ratio) is reported,
    # with the spread, so that one slow moment of the host does not decide the figure.
    pairs = sorted(((one, two) for one, two in ((rate(1), rate(2)) for _ in range(3))), key=lambda p: p[1] / p[0])
    spread = ", ".join(f"{two / one:.2f}" for one, two in pairs)
    one, two = pairs[1]
    print(f"threads, memory store, {iterations} calls per thread, median of 3 rounds")
    print(f"  1 thread:    {one:9.0f} decisions/s")
    print(f"  2 threads:   {two:9.0f} decisions/s")
    print(f"  ratio:       {two / one:9.2f}x  (rounds: {spread})")


def long_task(calls: int, store: Optional[str], name: str) -> None:
    eng = engine(store)
    chain = finance_chain(unique_task("bench-long"))
    # The task's first call verifies the chain's signatures: it is not what a long task costs.
    assert eng.authorize(chain, TOOL, ARGS).outcome == "allow"
    times: List[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        decision = eng.authorize(chain, TOOL, ARGS)
        times.append(time.perf_counter() - start)
        assert decision.outcome == "allow", decision
    first, last = sum(times[:500]) / 500, sum(times[-500:]) / 500
    print(f"one task of {calls + 1} calls, {name}")
    print(f"  calls 2-501:   {first * 1e6:9.2f} µs per call")
    print(f"  last 500:      {last * 1e6:9.2f} µs per call")
    print(f"  ratio:         {last / first:9.2f}x")
    # The two figures above are a second or more apart, and a store's latency on a busy host can
    # swing by more than the effect sought. Paired: the long task beside a fresh one (its calls
    # 2-501), in alternating batches of 25, so both sides meet the same moments of the host.
    fresh = finance_chain(unique_task("bench-fresh"))
    assert eng.authorize(fresh, TOOL, ARGS).outcome == "allow"
    ratios = []
    for _ in range(20):
        ratios.append(per_call(eng, chain, 25) / per_call(eng, fresh, 25))
    ratios.sort()
    print(f"  paired, long task / fresh task, 20 alternating batches of 25 calls:"
          f" median {ratios[10]:.2f}x (quartiles {ratios[5]:.2f}-{ratios[15]:.2f})")


@contextlib.contextmanager
def redis_server() -> Iterator[Optional[str]]:
    """A private redis-server on loopback for the run (no persistence), or None without one."""
    if shutil.which("redis-server") is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    binding(iterations)
    threads(iterations)
    long_task(10_000, None, "memory store")
    with tempfile.TemporaryDirectory() as tmp:
        long_task(10_000, "sqlite:" + os.path.join(tmp, "state.db"), "sqlite store")
    with redis_server() as url:
        if url is None:
            print("one task on the redis store: redis-server is not installed, not measured")
        else:
            long_task(10_000, url, "redis store (a private loopback redis-server)")
    print()
    # The peers in the same run: cedarpy and the Agent Governance Toolkit's evaluators.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import peers  # noqa: E402

    peers.main(iterations)


if __name__ == "__main__":
    main()
