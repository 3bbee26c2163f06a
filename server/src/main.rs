//! `whis serve` and `whis check-site`: see `whis --help`.

use std::process::ExitCode;

use whis::config::{CheckSiteArgs, Command, ServeArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match whis::cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("whis: {e}");
            return ExitCode::from(2);
        }
    };
    whis::logging::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::CheckSite(args) => check_site(args).await,
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("whis: {e}");
            return ExitCode::from(2);
        }
    };
    // Caught before anyone hears the server is up.
    let signals = whis::Signals::listen();
    match whis::start(config).await {
        Ok(running) => {
            // One line, exactly this shape: scripts and tests read the port from it.
            println!("listening on {}", running.url());
            if let Some(stun) = running.stun_addr {
                println!("stun listening on udp://{stun}");
            }
            running.until_signal(signals).await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whis: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check_site(args: CheckSiteArgs) -> ExitCode {
    // The HTTP client (awc) runs its connections on the current thread.
    let report = tokio::task::LocalSet::new()
        .run_until(whis::check_site::check(&args))
        .await;
    match report {
        Ok(report) if args.json => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("whis: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            print!("{}", whis::check_site::render_text(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whis check-site: {e}");
            ExitCode::from(2)
        }
    }
}
