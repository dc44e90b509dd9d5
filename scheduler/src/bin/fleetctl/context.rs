//! What the database-backed fleetctl commands share: configuration, the store (schema checked or,
//! with `--migrate`, brought up to date), the vault key ring, and mapping store errors to exits.

use std::io::{BufRead, IsTerminal, Write};

use chrono::{DateTime, Duration, Utc};
use sea_orm_migration::MigratorTrait;
use secrecy::SecretString;
use tradefleet::config::{Config, ConfigSources};
use tradefleet::store::{self, Store, StoreError};
use tradefleet::vault::KeyRing;
use tradefleet_migrations::Migrator;

use crate::Globals;
use crate::output::{CliError, exit};

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let (kind, code) = match &e {
            StoreError::NotFound { .. } => ("not_found", exit::USAGE),
            StoreError::AlreadyExists { .. } => ("already_exists", exit::USAGE),
            StoreError::MissingReference { .. } => ("missing_reference", exit::USAGE),
            StoreError::Invalid { .. } => ("invalid", exit::USAGE),
            _ => ("database", exit::FAILURE),
        };
        Self {
            kind: kind.into(),
            message: e.to_string(),
            code,
        }
    }
}

/// The layered configuration; a bad one is a usage error naming the key.
pub(crate) fn load_config(globals: &Globals) -> Result<Config, CliError> {
    Config::load(&ConfigSources::from_process(globals.config.as_deref()))
        .map_err(|e| CliError::usage(e.to_string()))
}

/// Configuration plus a store whose schema is current.
pub(crate) struct Ctx {
    pub config: Config,
    pub store: Store,
}

impl Ctx {
    /// Loads the configuration, connects, and checks (or with `--migrate` applies) the schema.
    pub async fn open(globals: &Globals) -> Result<Ctx, CliError> {
        let config = load_config(globals)?;
        let store = store::connect_config(&config.database).await?;
        if globals.migrate {
            Migrator::up(store.connection(), None)
                .await
                .map_err(|e| CliError::failure("migration", format!("migrating: {e}")))?;
        } else {
            tradefleet_migrations::check_current(store.connection())
                .await
                .map_err(|e| {
                    CliError::failure("schema", format!("{e}, or pass --migrate to fleetctl"))
                })?;
        }
        Ok(Ctx { config, store })
    }

    /// The vault key ring; commands that touch credentials refuse without one.
    pub fn key_ring(&self) -> Result<KeyRing, CliError> {
        key_ring(&self.config)
    }

    /// The principal named `name`, or a usage error saying how to add it.
    pub async fn principal(
        &self,
        name: &str,
    ) -> Result<tradefleet::store::principal::Model, CliError> {
        self.store
            .principal_by_name(name)
            .await?
            .ok_or_else(|| CliError {
                kind: "not_found".into(),
                message: format!(
                    "principal {name:?} not found (add it with `fleetctl principals add {name}`)"
                ),
                code: exit::USAGE,
            })
    }

    /// Principal names by id, for tables.
    pub async fn principal_names(
        &self,
    ) -> Result<std::collections::BTreeMap<i64, String>, CliError> {
        Ok(self
            .store
            .list_principals()
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect())
    }
}

pub(crate) fn key_ring(config: &Config) -> Result<KeyRing, CliError> {
    KeyRing::from_config(&config.vault).map_err(|e| CliError {
        kind: "vault".into(),
        message: e.to_string(),
        code: exit::USAGE,
    })
}

/// Parses `30s`, `15m`, `24h`, `7d` or `2w` (a whole number and one unit).
pub(crate) fn parse_duration(flag: &str, s: &str) -> Result<Duration, CliError> {
    let bad = || {
        CliError::usage(format!(
            "{flag}: {s:?} is not a duration (a whole number and a unit s, m, h, d or w, e.g. 24h)"
        ))
    };
    let s_trim = s.trim();
    let unit_at = s_trim.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s_trim.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(604_800),
        _ => None,
    }
    .ok_or_else(bad)?;
    Duration::try_seconds(secs).ok_or_else(bad)
}

/// An instant given as RFC 3339 or as a duration back from `now` (`24h` = a day ago).
pub(crate) fn parse_since(
    flag: &str,
    s: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = parse_duration(flag, s).map_err(|_| {
        CliError::usage(format!(
            "{flag}: {s:?} is neither RFC 3339 nor a duration like 24h or 7d"
        ))
    })?;
    now.checked_sub_signed(d)
        .ok_or_else(|| CliError::usage(format!("{flag}: {s:?} is too far back")))
}

/// Reads one secret line: from stdin when it is not a terminal (one value per line), else from
/// a prompt on the terminal with echo turned off. The value never reaches argv or logs.
pub(crate) struct SecretInput {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl SecretInput {
    pub fn new() -> Self {
        let stdin = std::io::stdin();
        let lines = (!stdin.is_terminal()).then(|| stdin.lock().lines());
        Self { lines }
    }

    /// The next value; `what` names it in prompts and errors ("API secret").
    pub fn read(&mut self, what: &str) -> Result<SecretString, CliError> {
        let text = match &mut self.lines {
            Some(lines) => match lines.next() {
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    return Err(CliError::usage(format!(
                        "cannot read the {what} from stdin: {e}"
                    )));
                }
                None => {
                    return Err(CliError::usage(format!(
                        "the {what} is missing: give it on stdin, one value per line"
                    )));
                }
            },
            None => prompt_hidden(what)?,
        };
        let value = text.trim_end_matches(['\r', '\n']).trim().to_string();
        if value.is_empty() {
            return Err(CliError::usage(format!("the {what} is empty")));
        }
        Ok(SecretString::from(value))
    }
}

/// Prompts on stderr and reads a line from the terminal with echo off (`stty -echo`).
fn prompt_hidden(what: &str) -> Result<String, CliError> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprint!("{what}: ");
    std::io::stderr().flush().ok();
    let hidden = stty("-echo");
    if !hidden {
        eprint!("(warning: cannot turn off echo; the {what} will be visible) ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read.map_err(|e| CliError::usage(format!("cannot read the {what}: {e}")))?;
    Ok(line)
}
