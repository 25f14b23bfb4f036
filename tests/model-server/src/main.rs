//! `dispatch-model-server --script turns.json`: serves scripted turns on
//! loopback and prints `DISPATCH_MODEL_SERVER_LISTENING http://<addr>`.
//! More turns can be added with `POST /control/turns`; the record of
//! requests is at `GET /control/requests`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use dispatch_model_server::{ModelServer, parse_turns};

#[derive(Parser)]
#[command(
    version,
    about = "Scripted Anthropic Messages API server for tests (loopback, or the real node's bridge, only)"
)]
struct Args {
    /// Loopback address (or the real node's bridge host address, 10.213.0.1) to
    /// listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "DISPATCH_MODEL_SERVER_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    listen: SocketAddr,
    /// JSON script: a list of turns or {"turns": [...]}.
    #[arg(long, env = "DISPATCH_MODEL_SERVER_SCRIPT")]
    script: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let turns = match &args.script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_turns(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => Vec::new(),
    };
    let server = ModelServer::start(args.listen, turns).await?;
    println!("DISPATCH_MODEL_SERVER_LISTENING {}", server.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
