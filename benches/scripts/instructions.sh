#!/usr/bin/env bash
# Instruction counts (callgrind) per decision, as ratios: stable where wall clock on a shared VM
# is not. Each figure is (run with N iterations - run with 0) / N, the median of three process
# runs (hash seeds differ per process, and Cedar's policy order with them).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -q -p aegis-benches --bin profile_warm
bin=target/x86_64-unknown-linux-gnu/release/profile_warm
count() { # env n
  env $1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 0 "$2" 2>&1 | sed -n 's/.*Collected : //p'
}
once() { # env n
  local a b; a=$(count "$1" 0); b=$(count "$1" "$2"); echo $(( (b - a) / $2 ))
}
per() { # env n: median of three
  printf '%s\n' "$(once "$1" "$2")" "$(once "$1" "$2")" "$(once "$1" "$2")" | sort -n | sed -n 2p
}
raw=$(per RAW=1 1000); warm=$(per WARM=1 1000); floor=$(per FLOOR=1 40)
cold=$(( $(per COLD=1 40) - $(per "COLD=1 SKIP=1" 40) ))  # minus minting the fresh chains
awk -v r="$raw" -v w="$warm" -v f="$floor" -v c="$cold" 'BEGIN {
  printf "raw Cedar            %9d instructions\n", r
  printf "warm decision        %9d instructions = %.3fx raw Cedar (target <= 1.25x)\n", w, w / r
  printf "3 verify + raw Cedar %9d instructions\n", f
  printf "cold decision        %9d instructions = %.3fx that floor (target <= 1.05x)\n", c, c / f
}'

# The Python binding, when its package is built (`maturin develop --release`): a warm call from
# Python against the same call inside Rust, per call.
py=${AEGIS_PYTHON:-target/pyenv/bin/python}
if [ -x "$py" ] && "$py" -c 'import aegis' 2>/dev/null; then
  pycount() { # side n
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" aegis-py/bench/call_loop.py "$2" "$1" 2>&1 |
      sed -n 's/.*Collected : //p'
  }
  # Two runs with n and 2n calls (both sides pay their one-time costs alike in each).
  pyonce() { local a b; a=$(pycount "$1" "$2"); b=$(pycount "$1" $(( 2 * $2 ))); echo $(( (b - a) / $2 )); }
  pyper() { printf '%s\n' "$(pyonce "$1" "$2")" "$(pyonce "$1" "$2")" "$(pyonce "$1" "$2")" | sort -n | sed -n 2p; }
  python=$(pyper python 1000); rust=$(pyper rust 1000)
  awk -v p="$python" -v r="$rust" 'BEGIN {
    printf "authorize from Python %8d instructions = %.3fx the same call in Rust, %d (goal <= 1.15x)\n", p, p / r, r
  }'
else
  echo "authorize from Python: the aegis package is not built here (maturin develop --release), not counted"
fi

# The Node binding, when its module is built (`npx napi build --platform --release`): warm calls
# from Node against the same call inside Rust, both in one process (the Rust loop's entry splits
# the count). V8 optimizes on the main thread here, so its optimized code is what is counted.
node_module=$(ls aegis-node/aegis.*.node 2>/dev/null | head -1)
if command -v node >/dev/null 2>&1 && [ -n "$node_module" ]; then
  nodeparts() { # n: prints "node-side rust-side" totals
    local dir; dir=$(mktemp -d)
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" --dump-before=aegis_sod::json_api::time_authorize \
      node --no-concurrent-recompilation --no-concurrent-sparkplug aegis-node/bench/call_loop.mjs "$1" >/dev/null 2>&1
    local calls rust
    calls=$(sed -n 's/^summary: //p' "$dir"/cg.*.2)
    rust=$(sed -n 's/^summary: //p' $(ls "$dir"/cg.* | grep -v '\.[0-9]$'))
    rm -rf "$dir"
    echo "$calls $rust"
  }
  nodeonce() { # n: the two sides per call, less what a run of no calls counts
    local zero full
    zero=$(nodeparts 0); full=$(nodeparts "$1")
    awk -v z="$zero" -v f="$full" -v n="$1" 'BEGIN { split(z, a, " "); split(f, b, " "); printf "%d %d\n", (b[1] - a[1]) / n, (b[2] - a[2]) / n }'
  }
  read -r node rust < <(printf '%s\n' "$(nodeonce 4000)" "$(nodeonce 4000)" "$(nodeonce 4000)" | awk '{ print $1 / $2, $0 }' | sort -n | sed -n 2p | cut -d' ' -f2-)
  awk -v p="$node" -v r="$rust" 'BEGIN {
    printf "authorize from Node   %8d instructions = %.3fx the same call in Rust, %d (goal <= 1.25x)\n", p, p / r, r
  }'
else
  echo "authorize from Node: the aegis-node module is not built here (npx napi build --platform --release), not counted"
fi
