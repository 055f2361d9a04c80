#!/usr/bin/env bash
# Runs every Sluice test, on a fresh machine too: installs what it needs (kcat,
# Node and Chromium from Debian if missing, a Python venv with pinned clients, kafkajs from npm),
# then format and lint checks, the Rust unit, property, wire and crash tests, and the
# stock-client compatibility suite against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# The TLS tests make their certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The console tests drive headless Chromium through its WebDriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test
fi
echo "== release build (broker and the fuzzer example)"
cargo build --release --quiet --bin sluice --example fuzz

venv=compat-tests/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r compat-tests/requirements.txt
cd compat-tests
# kafkajs and lz4js (kafkajs's LZ4 codec, pure JavaScript), pinned by
# package-lock.json; neither has install scripts.
npm ci --no-audit --no-fund --silent --ignore-scripts
echo "== compat tests (kcat, confluent-kafka, kafka-python, aiokafka, kafkajs, HTTP clients, Chromium, fuzz read-back)"
# pytest captures each test's output itself; what reaches stderr outside that is
# librdkafka's teardown chatter after the summary. Keep it, but show it only on failure,
# so the runner's summary stays the last line.
status=0
.venv/bin/python -m pytest -q -ra 2>.stderr.log || status=$?
if [ "$status" -ne 0 ]; then
  cat .stderr.log >&2
fi
exit "$status"
