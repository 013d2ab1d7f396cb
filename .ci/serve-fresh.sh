# Sourced by the scripts that check the real binary: `serve_fresh` starts `$bin serve` on a
# free loopback port with a fresh data dir `$data` (created) and returns once it listens and
# has written admin.key, with `$pid` and `$address` set; the caller's EXIT trap stops it.
serve_fresh() {
  mkdir -p "$data"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$data" >"$data/stdout" 2>"$data/serve.log" &
  pid=$!
  address=
  for _ in $(seq 1 600); do
    address=$(sed -n 's/.*listening.*address=\([0-9.:]*\).*/\1/p' "$data/serve.log" | head -n 1)
    [ -n "$address" ] && [ -s "$data/admin.key" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$data/serve.log" >&2; return 1; }
    sleep 0.1
  done
  echo "crm-api never listened" >&2
  cat "$data/serve.log" >&2
  return 1
}
