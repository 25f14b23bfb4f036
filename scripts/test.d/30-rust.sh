# Unit and integration tests of every crate (real PTYs, sockets, SQLite files).
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast
