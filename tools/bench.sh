#!/usr/bin/env bash
# make bench: a performance report (not a test). Prints the binary's size and linkage, then runs
# the benchmarks that measure boot and drain on real engines, the 1000-agent scale run against
# the AWS front with Route 53 at 5 requests/s and SSM at 40/s, and the Route 53 calls of three
# managers booting together.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-/tmp/swarm-agent-bench.txt}
{
  echo "== binary"
  ls -l bin/swarm-agent | awk '{printf "size: %d bytes (%.1f MiB)\n", $5, $5/1048576}'
  file bin/swarm-agent | sed 's/^[^:]*: /file: /'
  if ldd bin/swarm-agent >/dev/null 2>&1; then echo "ldd: DYNAMIC (not static!)"; else echo "ldd: not a dynamic executable (static)"; fi
  echo
  echo "== scale run: agents booting at once without engines (real discovery + token paths)"
  # 1000 workers, once per token store (SSM, Secrets Manager), three runs each
  go test -count=3 -run '^$' -bench 'BenchmarkScale' -benchtime=1x -timeout 30m ./internal/scale/ | grep -E '^(Benchmark|ok|FAIL|---)' || true
  # 10,000 workers with Secrets Manager (the front shares simultaneous identical reads of moto; bare-reads-s is the floor measured in the run)
  SCALE_AGENTS=10000 SCALE_STORES=secretsmanager go test -count=1 -run '^$' -bench 'BenchmarkScale' -benchtime=1x -timeout 30m ./internal/scale/ | grep -E '^(Benchmark|ok|FAIL|---)' || true
  echo
  echo "== 3 managers booting together: Route 53 calls counted by the front (moto + front, in-memory engines; bound 9)"
  go test -count=1 -run '^TestManagersBootCalls$' -v -timeout 5m ./discovery/route53/ \
    | grep -E 'Route 53 calls|made|^(ok|FAIL|--- FAIL)' | sed -E 's/^ +calls_test.go:[0-9]+: //' || true
  echo
  echo "== real engines (boot, formation, API calls per boot, drain overhead)"
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    go test -count=1 -run '^$' -bench 'BenchmarkDrainOverhead' -benchtime=1x -timeout 30m ./internal/e2e/ | grep -E '^(Benchmark|ok|FAIL|---)|bench:' || true
    # boot's cost over the bare SwarmJoin (the floor, measured in the same run): medians of 5
    # (BENCH_AGENT_BASE=path/to/older/swarm-agent times that build too, in the same rounds)
    go test -count=1 -run '^$' -bench 'BenchmarkJoin' -benchtime=5x -timeout 30m ./internal/e2e/ | grep -E '^(Benchmark|ok|FAIL|---)|bench:.*(medians? of (5|10)|stages \(medians)' || true
  else
    echo "skipped: needs root and dockerd (run sudo make prepare first)"
  fi
} | tee "$out"
echo "report written to $out"
