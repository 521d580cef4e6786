//! `blackboard keys`: an agent's key pair. `keys new NAME` makes an nkey user key pair and
//! writes its seed to a file only its owner can read; `keys show FILE` prints the public key
//! of a seed file. The public key (`U…`) goes on stdout alone, so a script can capture it
//! (`KEY=$(blackboard keys new alice)`) for a server's `authorization` block or a roster.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use blackboard_client::schemas::nkeys::KeyPair;

/// The `keys` subcommands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a new nkey user key pair: write its seed (the secret) to FILE, created readable
    /// by its owner only (mode 0600; an existing file is never overwritten), and print the
    /// public key (U…). Use the file with --key (or $BLACKBOARD_KEY) and the public key in a
    /// NATS server's `authorization { users = [ { nkey: U… } ] }`.
    New {
        /// The key's name: the default file is NAME.nk in the current directory.
        name: String,
        /// Where to write the seed.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the public key (U…) of the seed file FILE.
    Show {
        /// The seed file.
        file: PathBuf,
    },
}

/// Runs `blackboard keys`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::New { name, out } => {
            if name.is_empty() || name.contains(['/', '\\']) {
                return Err(super::Usage(format!(
                    "{name:?} is not a key name: give a name without slashes (or --out FILE)"
                ))
                .into());
            }
            let path = out.unwrap_or_else(|| PathBuf::from(format!("{name}.nk")));
            let key = KeyPair::new_user();
            write_seed(&path, &key)?;
            println!("{}", key.public_key());
            eprintln!(
                "wrote the seed of {name} to {} (readable by you only; keep it secret)",
                path.display()
            );
            Ok(())
        }
        Command::Show { file } => {
            let options = blackboard_client::Options::new("keys")?.key_file(&file)?;
            println!("{}", options.public_key().unwrap_or_default());
            Ok(())
        }
    }
}

/// Writes `key`'s seed to a new file at `path`, created with mode 0600 (on Unix), never
/// replacing an existing file.
fn write_seed(path: &Path, key: &KeyPair) -> anyhow::Result<()> {
    let seed = key
        .seed()
        .map_err(|e| anyhow::anyhow!("the new key has no seed: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created with these permissions, never readable by others even for a moment.
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists: not overwriting a key file (remove it first, or give --out)",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("creating the key file {}", path.display()))
        }
    };
    writeln!(file, "{seed}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the key file {}", path.display()))
}
