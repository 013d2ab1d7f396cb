//! The `crm-replay` binary: the analysts' and auditors' tool, on the same store URL as
//! `crm-api serve`. Every subcommand takes `--store` (default: the embedded store under
//! `--data-dir`) and `--json`; long work shows progress on a terminal and ends with a one-line
//! summary. Exit codes: 0 done, 1 the check failed (a broken chain, an invalid import line),
//! 2 the command could not run (bad arguments, an unreachable store).

mod analytics;
mod audit_heads;
mod erase;
mod export;
mod import;
mod keyfile;
mod migrate;
mod outfile;
mod output;
mod progress;
mod rebuild;
mod retention;
mod snapshot;
mod stats;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::output::outln;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_core::envelope::{Position, StreamId, TenantId};
use crm_core::store::{Scope, SharedStore, StoreUrl, open_store, open_store_read_only, verify_log};

/// mimalloc instead of the system allocator: decoding, folding and serialising events
/// allocate many small, short-lived values, which glibc's allocator serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-replay",
    version,
    about = "Event-sourced CRM core: replay and audit tool"
)]
struct Cli {
    /// Directory of the embedded store (as used by `crm-api serve`).
    #[arg(long, global = true, env = "CRM_DATA_DIR", default_value = "crm-data")]
    data_dir: PathBuf,
    /// Store URL (`sqlite://PATH` or `postgres://...`); defaults to `<data-dir>/events.db`.
    #[arg(long, global = true, env = "CRM_STORE")]
    store: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// The master-key file (default for SQLite: `master.key` beside the store).
    /// `CRM_MASTER_KEY` (the key itself) takes precedence. Only commands that read or write
    /// personal fields need it.
    #[arg(long, global = true, env = "CRM_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every hash chain; exit 0 when intact, 1 naming the first broken event.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this stream (needs --tenant).
        #[arg(long, requires = "tenant")]
        stream: Option<String>,
    },
    /// Rebuild read models from position 0, blue/green: safe while crm-api serves.
    Rebuild {
        /// The projection to rebuild (customer_360, pipeline, service_backlog,
        /// customer_timeline).
        projection: Option<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "projection")]
        all: bool,
    },
    /// Write every read model as it stood at a past moment into a new SQLite file.
    ///
    /// Give exactly one cut. `--as-of` is business time, `--known-at` recording time, as the
    /// API's `as_of` and `known_at` query parameters. Changed: `--as-of` used to cut by
    /// recording time; that cut is now `--known-at`.
    #[command(group(clap::ArgGroup::new("cut").required(true).multiple(false)))]
    Snapshot {
        /// What had happened by this time (RFC 3339; business time, the events'
        /// `occurred_at`), including events recorded later with an earlier `occurred_at`.
        #[arg(long, group = "cut")]
        as_of: Option<String>,
        /// What the CRM had recorded by this time (RFC 3339; recording time, the events'
        /// `recorded_at`). Before this flag existed, `--as-of` made this cut.
        #[arg(long, group = "cut")]
        known_at: Option<String>,
        /// Everything up to and including this log position.
        #[arg(long, group = "cut")]
        position: Option<Position>,
        /// The SQLite file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// A customer's timeline for auditors: every event with its envelope, data and chain
    /// status.
    Timeline {
        /// The customer's id (as in `customer_id`, e.g. c-42).
        customer: String,
        /// The tenant the customer belongs to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Only events that occurred by this time (RFC 3339; business time, `occurred_at`).
        #[arg(long)]
        as_of: Option<String>,
        /// Only events recorded by this time (RFC 3339; recording time, `recorded_at`).
        #[arg(long)]
        known_at: Option<String>,
    },
    /// The log as JSON Lines (one event per line, full envelope), in position order.
    Export {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Events after this position.
        #[arg(long)]
        from: Option<Position>,
        /// Events up to and including this position.
        #[arg(long)]
        to: Option<Position>,
        /// Only these event types (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Write here instead of stdout (created with mode 0600). An existing file is refused
        /// unless --force; a symbolic link or the store's own files always are.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite the --out file if it exists.
        #[arg(long, requires = "out")]
        force: bool,
        /// Write personal fields in plain text (erased subjects' as "[erased]"), for people
        /// to read; needs the master key. Without it the stored form is written (personal
        /// fields sealed), which `import` restores.
        #[arg(long)]
        decrypt: bool,
        /// Also write the tenants' wrapped data keys and links to this file (mode 0600), for
        /// `import --keys-in`.
        #[arg(long)]
        keys_out: Option<PathBuf>,
    },
    /// Append JSON Lines events (the export format, or the API's ingest format with
    /// --tenant) in batches; idempotent, so an interrupted import can be run again.
    Import {
        /// A file, or `-` for stdin.
        file: String,
        /// The tenant of lines in the ingest format (export lines carry their own).
        #[arg(long)]
        tenant: Option<String>,
        /// Events per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Restore the wrapped data keys written by `export --keys-out` first.
        #[arg(long)]
        keys_in: Option<PathBuf>,
    },
    /// Erase a customer (or with --lead, a lead never converted): destroy its data keys and
    /// append the erasure event in one transaction, then scrub the database files.
    Erase {
        /// The customer id (or the lead id with --lead).
        id: String,
        /// The id is a lead's.
        #[arg(long)]
        lead: bool,
        /// The tenant the customer or lead belongs to.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Destroy every data key of a departing tenant: its log stays verifiable, its personal
    /// fields unreadable for good.
    EraseTenant {
        /// The departing tenant's id.
        tenant: String,
    },
    /// Re-wrap every data key under a new master key (the log is not touched); the new key
    /// is read from --new-key-file (created with a fresh key when it does not exist).
    RotateMaster {
        /// The new master key's file (created with a fresh key, mode 0600, when missing).
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// Copy a store written before personal fields were encrypted at rest (plain text, which
    /// `crm-api serve` refuses) into a new, empty store with them encrypted: new chains, the
    /// old store's verification result recorded in the new one. Run again after a kill, it
    /// continues.
    MigrateEncrypt {
        /// The old store's URL (`sqlite://PATH` or `postgres://...`).
        #[arg(long)]
        from: String,
        /// The new store's URL; it must be empty. Its master key follows the usual rules
        /// (`CRM_MASTER_KEY`, `--master-key-file`, else `master.key` beside a SQLite store,
        /// created when missing).
        #[arg(long)]
        to: String,
        /// Events per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// Apply the tenant's retention rule now (set with `PUT /v1/privacy/retention`): erase
    /// customers and leads never converted with no event for the rule's years.
    Retention {
        /// The tenant whose rule is applied.
        #[arg(long)]
        tenant: String,
        /// List who is due (entity ids) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Signed tree heads for auditors: the public key, a head signed now, the log checked
    /// against heads kept elsewhere, a proof checked against a head.
    Audit {
        /// The head-signing key's file (default for SQLite: `signing.key` beside the store).
        /// `CRM_SIGNING_KEY` (the key itself) takes precedence. Never created here.
        #[arg(long, global = true, env = "CRM_SIGNING_KEY_FILE")]
        signing_key_file: Option<PathBuf>,
        #[command(subcommand)]
        command: audit_heads::AuditCommand,
    },
    /// Customer analytics from the log as of a business time: RFM segments, lifetime value
    /// with churn risk (BG/NBD + Gamma-Gamma), profitability, cohorts, lifecycle stages and
    /// the sales funnel. Needs the master key, as `timeline`.
    Analytics {
        #[command(subcommand)]
        command: analytics::AnalyticsCommand,
    },
    /// Events, streams, types, positions, the store's size and projection positions.
    Stats {
        /// Only this tenant's events, streams and types.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// What every subcommand gets.
#[derive(Debug)]
pub struct Ctx {
    pub url: StoreUrl,
    /// The log as the command reads it: personal fields opened when the command opened the
    /// vault, as stored otherwise.
    pub store: SharedStore,
    /// The log as stored (verification, stored-form exports).
    pub raw: SharedStore,
    /// The sealing store, for commands that opened the vault.
    pub private: Option<crm_core::privacy::PrivateStore>,
    pub json: bool,
}

impl Ctx {
    /// The log as the projection runner reads it: only the personal fields the read models
    /// fold are opened (see `crm_projections::PERSONAL_FIELDS_READ`).
    pub fn projection_store(&self) -> SharedStore {
        match &self.private {
            Some(private) => Arc::new(
                private
                    .clone()
                    .opening_only(crm_projections::PERSONAL_FIELDS_READ),
            ),
            None => self.store.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    crm_core::telemetry::init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("crm-replay: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // It names its two stores itself.
    if let Command::MigrateEncrypt { from, to, batch } = cli.command {
        return migrate::run(migrate::Args {
            from,
            to,
            batch,
            master_key_file: cli.master_key_file,
            json: cli.json,
        })
        .await;
    }
    // A proof is checked against a head alone: no store is opened.
    if let Command::Audit {
        command:
            audit_heads::AuditCommand::CheckProof {
                proof,
                head,
                public_key,
                from_head,
            },
        ..
    } = &cli.command
    {
        return audit_heads::check_proof(proof, head, public_key, from_head.as_deref(), cli.json);
    }
    let url =
        StoreUrl::resolve(cli.store.as_deref(), &cli.data_dir).context("--store / CRM_STORE")?;
    // The public key needs the store's URL only to find the default key file.
    if let Command::Audit {
        signing_key_file,
        command: audit_heads::AuditCommand::PublicKey,
    } = &cli.command
    {
        return audit_heads::public_key(&url, signing_key_file.clone(), cli.json);
    }
    // Only an import may create the store; the tools that only read open it read-only.
    let creates = matches!(cli.command, Command::Import { .. });
    let reads_only = matches!(
        cli.command,
        Command::Verify { .. }
            | Command::Stats { .. }
            | Command::Timeline { .. }
            | Command::Export { .. }
            | Command::Audit { .. }
            | Command::Analytics { .. }
    );
    if let StoreUrl::Sqlite { path, .. } = &url
        && !path.exists()
        && !creates
    {
        anyhow::bail!(
            "not a CRM store: no file at {} (start crm-api serve first, or pass --store)",
            path.display()
        );
    }
    let store = if reads_only {
        open_store_read_only(&url).await
    } else {
        open_store(&url).await
    }
    .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
    // Only commands that read or write personal fields open the vault (and need the key).
    let private = match &cli.command {
        Command::Verify { .. } | Command::Stats { .. } | Command::Audit { .. } => None,
        Command::Export { decrypt, .. } if !decrypt => None,
        _ => {
            let source = crm_core::privacy::KeySource {
                value: std::env::var(crm_core::privacy::MASTER_KEY_ENV).ok(),
                file: cli.master_key_file.clone(),
            };
            let opened = crm_core::privacy::open_private_on(store.clone(), &url, &source, creates)
                .await
                .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
            if let Some(path) = &opened.created_key_file {
                eprintln!(
                    "crm-replay: a new master key was written to {} (mode 0600); back it up \
                     apart from the store: without it the personal data is lost",
                    path.display()
                );
            }
            Some(if creates {
                opened.store.accepting_sealed()
            } else {
                opened.store
            })
        }
    };
    let ctx = Ctx {
        url,
        store: match &private {
            Some(private) => Arc::new(private.clone()),
            None => store.clone(),
        },
        raw: store,
        private,
        json: cli.json,
    };
    match cli.command {
        Command::Verify { tenant, stream } => verify_command(&ctx, tenant, stream).await,
        Command::Rebuild { projection, all } => rebuild::run(&ctx, projection, all).await,
        Command::Snapshot {
            as_of,
            known_at,
            position,
            out,
        } => {
            let cut = snapshot::CutArgs {
                as_of,
                known_at,
                position,
            };
            snapshot::run(&ctx, cut, &out).await
        }
        Command::Timeline {
            customer,
            tenant,
            as_of,
            known_at,
        } => timeline::run(&ctx, &tenant, &customer, as_of, known_at).await,
        Command::Export {
            tenant,
            from,
            to,
            types,
            out,
            force,
            decrypt: _,
            keys_out,
        } => {
            if let Some(path) = &keys_out {
                keyfile::write(&ctx, tenant.as_deref(), path).await?;
            }
            export::run(&ctx, tenant, from, to, types, out, force).await
        }
        Command::Import {
            file,
            tenant,
            batch,
            keys_in,
        } => {
            if let Some(path) = &keys_in {
                keyfile::read(&ctx, path).await?;
            }
            import::run(&ctx, &file, tenant, batch).await
        }
        Command::Erase { id, lead, tenant } => erase::run(&ctx, &tenant, &id, lead).await,
        Command::EraseTenant { tenant } => erase::tenant(&ctx, &tenant).await,
        Command::RotateMaster { new_key_file } => erase::rotate(&ctx, &new_key_file).await,
        Command::Retention { tenant, dry_run } => retention::run(&ctx, &tenant, dry_run).await,
        Command::MigrateEncrypt { .. } => anyhow::bail!("migrate-encrypt opens its own stores"),
        Command::Stats { tenant } => stats::run(&ctx, tenant).await,
        Command::Analytics { command } => analytics::run(&ctx, command)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Audit {
            signing_key_file,
            command,
        } => match command {
            audit_heads::AuditCommand::Head { tenant, out, force } => {
                audit_heads::head(&ctx, signing_key_file, &tenant, out, force).await
            }
            audit_heads::AuditCommand::Verify {
                tenant,
                heads,
                public_key,
            } => {
                audit_heads::verify(
                    &ctx,
                    signing_key_file,
                    &tenant,
                    &heads,
                    public_key.as_deref(),
                )
                .await
            }
            audit_heads::AuditCommand::PublicKey | audit_heads::AuditCommand::CheckProof { .. } => {
                anyhow::bail!("audit public-key and check-proof open no store")
            }
        },
    }
}

async fn verify_command(
    ctx: &Ctx,
    tenant: Option<String>,
    stream: Option<String>,
) -> Result<ExitCode> {
    let tenant = tenant.map(|t| TenantId::parse(&t)).transpose()?;
    let stream = stream.map(|s| StreamId::parse(&s)).transpose()?;
    let scope = tenant.map_or(Scope::AllTenants, Scope::Tenant);
    let report = verify_log(ctx.raw.as_ref(), &scope, stream.as_ref()).await?;
    if let (Some(stream), Scope::Tenant(tenant)) = (&stream, &scope)
        && report.streams_checked == 0
    {
        anyhow::bail!("no stream {stream} in tenant {tenant}: nothing to verify");
    }
    if ctx.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else if let Some(failure) = &report.first_failure {
        outln!("BROKEN: {failure}");
    } else {
        outln!(
            "intact: {} events in {} streams verify",
            report.events_checked,
            report.streams_checked
        );
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument and option of every subcommand (at any depth) without a help text,
    /// as `command path: argument`.
    fn blank_help(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let blank = arg
                .get_help()
                .is_none_or(|help| help.to_string().trim().is_empty());
            if blank {
                out.push(format!("{path}: {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            if sub
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
            {
                out.push(format!("{path} {}: (no about)", sub.get_name()));
            }
            blank_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_subcommand_argument_and_option_has_a_help_text() {
        let mut command = Cli::command();
        command.build();
        let mut blank = Vec::new();
        blank_help(&command, "crm-replay", &mut blank);
        assert!(blank.is_empty(), "without help: {blank:#?}");
        // The walk reached the nested arguments (it cannot pass by finding nothing).
        let timeline = command.find_subcommand("timeline").expect("timeline");
        assert!(
            timeline
                .get_arguments()
                .any(|a| a.get_id() == "customer" && a.get_help().is_some())
        );
    }

    #[test]
    fn snapshot_help_tells_the_two_time_cuts_apart() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("snapshot")
            .expect("snapshot")
            .render_long_help()
            .to_string();
        assert!(help.contains("--known-at"), "{help}");
        assert!(help.contains("business time"), "{help}");
        assert!(help.contains("used to cut by"), "{help}");
    }
}
