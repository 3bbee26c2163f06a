//! `whis serve`: see `whis --help`.

use clap::Parser;
use whis::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,actix_server=warn,whis::access=warn"),
    )
    .format_timestamp_millis()
    .init();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("whis: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match whis::start(config).await {
        Ok(running) => {
            // One line, exactly this shape: scripts and tests read the port from it.
            println!("listening on {}", running.url());
            if let Some(stun) = running.stun_addr {
                println!("stun listening on udp://{stun}");
            }
            running.until_signal().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whis: cannot start: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
