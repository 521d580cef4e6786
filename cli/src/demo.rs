//! `blackboard demo`: several agents editing one document concurrently.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use blackboard::automerge::transaction::Transactable;
use blackboard::automerge::{ChangeHash, ScalarValue, ROOT};
use blackboard::log::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use blackboard::replica::{Config, Replica};
use blackboard::schemas::{AgentId, DocumentId, SpaceId};

/// Options of `blackboard demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many agents edit the document at once (1 to 64).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    agents: u16,
    /// How many rounds of edits each agent makes (each round: a conflicting map write, a text
    /// insert and a counter increment).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rounds: u32,
    /// Use the NATS JetStream server at this URL instead of the embedded log
    /// (for example nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// NATS credentials file, with --nats.
    #[arg(long, value_name = "FILE", requires = "nats")]
    creds: Option<PathBuf>,
    /// Directory for the agents' local stores (default: a temporary directory, removed
    /// afterwards).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Space of the demo document.
    #[arg(long, default_value = "demo")]
    space: SpaceId,
    /// Name of the demo document.
    #[arg(long, default_value = "board")]
    doc: DocumentId,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let temp;
    let store_dir = match &args.store {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary store directory")?;
            temp.path().to_owned()
        }
    };
    let db = sled::open(store_dir.join("replicas"))
        .with_context(|| format!("opening the local store in {}", store_dir.display()))?;
    let embedded = match &args.nats {
        None => Some(Arc::new(EmbeddedLog::open(db.clone())?) as Arc<dyn EventLog>),
        Some(_) => None,
    };
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let log = match (&embedded, &args.nats) {
            (Some(log), _) => log.clone(),
            (None, Some(url)) => connect(url, args.creds.as_ref(), &args.space, i).await?,
            (None, None) => unreachable!("one of the two is set"),
        };
        let agent: AgentId = format!("agent-{i}").parse()?;
        let config = Config::new(args.space.clone(), args.doc.clone(), agent);
        agents.push(Replica::open(log, &db, config)?);
    }
    let where_ = args.nats.as_deref().unwrap_or("the embedded log");
    println!(
        "{} agents editing {}/{} on {where_}, {} rounds each",
        args.agents, args.space, args.doc, args.rounds
    );

    // Agent 0 lays out the document; everyone starts from it, so their text inserts land in
    // one shared text object rather than in competing ones.
    let first = &agents[0];
    first
        .change_with_message(Some("set up the board"), |tx| {
            tx.put_object(ROOT, "notes", blackboard::automerge::ObjType::Text)?;
            tx.put(ROOT, "edits", ScalarValue::counter(0))?;
            tx.put(ROOT, "status", "new")
        })
        .await?;
    first.flush().await?;
    let base = first.heads();
    for a in &agents {
        a.wait_for(&base).await?;
    }

    let tasks: Vec<_> = agents
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, agent)| {
            let rounds = args.rounds;
            tokio::spawn(async move {
                for r in 0..rounds {
                    let why = format!("agent {i} round {r}");
                    agent
                        .change_with_message(Some(&why), |tx| {
                            tx.put(ROOT, "status", format!("agent-{i} says round {r}"))?;
                            tx.put(ROOT, "last_writer", i as i64)?;
                            tx.increment(ROOT, "edits", 1)
                        })
                        .await?;
                    agent
                        .splice_text("/notes", 0, 0, &format!("[{i}.{r}]"))
                        .await?;
                    tokio::task::yield_now().await;
                }
                agent.flush().await?;
                anyhow::Ok(agent.heads())
            })
        })
        .collect();
    let mut all_heads: BTreeSet<ChangeHash> = BTreeSet::new();
    for t in tasks {
        all_heads.extend(t.await.context("an agent task failed")??);
    }
    let all_heads: Vec<ChangeHash> = all_heads.into_iter().collect();
    for a in &agents {
        a.wait_for(&all_heads).await?;
    }

    let doc = agents[0].to_json();
    println!("{}", serde_json::to_string_pretty(&doc)?);
    let reference = agents[0].heads();
    let mut converged = true;
    for a in &agents {
        let heads = a.heads();
        let same = heads == reference && a.to_json() == doc;
        converged &= same;
        println!(
            "{:<10} heads {}{}",
            a.config().agent,
            heads.iter().map(short).collect::<Vec<_>>().join(","),
            if same { "" } else { "  <- differs" }
        );
    }
    let expected = u64::from(args.agents) * u64::from(args.rounds);
    if doc["edits"].as_u64() != Some(expected) {
        bail!(
            "counter is {} but {expected} increments were made",
            doc["edits"]
        );
    }
    if !converged {
        bail!("replicas did not converge");
    }
    println!(
        "converged: {} agents, identical heads and JSON; counter = {expected}",
        args.agents
    );
    blackboard::store::flush_db(&db).await?;
    Ok(())
}

async fn connect(
    url: &str,
    creds: Option<&PathBuf>,
    space: &SpaceId,
    i: u16,
) -> anyhow::Result<Arc<dyn EventLog>> {
    let name = format!("blackboard-demo-{i}");
    let client = crate::cli::open::connect_nats(url, creds.map(PathBuf::as_path), &name).await?;
    let log = JetStreamLog::new(client, JetStreamConfig::default());
    if i == 0 {
        log.ensure_stream(space)
            .await
            .context("setting up the JetStream stream")?;
    }
    Ok(Arc::new(log))
}

fn short(h: &ChangeHash) -> String {
    h.to_string()[..12].to_owned()
}
