use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dispatch_process::init_logs(false);
    let cfg = dispatch_gateway::Config::parse();
    match dispatch_gateway::run(cfg).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            dispatch_process::say(format_args!("dispatch-gateway: {e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
