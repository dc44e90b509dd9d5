//! `fleetctl credentials` and `fleetctl vault`: exchange API keys sealed by the vault. Secrets are
//! read from stdin or a hidden prompt (never argv), shown masked, and re-sealed on key rotation.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde::Serialize;
use tradefleet::clock::SystemClock;
use tradefleet::exchange::{Credentials, VenueDescriptor, VenueParams, build_exchange, find_venue};
use tradefleet::store::{
    CredentialKey, CredentialRowSource, exchange_credential, open_credentials, seal_credentials,
};
use tradefleet::vault::{KeyRing, RotationOptions, generate_key_string, rotate_to_newest};

use crate::Globals;
use crate::context::{Ctx, SecretInput};
use crate::output::{CliError, CliResult, exit, print_json, print_table};

const DEFAULT_LABEL: &str = "default";

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCmd {
    /// Store a principal's API key for one exchange. The secret (then the passphrase, on venues
    /// that need one) is read from stdin, one per line, or from a hidden prompt.
    Add {
        #[command(flatten)]
        account: Account,
        /// The API key (public part). When absent it is read first, like the secret.
        #[arg(long)]
        api_key: Option<ApiKeyArg>,
    },
    /// List stored credentials with masked API keys.
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Check stored credentials against the exchange: connectivity, account, positions.
    Verify {
        #[command(flatten)]
        account: Account,
        /// Override the venue's base URL (proxy, mock).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Delete stored credentials.
    Remove {
        #[command(flatten)]
        account: Account,
    },
    /// Re-seal every stored credential under the newest vault key (resumable; safe while workers
    /// run; rerun until it reports nothing left, then retire the old key).
    Rotate {
        /// Rows read per batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Resume after this credential id (the last id of an interrupted run).
        #[arg(long)]
        start_after: Option<i64>,
    },
}

/// `--api-key`: kept out of `Debug` like every other credential.
#[derive(Clone)]
pub(crate) struct ApiKeyArg(String);

impl std::str::FromStr for ApiKeyArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl std::fmt::Debug for ApiKeyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Which stored account.
#[derive(Debug, Args)]
pub(crate) struct Account {
    #[arg(long)]
    principal: String,
    /// Venue: binance, bybit, okx, bitget, htx, kraken or paper.
    #[arg(long)]
    exchange: String,
    /// The venue's testnet / demo account.
    #[arg(long)]
    testnet: bool,
    /// Tells several accounts of one principal on one venue apart.
    #[arg(long, default_value = DEFAULT_LABEL)]
    label: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCmd {
    /// Print a new `id:base64key` master key; append it (last) to TRADEFLEET__VAULT__KEYS.
    GenKey {
        /// Key id (default `k` and the UTC time, e.g. k20261121T0630).
        #[arg(long)]
        id: Option<String>,
    },
}

/// The first 4 characters and an ellipsis; short keys show nothing.
pub(crate) fn mask(key: &str) -> String {
    if key.chars().count() >= 8 {
        format!("{}…", key.chars().take(4).collect::<String>())
    } else {
        "…".to_string()
    }
}

/// Loads and opens the stored credentials of `principal` on `venue`.
pub(crate) async fn load(
    ctx: &Ctx,
    ring: &KeyRing,
    principal: &str,
    venue: &VenueDescriptor,
    testnet: bool,
    label: &str,
) -> Result<Credentials, CliError> {
    let p = ctx.principal(principal).await?;
    let key = CredentialKey {
        principal_id: p.id,
        exchange: venue.name.to_string(),
        testnet,
        label: label.to_string(),
    };
    let row = ctx.store.credential(&key).await?.ok_or_else(|| CliError {
        kind: "not_found".into(),
        message: format!(
            "no {}{} credentials labelled {label:?} for principal {principal:?} \
             (add them with `fleetctl credentials add`)",
            venue.name,
            if testnet { " testnet" } else { "" },
        ),
        code: exit::USAGE,
    })?;
    open_credentials(ring, &row).map_err(|e| {
        CliError::failure(
            "vault",
            format!("credential {} of principal {principal:?}: {e}", row.id),
        )
    })
}

#[derive(Serialize)]
struct CredentialOut {
    id: i64,
    principal: String,
    exchange: String,
    testnet: bool,
    label: String,
    api_key: String,
    key_id: String,
    has_passphrase: bool,
    created_at: String,
    rotated_at: Option<String>,
}

fn describe(ring: &KeyRing, principal: &str, row: &exchange_credential::Model) -> CredentialOut {
    let api_key = match open_credentials(ring, row) {
        Ok(c) => mask(c.api_key.expose_secret()),
        Err(_) => "<cannot open>".to_string(),
    };
    CredentialOut {
        id: row.id,
        principal: principal.to_string(),
        exchange: row.exchange.clone(),
        testnet: row.testnet,
        label: row.label.clone(),
        api_key,
        key_id: row.api_key_key_id.clone(),
        has_passphrase: row.passphrase_ciphertext.is_some(),
        created_at: row.created_at.to_rfc3339(),
        rotated_at: row.rotated_at.map(|t| t.to_rfc3339()),
    }
}

fn account_text(a: &Account, venue: &VenueDescriptor) -> String {
    format!(
        "{}{}/{} of {}",
        venue.name,
        if a.testnet { " (testnet)" } else { "" },
        a.label,
        a.principal
    )
}

fn venue_for(a: &Account) -> Result<&'static VenueDescriptor, CliError> {
    let venue = find_venue(&a.exchange)?;
    if a.testnet && !venue.has_testnet {
        return Err(CliError::usage(format!(
            "--testnet: {} has no testnet/demo environment",
            venue.name
        )));
    }
    Ok(venue)
}

pub(crate) async fn run(globals: &Globals, cmd: CredentialsCmd) -> CliResult {
    match cmd {
        CredentialsCmd::Add { account, api_key } => add(globals, account, api_key).await,
        CredentialsCmd::List { principal } => list(globals, principal).await,
        CredentialsCmd::Verify { account, base_url } => verify(globals, account, base_url).await,
        CredentialsCmd::Remove { account } => remove(globals, account).await,
        CredentialsCmd::Rotate { batch, start_after } => rotate(globals, batch, start_after).await,
    }
}

async fn add(globals: &Globals, a: Account, api_key: Option<ApiKeyArg>) -> CliResult {
    let venue = venue_for(&a)?;
    let ctx = Ctx::open(globals).await?;
    let ring = ctx.key_ring()?;
    let principal = ctx.principal(&a.principal).await?;
    let mut input = SecretInput::new();
    let api_key = match api_key.map(|k| k.0) {
        Some(k) if !k.trim().is_empty() => secrecy::SecretString::from(k.trim().to_string()),
        Some(_) => return Err(CliError::usage("--api-key is empty")),
        None => input.read("API key")?,
    };
    let api_secret = input.read("API secret")?;
    let passphrase = if venue.needs_passphrase {
        Some(input.read("API passphrase")?)
    } else {
        None
    };
    let credentials = Credentials {
        api_key,
        api_secret,
        passphrase,
    };
    let sealed = seal_credentials(&ring, principal.id, venue.name, &credentials)
        .map_err(|e| CliError::failure("vault", e.to_string()))?;
    let key = CredentialKey {
        principal_id: principal.id,
        exchange: venue.name.to_string(),
        testnet: a.testnet,
        label: a.label.clone(),
    };
    let row = ctx
        .store
        .insert_credential(&key, &sealed, Utc::now())
        .await
        .map_err(|e| match e {
            tradefleet::store::StoreError::AlreadyExists { .. } => CliError {
                kind: "already_exists".into(),
                message: format!(
                    "credentials {} already exist (remove them first, or use another --label)",
                    account_text(&a, venue)
                ),
                code: exit::USAGE,
            },
            other => other.into(),
        })?;
    let out = describe(&ring, &principal.name, &row);
    if globals.json {
        print_json(&out)?;
    } else {
        println!(
            "stored credentials {} (id {}, API key {}, sealed with vault key {})",
            account_text(&a, venue),
            out.id,
            out.api_key,
            out.key_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(globals: &Globals, principal: Option<String>) -> CliResult {
    let ctx = Ctx::open(globals).await?;
    let ring = ctx.key_ring()?;
    let principals = match principal {
        Some(name) => vec![ctx.principal(&name).await?],
        None => ctx.store.list_principals().await?,
    };
    let mut out = Vec::new();
    for p in &principals {
        for row in ctx.store.list_credentials(p.id).await? {
            out.push(describe(&ring, &p.name, &row));
        }
    }
    if globals.json {
        print_json(&out)?;
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|c| {
                vec![
                    c.id.to_string(),
                    c.principal.clone(),
                    c.exchange.clone(),
                    if c.testnet { "yes" } else { "no" }.into(),
                    c.label.clone(),
                    c.api_key.clone(),
                    c.key_id.clone(),
                    c.rotated_at.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print_table(
            &[
                "ID",
                "PRINCIPAL",
                "EXCHANGE",
                "TESTNET",
                "LABEL",
                "API_KEY",
                "VAULT_KEY",
                "ROTATED",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(globals: &Globals, a: Account, base_url: Option<String>) -> CliResult {
    let venue = venue_for(&a)?;
    let ctx = Ctx::open(globals).await?;
    let ring = ctx.key_ring()?;
    let credentials = load(&ctx, &ring, &a.principal, venue, a.testnet, &a.label).await?;
    let params = VenueParams {
        testnet: a.testnet,
        base_url,
        credentials: Some(credentials),
        http: ctx.config.exchange.http.clone(),
        paper: ctx.config.paper.clone(),
        clock: Arc::new(SystemClock),
    };
    let exchange = build_exchange(venue.name, &params)?;
    crate::exchange_cmd::check_report(globals, exchange.as_ref()).await
}

async fn remove(globals: &Globals, a: Account) -> CliResult {
    let venue = venue_for(&a)?;
    let ctx = Ctx::open(globals).await?;
    let p = ctx.principal(&a.principal).await?;
    let key = CredentialKey {
        principal_id: p.id,
        exchange: venue.name.to_string(),
        testnet: a.testnet,
        label: a.label.clone(),
    };
    let Some(row) = ctx.store.credential(&key).await? else {
        return Err(CliError {
            kind: "not_found".into(),
            message: format!("no credentials {}", account_text(&a, venue)),
            code: exit::USAGE,
        });
    };
    ctx.store.delete_credential(row.id).await?;
    if globals.json {
        print_json(&serde_json::json!({ "removed": row.id }))?;
    } else {
        println!(
            "removed credentials {} (id {})",
            account_text(&a, venue),
            row.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct RotateOut {
    newest_key: String,
    scanned: u64,
    resealed: u64,
    already_current: u64,
    conflicts: u64,
    failures: Vec<serde_json::Value>,
    last_id: Option<i64>,
}

async fn rotate(globals: &Globals, batch: u32, start_after: Option<i64>) -> CliResult {
    if batch == 0 {
        return Err(CliError::usage("--batch must be at least 1"));
    }
    let ctx = Ctx::open(globals).await?;
    let ring = ctx.key_ring()?;
    let source = CredentialRowSource::new(ctx.store.clone(), Arc::new(SystemClock));
    let options = RotationOptions {
        batch_size: batch,
        start_after,
    };
    let report = rotate_to_newest(&ring, &source, options)
        .await
        .map_err(|e| {
            CliError::failure(
                "rotation",
                format!(
                    "{e}; {} re-sealed so far; resume with --start-after {}",
                    e.progress.resealed,
                    e.progress
                        .last_id
                        .map_or_else(|| "(none)".to_string(), |i| i.to_string())
                ),
            )
        })?;
    let out = RotateOut {
        newest_key: ring.newest_key_id().to_string(),
        scanned: report.scanned,
        resealed: report.resealed,
        already_current: report.already_current,
        conflicts: report.conflicts,
        failures: report
            .failures
            .iter()
            .map(|f| serde_json::json!({ "id": f.id, "error": f.error.to_string() }))
            .collect(),
        last_id: report.last_id,
    };
    if globals.json {
        print_json(&out)?;
    } else {
        print_table(
            &[
                "NEWEST_KEY",
                "SCANNED",
                "RESEALED",
                "ALREADY_CURRENT",
                "CONFLICTS",
                "FAILURES",
            ],
            &[vec![
                out.newest_key.clone(),
                out.scanned.to_string(),
                out.resealed.to_string(),
                out.already_current.to_string(),
                out.conflicts.to_string(),
                out.failures.len().to_string(),
            ]],
        );
        for f in &report.failures {
            eprintln!("credential {}: {}", f.id, f.error);
        }
    }
    if !report.failures.is_empty() {
        return Err(CliError::failure(
            "rotation",
            format!(
                "{} credential(s) could not be opened and stay on their old key",
                report.failures.len()
            ),
        ));
    }
    if report.conflicts > 0 {
        return Err(CliError::failure(
            "rotation",
            format!(
                "{} credential(s) changed while rotating; run `fleetctl credentials rotate` again",
                report.conflicts
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn vault(globals: &Globals, cmd: VaultCmd) -> CliResult {
    match cmd {
        VaultCmd::GenKey { id } => {
            let id = id.unwrap_or_else(|| format!("k{}", Utc::now().format("%Y%m%dT%H%M%S")));
            let key = generate_key_string(&id).map_err(|e| CliError::usage(e.to_string()))?;
            if globals.json {
                print_json(&serde_json::json!({ "key": key.expose_secret() }))?;
            } else {
                println!("{}", key.expose_secret());
                eprintln!(
                    "append it (last, comma-separated) to TRADEFLEET__VAULT__KEYS or the keys file, \
                     roll it out, then run `fleetctl credentials rotate`"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
