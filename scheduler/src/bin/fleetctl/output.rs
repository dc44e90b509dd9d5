//! Output helpers shared by fleetctl commands: tables, JSON, and error reporting with exit codes.

use std::process::ExitCode;

use serde::Serialize;
use tradefleet::exchange::{ExchangeError, venues};

use crate::Globals;

/// Exit codes scripts can rely on.
pub(crate) mod exit {
    /// Bad input or configuration (fix the command line or config).
    pub const USAGE: u8 = 2;
    /// The exchange, database or Redis refused or failed.
    pub const FAILURE: u8 = 1;
}

/// A fleetctl error: its kind (stable, for scripts), message and exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub kind: String,
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: "usage".into(),
            message: message.into(),
            code: exit::USAGE,
        }
    }
    pub fn failure(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            code: exit::FAILURE,
        }
    }
}

impl From<ExchangeError> for CliError {
    fn from(e: ExchangeError) -> Self {
        let code = match e {
            ExchangeError::Config { .. } | ExchangeError::UnknownSymbol { .. } => exit::USAGE,
            _ => exit::FAILURE,
        };
        Self {
            kind: e.kind().to_string(),
            message: e.to_string(),
            code,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::failure("error", format!("{e:#}"))
    }
}

pub(crate) type CliResult = Result<ExitCode, CliError>;

/// Print `err` (as JSON on stdout with `--json`, else on stderr) and return its exit code.
pub(crate) fn fail(globals: &Globals, err: &CliError) -> ExitCode {
    if globals.json {
        let body = serde_json::json!({"error": {"kind": err.kind, "message": err.message}});
        println!("{body}");
    } else {
        eprintln!("error[{}]: {}", err.kind, err.message);
    }
    ExitCode::from(err.code)
}

/// Print `value` as pretty JSON.
pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure("serialize", e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Print rows as an aligned text table.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// `fleetctl exchanges`.
pub(crate) fn exchanges(globals: &Globals) -> CliResult {
    if globals.json {
        print_json(&venues())?;
    } else {
        let rows: Vec<Vec<String>> = venues()
            .iter()
            .map(|v| {
                vec![
                    v.name.to_string(),
                    v.display_name.to_string(),
                    yes_no(v.has_testnet),
                    yes_no(v.needs_passphrase),
                    if v.trades_in_contracts {
                        "contracts"
                    } else {
                        "base coin"
                    }
                    .to_string(),
                    v.notes.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "NAME",
                "VENUE",
                "TESTNET",
                "PASSPHRASE",
                "QUANTITY",
                "NOTES",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}
