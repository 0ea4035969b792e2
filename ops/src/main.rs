//! `ticketing-ops`: what an operator does by hand. Events their handler rejected wait in
//! `events:dead-letter`; once the cause is fixed they are replayed onto their streams, or
//! dropped.

use anyhow::Context;
use clap::{Parser, Subcommand};
use lib_shared::messaging::dead_letters::{self, Outcome};

#[derive(Parser)]
#[command(name = "ticketing-ops")]
struct Cli {
    /// Redis holding the event streams.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6380")]
    redis_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dead-letter stream.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    /// Every dead letter: entry id, source stream and group, deliveries, error, event.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put events back on the streams they came from, then remove their letters.
    Replay(Selection),
    /// Remove letters for good.
    Drop(Selection),
}

#[derive(clap::Args)]
struct Selection {
    /// Dead-letter entry ids, as `list` shows them.
    entry_ids: Vec<String>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "entry_ids")]
    all: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client =
        redis::Client::open(cli.redis_url.as_str()).context("REDIS_URL is not a Redis URL")?;
    let redis = redis::aio::ConnectionManager::new(client)
        .await
        .context("connecting to Redis")?;
    let Command::DeadLetters(command) = cli.command;
    match command {
        DeadLetters::List { limit } => {
            let letters = dead_letters::list(&redis, "", limit).await?;
            println!("{} dead letter(s)", letters.len());
            for l in letters {
                let (kind, id) = l
                    .event
                    .as_ref()
                    .map_or(("(malformed)", ""), |e| (e[1].as_str(), e[0].as_str()));
                println!(
                    "{}  {kind} {id}\n    from {} (group {}) after {} deliveries: {}",
                    l.entry_id, l.stream, l.group, l.deliveries, l.error
                );
            }
        }
        DeadLetters::Replay(sel) => {
            report(dead_letters::replay(&redis, "", &ids(&redis, sel).await?).await?)
        }
        DeadLetters::Drop(sel) => {
            report(dead_letters::drop(&redis, "", &ids(&redis, sel).await?).await?)
        }
    }
    Ok(())
}

async fn ids(
    redis: &lib_shared::runtime::infra::Redis,
    sel: Selection,
) -> anyhow::Result<Vec<String>> {
    if sel.all {
        return Ok(dead_letters::list(redis, "", usize::MAX)
            .await?
            .into_iter()
            .map(|l| l.entry_id)
            .collect());
    }
    anyhow::ensure!(
        !sel.entry_ids.is_empty(),
        "name dead-letter entry ids, or --all"
    );
    Ok(sel.entry_ids)
}

fn report(outcomes: Vec<(String, Outcome)>) {
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Replayed(new) => println!("{id}: replayed as {new}"),
            Outcome::Dropped => println!("{id}: dropped"),
            Outcome::NotReplayable => println!("{id}: malformed, nothing to replay (drop it)"),
            Outcome::NotFound => println!("{id}: no such dead letter"),
        }
    }
}
