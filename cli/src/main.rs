//! The `blackboard` command: a thin clap + tracing shell over `blackboard_cli`.

#[cfg(feature = "http")]
use blackboard_cli::ui;
use blackboard_cli::{bench, demo, mcp, verbs};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Blackboard: shared, leaderless documents for agents over NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "blackboard", version, about, long_about = None,
          after_help = "Exit status: 0 done; 1 failed, nothing was written; 2 bad arguments; \
                        3 written (durable in the local store) but not yet acknowledged by the \
                        log (`put`: it is published when the store is next opened with the \
                        server up); 4 answered, but the local store was found damaged and \
                        lost data for good (stderr names it).")]
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
    /// By default the agents share an embedded log (nothing to install); with --nats (or
    /// $NATS_URL) they each connect to a NATS JetStream server.
    Demo(demo::Args),
    /// List the documents of a space, with how many events each has on the log.
    Ls(verbs::ls::Args),
    /// Print a document (or the value at PATH) as JSON.
    ///
    /// Reads the document from a NATS JetStream server (--nats, or $NATS_URL) or the
    /// embedded log in a store directory (--store), up to date with everything the log
    /// holds. --at reads it as it was at an earlier position (like `show`).
    Get(verbs::get::Args),
    /// Write a JSON value at a path of a document, and wait until the log has it.
    ///
    /// Maps missing on the way to PATH are created; the document and the space are created
    /// on their first write. The change is recorded as written by --as (default: cli),
    /// with --message saying why. Prints the path, the value, and the change's log
    /// position and hash.
    ///
    /// Exit status: 0 when the log acknowledged the change; 1 when nothing was written; 3
    /// when the change is written (durable in the local store) but the log did not
    /// acknowledge it within --timeout. A store kept that way (the temporary one, too, when
    /// no --store was given; its path is printed) publishes the change when opened again
    /// with the server up. With --store and the server down, the change is written to the
    /// store at once (exit 3).
    Put(verbs::put::Args),
    /// Print each change to a document as it happens, until interrupted (or --count).
    ///
    /// One line per change (JSON Lines with --json), for the paths matching PATTERN
    /// (`*` is one segment, `**` any depth; default: everything). Starts with the next
    /// change, or after an earlier position with --from (--from beginning: the whole
    /// history, then live). Once listening it says so on stderr ("watching ...").
    Watch(verbs::watch::Args),
    /// List a document's events: who changed what, when and why.
    ///
    /// Reads the document from a NATS JetStream server (--nats, or $NATS_URL) or the
    /// embedded log in a store directory (--store); filters by position, agent and path
    /// pattern.
    History(verbs::history::Args),
    /// Print the document (or the value at PATH) as it was at a position.
    Show(verbs::show::Args),
    /// List what changed between two positions.
    Diff(verbs::diff::Args),
    /// Tell who wrote the value at a path (and, for text, each run of characters).
    Blame(verbs::blame::Args),
    /// Write a snapshot of the document to the log; with --trim, also remove the events
    /// below it.
    Snapshot(verbs::snapshot::Args),
    /// Run the document's events through a projection, one line per event.
    Replay(verbs::replay::Args),
    /// Make an agent's key pair (`keys new NAME`) or print a seed file's public key
    /// (`keys show FILE`).
    ///
    /// An agent's key is an nkey user key pair: with --key FILE (or $BLACKBOARD_KEY) every
    /// command signs the changes it writes with it, and authenticates to a NATS server that
    /// lists the public key as an nkey user.
    Keys(verbs::keys::Args),
    /// Show a space's roster in force (`roster show`) or publish a new one signed by an
    /// admin (`roster set FILE --key ADMIN.nk`).
    ///
    /// A roster says which keys may sign as which agent, where each agent may write, and
    /// which keys (admins) may change it. With one in force, every replica rejects changes
    /// it does not allow, and writes it would reject are refused at once. --admin-key U…
    /// pins the keys a space's first roster must be signed by.
    Roster(verbs::roster::Args),
    /// Print a nats-server authorization block for --space from its roster (FILE, or the
    /// roster in force on the log): one nkey user per listed key, writers publishing only
    /// the space's change subjects and the JetStream API the engine needs, read-only agents
    /// publishing no change at all (docs/nats-permissions.md).
    Auth(verbs::auth::Args),
    /// Serve the board to AI agents over the Model Context Protocol (stdio, or --http),
    /// acting as one agent.
    Mcp(mcp::Args),
    /// Serve a live web view of a space: its documents, changes as they happen (who and
    /// why), the timeline with the document at any event, blame, presence and claims.
    ///
    /// Prints the page's URL with its access token (http://127.0.0.1:8080/?token=...);
    /// every request must carry the token. Listens on loopback unless --addr says otherwise.
    #[cfg(feature = "http")]
    Ui(ui::Args),
    /// Measure a NATS deployment the way Blackboard uses it, beside raw JetStream.
    ///
    /// Runs the project's benchmark scenarios against --nats (or $NATS_URL): propagation
    /// from one agent's put to another's watch, write throughput, writes awaiting their
    /// acks, catch-up, cold start, fan-out to watchers (also as processes of their own), the
    /// embedded log, apply cost and the on-disk store; each beside a baseline measured in the
    /// same run (raw JetStream publishes and consumers, NATS KV, automerge). Prints one
    /// markdown table on stdout and the details on stderr. Everything it creates on the
    /// server is deleted at the end (unless --keep). --replicas 3 on a cluster.
    Bench(bench::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Ls(args) => verbs::ls::run(args).await,
        Command::Get(args) => verbs::get::run(args).await,
        Command::Put(args) => verbs::put::run(args).await,
        Command::Watch(args) => verbs::watch::run(args).await,
        Command::History(args) => verbs::history::run(args).await,
        Command::Show(args) => verbs::show::run(args).await,
        Command::Diff(args) => verbs::diff::run(args).await,
        Command::Blame(args) => verbs::blame::run(args).await,
        Command::Snapshot(args) => verbs::snapshot::run(args).await,
        Command::Replay(args) => verbs::replay::run(args).await,
        Command::Keys(args) => verbs::keys::run(args).await,
        Command::Roster(args) => verbs::roster::run(args).await,
        Command::Auth(args) => verbs::auth::run(args).await,
        Command::Mcp(args) => mcp::run(args).await,
        #[cfg(feature = "http")]
        Command::Ui(args) => ui::run(args).await,
        Command::Bench(args) => match bench::command(args).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!("a scenario failed (its row says why)")),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`blackboard history | head`): nothing more to say.
        Err(e) if verbs::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) if verbs::is_store_lost(&e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(verbs::EXIT_STORE_LOST)
        }
        Err(e) if verbs::is_not_acknowledged(&e) => {
            eprintln!("warning: {e:#}");
            std::process::ExitCode::from(verbs::EXIT_NOT_ACKNOWLEDGED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            if verbs::is_usage(&e) {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
