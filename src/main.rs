use shardman::config::Settings;
use shardman::startup::Application;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; the environment may carry everything.
    let _ = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            log::error!("{error}");
            return std::process::ExitCode::from(2);
        }
    };
    let address = format!("{}:{}", settings.host, settings.port);
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error) => {
            log::error!("cannot start: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    log::info!("shardman listening on {address}");
    match application.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
