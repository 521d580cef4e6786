//! `blackboard demo`: several agents editing one document concurrently.

use std::collections::BTreeSet;

use std::time::Duration;

use anyhow::{bail, Context as _};
use blackboard_client::automerge::transaction::Transactable;
use blackboard_client::automerge::{ChangeHash, ObjType, ScalarValue, ROOT};
use blackboard_client::{AgentId, Doc, DocumentId, SpaceId};

use crate::connect::{self, BoardArgs, Connected, Log, Missing};

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
    /// Where the board is. Without --nats (and $NATS_URL) the agents share the embedded log
    /// of --store DIR (a temporary directory by default, removed afterwards); with a NATS
    /// server each agent has its own connection and its own store, DIR/agent-N.
    #[command(flatten)]
    board: BoardArgs,
    /// Space of the demo document.
    #[arg(long, default_value = "demo")]
    space: SpaceId,
    /// Name of the demo document.
    #[arg(long, default_value = "board")]
    doc: DocumentId,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let temp;
    let log = match args.board.log()? {
        Some(log) => log,
        None => {
            temp = tempfile::tempdir().context("creating a temporary store directory")?;
            Log::Embedded {
                store: temp.path().to_owned(),
            }
        }
    };
    let names: Vec<AgentId> = (0..args.agents)
        .map(|i| format!("agent-{i}").parse())
        .collect::<Result<_, _>>()?;
    // One board per agent over NATS (each its own connection, as separate processes would
    // have); on the embedded log one board, which only one process can open, shared by the
    // agents with `as_agent`.
    let mut boards: Vec<Connected> = Vec::new();
    let mut agents: Vec<(AgentId, Doc)> = Vec::new();
    match &log {
        Log::Nats { store, .. } => {
            for name in &names {
                let log = match (&log, store) {
                    (Log::Nats { url, creds, .. }, Some(dir)) => Log::Nats {
                        url: url.clone(),
                        creds: creds.clone(),
                        store: Some(dir.join(name.as_str())),
                    },
                    _ => log.clone(),
                };
                let connected =
                    connect::open(&args.board, log, name, Missing::Create, "demo", |o| o).await?;
                // The SDK connects in the background; the demo needs the server now.
                connected.reachable(Duration::from_secs(5)).await?;
                let doc = connected
                    .board
                    .doc(args.space.as_str(), args.doc.as_str())?;
                agents.push((name.clone(), doc));
                boards.push(connected);
            }
        }
        Log::Embedded { .. } => {
            let connected = connect::open(
                &args.board,
                log.clone(),
                &names[0],
                Missing::Create,
                "demo",
                |o| o,
            )
            .await?;
            for name in &names {
                let board = connected.board.as_agent(name.as_str())?;
                agents.push((
                    name.clone(),
                    board.doc(args.space.as_str(), args.doc.as_str())?,
                ));
            }
            boards.push(connected);
        }
    }
    let where_ = match &log {
        Log::Nats { url, .. } => url.clone(),
        Log::Embedded { .. } => "the embedded log".to_owned(),
    };
    println!(
        "{} agents editing {}/{} on {where_}, {} rounds each",
        args.agents, args.space, args.doc, args.rounds
    );

    // Agent 0 lays out the document; everyone starts from it, so their text inserts land in
    // one shared text object rather than in competing ones.
    let first = &agents[0].1;
    first
        .change_with_message("set up the board", |tx| {
            tx.put_object(ROOT, "notes", ObjType::Text)?;
            tx.put(ROOT, "edits", ScalarValue::counter(0))?;
            tx.put(ROOT, "status", "new")
        })
        .await?;
    first.flush().await?;
    let base = first.heads();
    for (_, a) in &agents {
        a.wait_for(&base).await?;
    }

    let tasks: Vec<_> = agents
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (_, agent))| {
            let rounds = args.rounds;
            tokio::spawn(async move {
                for r in 0..rounds {
                    let why = format!("agent {i} round {r}");
                    agent
                        .change_with_message(&why, |tx| {
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
    for (_, a) in &agents {
        a.wait_for(&all_heads).await?;
    }

    let doc = agents[0].1.to_json();
    println!("{}", serde_json::to_string_pretty(&doc)?);
    let reference = agents[0].1.heads();
    let mut converged = true;
    for (name, a) in &agents {
        let heads = a.heads();
        let same = heads == reference && a.to_json() == doc;
        converged &= same;
        println!(
            "{:<10} heads {}{}",
            name,
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
    drop(agents);
    for board in boards {
        board.close().await?;
    }
    Ok(())
}

fn short(h: &ChangeHash) -> String {
    h.to_string()[..12].to_owned()
}
