//! `migrations`: applies, rolls back and reports the tradefleet schema on PostgreSQL or SQLite.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Database;
use tradefleet_migrations::{Migrator, ensure_sqlite_parent_dir};

#[derive(Debug, Parser)]
#[command(
    name = "migrations",
    version,
    about = "Apply, roll back or report the tradefleet database schema (PostgreSQL or SQLite)"
)]
struct Cli {
    /// Database to migrate (`postgres://user@host/db` or `sqlite://path?mode=rwc`).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://./data/tradefleet.sqlite?mode=rwc",
        hide_env_values = true
    )]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations (all of them unless --steps is given).
    Up {
        /// Apply at most this many migrations.
        #[arg(long)]
        steps: Option<u32>,
    },
    /// Roll back applied migrations, newest first.
    Down {
        /// How many migrations to roll back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table, then apply all migrations. DESTROYS ALL DATA.
    Fresh,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    ensure_sqlite_parent_dir(&cli.database_url)
        .context("cannot create the directory of the SQLite database")?;
    let db = Database::connect(cli.database_url.as_str())
        .await
        .context("cannot connect to the database (check --database-url / DATABASE_URL)")?;
    match cli.command {
        Command::Up { steps } => {
            let before = Migrator::get_pending_migrations(&db).await?.len();
            Migrator::up(&db, steps).await.context("migrating up")?;
            let after = Migrator::get_pending_migrations(&db).await?.len();
            println!(
                "applied {} migration(s); {after} pending",
                before.saturating_sub(after)
            );
        }
        Command::Down { steps } => {
            let before = Migrator::get_applied_migrations(&db).await?.len();
            Migrator::down(&db, Some(steps))
                .await
                .context("migrating down")?;
            let after = Migrator::get_applied_migrations(&db).await?.len();
            println!(
                "rolled back {} migration(s); {after} applied",
                before.saturating_sub(after)
            );
        }
        Command::Status => {
            for m in Migrator::get_migration_with_status_read_only(&db).await? {
                println!("{:<40} {}", m.name(), m.status());
            }
        }
        Command::Fresh => {
            Migrator::fresh(&db).await.context("fresh")?;
            println!(
                "dropped all tables and applied {} migration(s)",
                Migrator::migrations().len()
            );
        }
    }
    db.close().await.ok();
    Ok(())
}
