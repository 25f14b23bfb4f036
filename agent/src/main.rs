use std::process::ExitCode;

use clap::Parser;
use dispatch_agent::{Config, Token};

fn main() -> ExitCode {
    dispatch_process::init_logs(false);
    let config = Config::parse();
    if config.hold {
        // The agent gets the same arguments (and environment), without --hold.
        let args = std::env::args_os()
            .skip(1)
            .filter(|a| a != "--hold")
            .collect();
        return dispatch_agent::hold(config.listen, args);
    }
    let token = match Token::load(
        config.token_file.as_deref(),
        std::env::var("DISPATCH_AGENT_TOKEN").ok(),
    ) {
        Ok(t) => t,
        Err(e) => {
            dispatch_process::say(format_args!("dispatch-agent: {e}"));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            dispatch_process::say(format_args!("dispatch-agent: starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch_agent::run(config, token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            dispatch_process::say(format_args!("dispatch-agent: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
