//! `fleetctl principals`: the fleet's users, who own credentials and subscriptions.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;

use crate::Globals;
use crate::context::Ctx;
use crate::output::{CliResult, print_json, print_table};

#[derive(Debug, Subcommand)]
pub(crate) enum PrincipalsCmd {
    /// Create a principal.
    Add {
        /// Unique name (1-128 characters).
        name: String,
    },
    /// List principals.
    List,
}

pub(crate) async fn run(globals: &Globals, cmd: PrincipalsCmd) -> CliResult {
    let ctx = Ctx::open(globals).await?;
    match cmd {
        PrincipalsCmd::Add { name } => {
            let p = ctx.store.create_principal(&name, Utc::now()).await?;
            if globals.json {
                print_json(&p)?;
            } else {
                println!("added principal {} (id {})", p.name, p.id);
            }
        }
        PrincipalsCmd::List => {
            let all = ctx.store.list_principals().await?;
            if globals.json {
                print_json(&all)?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|p| vec![p.id.to_string(), p.name.clone(), p.created_at.to_rfc3339()])
                    .collect();
                print_table(&["ID", "NAME", "CREATED"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
