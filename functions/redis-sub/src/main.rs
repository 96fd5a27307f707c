use std::process::ExitCode;

use clap::{Parser, Subcommand};

runtime::use_mimalloc!();

/// redis-sub: stores the cases of the Redis Stream in MongoDB. Without a
/// subcommand it serves (configuration from the environment, see README).
#[derive(Parser)]
#[command(name = "redis-sub", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Append the payload of each dead letter this build can read back to the
    /// case Stream (deleting the dead letter), after a fix. Uses REDIS_URL and
    /// REDIS_KEY_PREFIX; dead letters it still cannot read are kept and listed.
    ReplayDeadLetters {
        /// Look at no more than this many dead letters (oldest first); all by default.
        #[arg(long)]
        limit: Option<usize>,
        /// Only report what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        None => runtime::main::<redis_sub::Function>(),
        Some(Command::ReplayDeadLetters { limit, dry_run }) => {
            replay(limit.unwrap_or(usize::MAX), dry_run)
        }
    }
}

fn replay(limit: usize, dry_run: bool) -> ExitCode {
    use store::config::{REDIS_KEY_PREFIX, REDIS_URL};
    let run = async {
        let env = runtime::Env::new(
            &runtime::config::env_lookup,
            &[&[REDIS_URL, REDIS_KEY_PREFIX]],
        );
        let redis = store::RedisConfig::read(&env)?;
        let keys = redis.keys();
        let mut conn = runtime::redis::connect_lazy(&redis.url)?;
        let r = redis_sub::replay::replay_dead_letters(&mut conn, &keys, limit, dry_run).await?;
        let verb = if dry_run { "would replay" } else { "replayed" };
        println!("{verb} {} dead letters to {}", r.replayed, keys.stream());
        for (id, reason) in &r.still_refused {
            println!("kept {id}: still refused: {reason}");
        }
        if r.without_payload > 0 {
            println!("kept {} dead letters with no payload", r.without_payload);
        }
        anyhow::Ok(())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "replay-dead-letters failed: {e:#}; check REDIS_URL and retry (nothing is lost: a dead letter is deleted only with its re-add)"
            );
            ExitCode::FAILURE
        }
    }
}
