//! `shardman <command>`: an operator's commands against a running deployment, over its HTTP API
//! (`SHARDMAN_URL`, `SHARDMAN_SECRET`). Without a command (or with `serve`) the binary runs the
//! service itself (main.rs).

mod autoscale;
mod drain;
mod remote;
mod reshard;
mod status;
mod table;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use remote::{Answer, Deployment, Failure};

#[derive(Debug, Parser)]
#[command(
    name = "shardman",
    version,
    about = "Hands out Discord shard ids to bot processes. Without a command, runs the service."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the service (as `shardman` without a command does), configured by its environment.
    Serve,
    #[command(flatten)]
    Remote(RemoteCommand),
}

/// The commands that ask a running deployment.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// The fleet: every held shard, the bot processes and the shard plan (`GET /status`).
    Status {
        #[command(flatten)]
        deployment: Deployment,
        #[command(flatten)]
        output: Output,
    },
    /// Starts a zero-downtime reshard to MAX_SHARDS shards (`POST /reshard`).
    Reshard {
        /// The new shard count.
        max_shards: u32,
        /// Shard ids per bot process in the new generation (`SHARDS_PER_PROCESS` as a number).
        #[arg(long, value_name = "K")]
        shards_per_process: Option<u32>,
        #[command(flatten)]
        deployment: Deployment,
        #[command(flatten)]
        output: Output,
    },
    /// How many bot processes the shard plan needs now (`GET /autoscale`).
    Autoscale {
        #[command(flatten)]
        deployment: Deployment,
        #[command(flatten)]
        output: Output,
    },
    /// Moves every shard of a bot process to the others by RESUME and gives it none, so it can be
    /// stopped without a re-IDENTIFY (`POST /processes/{process}/drain`; needs
    /// `SHARDS_PER_PROCESS=auto`).
    Drain {
        /// The process label its bot sends (`shardman status` lists them).
        process: String,
        /// Stop draining it instead: it may take shards again.
        #[arg(long, conflicts_with = "wait")]
        undo: bool,
        /// Wait until it holds no shard (exit status 6 if it still does after --timeout).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 600, requires = "wait")]
        timeout: u64,
        #[command(flatten)]
        deployment: Deployment,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, Args)]
pub struct Output {
    /// Print the API's JSON answer as it came, instead of a summary.
    #[arg(long)]
    json: bool,
}

impl Output {
    /// The answer as asked for: its JSON text, or `summary` of what it holds.
    fn show<T: serde::de::DeserializeOwned>(
        self,
        answer: Answer,
        summary: impl FnOnce(T) -> String,
    ) -> Result<String, Failure> {
        if self.json {
            Ok(format!("{}\n", answer.text))
        } else {
            answer.read().map(summary)
        }
    }
}

/// Runs `command` and prints its outcome: the answer on stdout, or one line on stderr and the
/// exit status that tells a script what went wrong (see [`Failure`]).
pub fn run(command: RemoteCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command.run()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

impl RemoteCommand {
    async fn run(self) -> Result<String, Failure> {
        match self {
            RemoteCommand::Status { deployment, output } => {
                let answer = deployment.client()?.get("status").await?;
                output.show(answer, status::summary)
            }
            RemoteCommand::Reshard {
                max_shards,
                shards_per_process,
                deployment,
                output,
            } => {
                let body = reshard::body(max_shards, shards_per_process);
                let answer = deployment.client()?.post_json("reshard", &body).await?;
                output.show(answer, reshard::summary)
            }
            RemoteCommand::Autoscale { deployment, output } => {
                let answer = deployment.client()?.get("autoscale").await?;
                output.show(answer, autoscale::summary)
            }
            RemoteCommand::Drain {
                process,
                undo,
                wait,
                timeout,
                deployment,
                output,
            } => {
                let shardman = deployment.client()?;
                let answer = shardman
                    .send_to(&["processes", &process, "drain"], undo)
                    .await?;
                let mut shown = output.show(answer, drain::summary)?;
                if wait {
                    let timeout = std::time::Duration::from_secs(timeout);
                    let done = drain::wait_until_empty(&shardman, &process, timeout).await?;
                    if !output.json {
                        shown.push_str(&done);
                    }
                }
                Ok(shown)
            }
        }
    }
}
