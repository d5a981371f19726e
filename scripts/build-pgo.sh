#!/usr/bin/env bash
# Builds tokentop with profile-guided optimisation: an instrumented build is run on a
# training workload, and the release build is compiled again with the counts it left,
# so the compiler lays out and inlines the per-event path for how it really runs
# (about a fifth fewer instructions an event in `report`; see the README's figures).
#
#   scripts/build-pgo.sh            # the binary: target/pgo/release/tokentop
#
# The training covers what a user runs, so no path is left cold and optimised for size:
# `report` over every input format (one and two threads), the console in a pseudo-terminal
# on the demo and on a followed file, and `check` with the seed alert rules.
# Needs rustup's llvm-tools (added here, for the toolchain in use) and `script`
# (util-linux, on every Debian). Not part of `cargo test`: `.ci/run` does not build it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${TMPDIR:-/tmp}/tokentop-pgo
rm -rf "$work"
mkdir -p "$work/profiles" "$work/data"

rustup component add llvm-tools > /dev/null
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
[[ -x $profdata ]] || { echo "llvm-profdata not found at $profdata (rustup component add llvm-tools)" >&2; exit 1; }

echo "1/4 instrumented build (target/pgo-generate)"
# Built alone, as the optimised build will be: with an example beside it, cargo would
# add the dev-dependencies, the crate's hash would change with them, and no internal
# function's counts would match. (Build scripts and proc macros, instrumented too,
# leave their counts in `build`.)
RUSTFLAGS="-Cprofile-generate=$work/build" CARGO_TARGET_DIR=target/pgo-generate \
  cargo build --release --locked --quiet --bin tokentop
bin=$root/target/pgo-generate/release/tokentop
# The training data's generator, a plain build.
cargo build --release --locked --quiet --example gen_events

echo "2/4 training"
target/release/examples/gen_events 200000 300 1 5000 --realistic > "$work/data/realistic.jsonl"
target/release/examples/gen_events 100000 > "$work/data/plain.jsonl"
# Each other format's sample, repeated to tens of thousands of events.
for f in helicone.jsonl helicone.csv litellm.jsonl otel.jsonl; do
  out=$work/data/$f
  if [[ $f == *.csv ]]; then
    head -n 1 "tests/data/$f" > "$out"
    for _ in $(seq 2000); do tail -n +2 "tests/data/$f"; done >> "$out"
  else
    for _ in $(seq 2000); do cat "tests/data/$f"; done > "$out"
  fi
done
export LLVM_PROFILE_FILE=$work/profiles/report-%p-%m.profraw
for threads in 1 2; do
  "$bin" report --window all --threads "$threads" "$work/data/realistic.jsonl" > /dev/null
done
"$bin" report --window all --format table "$work/data/plain.jsonl" > /dev/null
for f in helicone.jsonl helicone.csv litellm.jsonl otel.jsonl; do
  "$bin" report --window all "$work/data/$f" > /dev/null 2>&1 # (the samples' bad fields, named)
done
# What is not a report: `check` and the console.
export LLVM_PROFILE_FILE=$work/profiles/console-%p-%m.profraw
# (Exit status 1 when a rule fires at the end.)
"$bin" check --config assets/config.example.toml "$work/data/realistic.jsonl" > /dev/null || [[ $? == 1 ]]
# The console in a pseudo-terminal for a few seconds, through its views, then quit with `q`.
console() {
  { for key in 2 3 4 5 6 1; do sleep 1; printf '%s' "$key"; done; sleep 1; printf 'q'; } |
    script --quiet --return --command "stty cols 120 rows 40; $bin $*" /dev/null > /dev/null
}
console
console "$work/data/realistic.jsonl"

echo "3/4 merging the counts"
# The console's counts grow with the seconds it ran, and its frames (histograms merged
# for every window) would outweigh the reports' per-event path, which the compiler would
# then no longer take for hot. The reports' counts are weighted to three times the
# console's, so both are hot.
total() { "$profdata" show "$1" | sed -n 's/^Total count: //p'; }
"$profdata" merge -o "$work/report.profdata" "$work"/profiles/report-*.profraw
"$profdata" merge -o "$work/console.profdata" "$work"/profiles/console-*.profraw
weight=$(( 3 * $(total "$work/console.profdata") / $(total "$work/report.profdata") + 1 ))
echo "    reports weighted $weight to 1"
"$profdata" merge -o "$work/tokentop.profdata" \
  --weighted-input="$weight,$work/report.profdata" --weighted-input="1,$work/console.profdata"

echo "4/4 optimised build (target/pgo)"
RUSTFLAGS="-Cprofile-use=$work/tokentop.profdata" CARGO_TARGET_DIR=target/pgo \
  cargo build --release --locked --quiet --bin tokentop
# Counts are matched to functions by name: a build whose names differ (another toolchain,
# other features) would take none of them, silently. Most of the 20 hottest functions the
# training saw must be in the binary under their names (a function inlined everywhere is not).
"$profdata" show --topn=20 "$work/tokentop.profdata" | grep -o '_ZN[0-9A-Za-z_$.]*E' | sort -u > "$work/hottest"
hottest=$(wc -l < "$work/hottest")
found=$("$(dirname "$profdata")/llvm-nm" target/pgo/release/tokentop | awk '{print $NF}' | sort -u | grep -cxFf "$work/hottest" || true)
if ((found * 2 < hottest)); then
  echo "only $found of the $hottest hottest trained functions are in the built binary: its counts were not used" >&2
  exit 1
fi
echo "built: target/pgo/release/tokentop ($found of the $hottest hottest trained functions found in it)"
