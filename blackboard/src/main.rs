//! The `blackboard` command: a thin clap + tracing shell over the engine.

mod demo;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Blackboard: shared, leaderless documents for agents over NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "blackboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run several agents editing one document at once and show that they converge.
    ///
    /// The agents write conflicting values to the same map keys, insert into the same text
    /// and increment the same counter, all concurrently. Then each waits for the others'
    /// changes and the command prints the document and every agent's heads, which are equal.
    /// By default the agents share an embedded log (nothing to install); with --nats they
    /// each connect to a NATS JetStream server.
    Demo(demo::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
