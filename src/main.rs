use std::process::ExitCode;

use clap::Parser;
use shardman::cli::{Cli, Command};
use shardman::config::Settings;
use shardman::startup::Application;

// A request allocates and frees many small buffers on the worker threads; glibc's malloc took
// about a tenth of a replica's CPU under load (BENCHMARKS.md, issue 11).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A missing .env is normal; the environment may carry everything.
    let _ = dotenvy::dotenv();
    match Cli::parse().command {
        None | Some(Command::Serve) => actix_web::rt::System::new().block_on(serve()),
        Some(Command::Remote(command)) => shardman::cli::run(command),
    }
}

/// Runs the service until SIGTERM or SIGINT has drained it.
async fn serve() -> ExitCode {
    // BOTS_FILE is read here too, so a file that does not load stops startup like a bad variable.
    let settings = Settings::from_env().and_then(|settings| settings.bots().map(|_| settings));
    shardman::telemetry::init_logging(
        settings
            .as_ref()
            .map(|settings| settings.log_format)
            .unwrap_or_default(),
    );
    let settings = match settings {
        Ok(settings) => settings,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(2);
        }
    };
    let address = format!("{}:{}", settings.host, settings.port);
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error) => {
            log::error!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("shardman listening on {address}");
    match application.run_until_terminated().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
