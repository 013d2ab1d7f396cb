//! `crm-replay audit`: signed tree heads for auditors (issue 16).
//!
//! - `public-key`: the head-signing key's public half (key id, base64, PEM), never making a
//!   key up;
//! - `head --tenant T`: the tenant's tree recomputed from the raw log (every leaf from the
//!   stored bytes), signed now; refused on a broken hash chain;
//! - `verify --tenant T --head PATH…`: the log checked against heads kept elsewhere
//!   (`crm_projections::audit::check_heads`) and its hash chains checked, every finding named;
//! - `check-proof --proof F --head H`: an inclusion or consistency proof checked against a
//!   signed head, with no store at all.
//!
//! Exit codes as everywhere: 0 intact, 1 a check failed (named), 2 could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Subcommand;
use crm_core::audit::{
    PublicKey, SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, SignedHead, SigningKeySource,
};
use crm_core::envelope::TenantId;
use crm_core::merkle::{
    Frontier, Hash, leaf_data, leaf_hash, verify_consistency, verify_inclusion,
};
use crm_core::store::{Scope, SharedStore, StoreUrl, verify_log};
use crm_projections::ReadDb;
use crm_projections::audit::{ConsistencyProof, HeadCheck, InclusionProof, check_heads};
use serde_json::json;

use crate::Ctx;
use crate::output::outln;

/// Events read per `read_all` call while recomputing a tree.
const READ_BATCH: usize = 5_000;

/// The tables the tree worker keeps; all three let `verify` name the exact event.
const TREE_TABLES: [&str; 3] = ["crm_audit_trees", "crm_audit_nodes", "crm_audit_leaves"];

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the head-signing key's public half: key id, base64 and PEM (never creates a
    /// key).
    PublicKey,
    /// Recompute a tenant's Merkle tree from the stored events and print (or write) a head
    /// signed with the head-signing key.
    Head {
        /// The tenant whose tree is signed.
        #[arg(long)]
        tenant: String,
        /// Write the head here (created with mode 0600) instead of stdout. An existing file
        /// is refused unless --force.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite the --out file if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Check the log against signed heads kept elsewhere, and its hash chains; exit 0 when
    /// the log extends every head, 1 naming every finding (the first event or size that
    /// differs first).
    Verify {
        /// The tenant whose log is checked.
        #[arg(long)]
        tenant: String,
        /// A head's JSON file, or a directory of them (every *.json below it holding a head
        /// of this tenant, e.g. what `serve --publish-heads DIR` writes). Repeatable.
        #[arg(long = "head", required = true)]
        heads: Vec<PathBuf>,
        /// The public key the heads were signed with: a file or the key itself (PEM, base64,
        /// hex, or the JSON of `audit public-key --json`). Without it, the local signing key's
        /// public half is used.
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
    },
    /// Check an inclusion or consistency proof (the JSON of `GET /v1/audit/inclusion` or
    /// `GET /v1/audit/consistency`) against a signed head; needs no store.
    CheckProof {
        /// The proof's JSON file.
        #[arg(long)]
        proof: PathBuf,
        /// The signed head's JSON file the proof must lead to.
        #[arg(long)]
        head: PathBuf,
        /// The public key the head was signed with: a file or the key itself (PEM, base64,
        /// hex, or the JSON of `audit public-key --json`).
        #[arg(long, allow_hyphen_values = true)]
        public_key: String,
        /// For a consistency proof: the earlier signed head you hold (tree size `from`); its
        /// signature, size and root must match the proof's `from` side.
        #[arg(long)]
        from_head: Option<PathBuf>,
    },
}

/// Where the head-signing key comes from: `CRM_SIGNING_KEY`, else `--signing-key-file` /
/// `CRM_SIGNING_KEY_FILE`, else for SQLite `signing.key` beside the store.
fn signing_source(file: Option<PathBuf>) -> SigningKeySource {
    SigningKeySource {
        value: std::env::var(SIGNING_KEY_ENV).ok(),
        file,
    }
}

/// The signing key, never created here.
fn signer(source: &SigningKeySource, url: &StoreUrl) -> Result<crm_core::audit::HeadSigner> {
    match source.resolve(url, false) {
        Ok(Some((signer, _))) => Ok(signer),
        Ok(None) => bail!(
            "no head-signing key: give it with {SIGNING_KEY_ENV}, --signing-key-file or \
             {SIGNING_KEY_FILE_ENV} (a PostgreSQL store has no default key file)"
        ),
        Err(error) => Err(error.into()),
    }
}

/// `audit public-key`: needs the store's URL only for the default key file.
pub fn public_key(url: &StoreUrl, key_file: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let public = signer(&signing_source(key_file), url)?.public();
    let pem = public.pem()?;
    if json {
        outln!(
            "{}",
            json!({
                "algorithm": "Ed25519",
                "key_id": public.key_id(),
                "public_key": public.base64(),
                "pem": pem,
            })
        );
    } else {
        outln!("algorithm  Ed25519");
        outln!("key_id     {}", public.key_id());
        outln!("public_key {}", public.base64());
        outln!("{}", pem.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant's tree recomputed from the raw log: its size and root.
async fn recompute(raw: &SharedStore, tenant: &TenantId) -> Result<(u64, Hash)> {
    let scope = Scope::Tenant(tenant.clone());
    let mut frontier = Frontier::new();
    let mut after = 0;
    loop {
        let batch = raw.read_all(&scope, after, READ_BATCH).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.position;
        for event in &batch {
            frontier.push(leaf_hash(&leaf_data(event)));
        }
    }
    Ok((frontier.size(), frontier.root()))
}

/// `audit head`.
pub async fn head(
    ctx: &Ctx,
    key_file: Option<PathBuf>,
    tenant: &str,
    out: Option<PathBuf>,
    force: bool,
) -> Result<ExitCode> {
    let tenant = TenantId::parse(tenant).context("--tenant")?;
    let source = signing_source(key_file);
    let signer = signer(&source, &ctx.url)?;
    // A head certifies the log as it stands: never sign over a broken chain.
    let chains = verify_log(ctx.raw.as_ref(), &Scope::Tenant(tenant.clone()), None).await?;
    if let Some(failure) = &chains.first_failure {
        eprintln!(
            "crm-replay: tenant {tenant}'s hash chains are broken, no head signed: {failure}"
        );
        if ctx.json {
            outln!("{}", serde_json::to_string(&chains)?);
        } else {
            outln!("BROKEN: {failure}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let (size, root) = recompute(&ctx.raw, &tenant).await?;
    if size == 0 {
        bail!("tenant {tenant} has no events in this store: nothing to sign");
    }
    let head = SignedHead::sign(&signer, tenant.as_str(), size, &root);
    let text = serde_json::to_string_pretty(&head)?;
    match out {
        Some(path) => {
            use std::io::Write;
            let guarded: Vec<PathBuf> = source.key_file(&ctx.url).into_iter().collect();
            let mut file =
                crate::outfile::create_guarding(&path, force, &ctx.url, "--out", &guarded)?;
            file.write_all(format!("{text}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&head)?);
            } else {
                outln!(
                    "signed the head of tenant {tenant}: {size} events, root {}, key {}, \
                     written to {}",
                    head.root_hash,
                    head.key_id,
                    path.display()
                );
            }
        }
        None if ctx.json => outln!("{}", serde_json::to_string(&head)?),
        None => outln!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A public key given as a file or as the key itself.
fn read_public_key(given: &str) -> Result<PublicKey> {
    let path = Path::new(given);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --public-key {}", path.display()))?
    } else {
        given.to_owned()
    };
    PublicKey::parse(&text).with_context(|| {
        if path.is_file() {
            format!("--public-key {}", path.display())
        } else {
            "--public-key (neither a readable file nor a key)".to_owned()
        }
    })
}

fn read_head(path: &Path) -> Result<SignedHead> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    SignedHead::from_json(&text).with_context(|| path.display().to_string())
}

/// Every `*.json` file below `dir`, sorted.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(
            entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path(),
        );
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// The heads `paths` name for `tenant`: a file is taken as it is (a head of another tenant
/// then fails the check); a directory gives its heads of this tenant.
fn collect_heads(paths: &[PathBuf], tenant: &TenantId) -> Result<Vec<SignedHead>> {
    let mut heads = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files = Vec::new();
            json_files(path, &mut files)?;
            let mut others = 0;
            let before = heads.len();
            for file in files {
                let head = read_head(&file)?;
                if head.tenant == tenant.as_str() {
                    heads.push(head);
                } else {
                    others += 1;
                }
            }
            if heads.len() == before {
                bail!(
                    "--head {}: no head of tenant {tenant} in it ({others} of other tenants)",
                    path.display()
                );
            }
        } else {
            heads.push(read_head(path)?);
        }
    }
    Ok(heads)
}

/// The read-model database when the tree worker's tables are in it.
async fn tree_db(url: &StoreUrl) -> Result<Option<ReadDb>> {
    let db = ReadDb::open_read_only(url)
        .await
        .context("cannot open the store's database")?;
    for table in TREE_TABLES {
        if !db.has_table(table).await? {
            return Ok(None);
        }
    }
    Ok(Some(db))
}

/// How early in the text output a finding goes: the ones naming an event first.
fn rank(kind: &str) -> u8 {
    match kind {
        "first_changed_event" | "first_missing_event" => 0,
        "missing_events" | "root_differs" => 2,
        "between_heads" | "tree_rewritten" => 3,
        _ => 4,
    }
}

/// `audit verify`.
pub async fn verify(
    ctx: &Ctx,
    key_file: Option<PathBuf>,
    tenant: &str,
    paths: &[PathBuf],
    public_key: Option<&str>,
) -> Result<ExitCode> {
    let tenant = TenantId::parse(tenant).context("--tenant")?;
    let heads = collect_heads(paths, &tenant)?;
    let key = match public_key {
        Some(given) => read_public_key(given)?,
        None => {
            let key = signer(&signing_source(key_file), &ctx.url)
                .context("no --public-key, and the local signing key cannot be read")?
                .public();
            eprintln!(
                "crm-replay: no --public-key given: checking with the local signing key's \
                 public half (key id {}); an auditor should give the key published to them",
                key.key_id()
            );
            key
        }
    };
    let db = tree_db(&ctx.url).await?;
    let check: HeadCheck = check_heads(&ctx.raw, db.as_ref(), &tenant, &heads, &key).await?;
    let chains = verify_log(ctx.raw.as_ref(), &Scope::Tenant(tenant.clone()), None).await?;
    let intact = check.intact() && chains.is_intact();
    if ctx.json {
        let mut value = serde_json::to_value(&check)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("intact".into(), json!(intact));
            object.insert("chains".into(), serde_json::to_value(&chains)?);
        }
        outln!("{value}");
    } else if intact {
        let sizes: Vec<String> = check
            .heads
            .iter()
            .map(|h| h.tree_size.to_string())
            .collect();
        outln!(
            "intact: tenant {tenant}'s {} events extend every head checked (tree sizes {}), \
             key {}; its hash chains verify ({} events in {} streams)",
            check.log_size,
            sizes.join(", "),
            key.key_id(),
            chains.events_checked,
            chains.streams_checked
        );
    } else {
        let mut lines: Vec<(u8, String)> = check
            .findings
            .iter()
            .map(|f| (rank(f.kind), format!("{}: {}", f.kind, f.message)))
            .collect();
        if let Some(failure) = &chains.first_failure {
            lines.push((1, format!("hash_chain: {failure}")));
        }
        // Stable: within a rank, the order found.
        lines.sort_by_key(|(rank, _)| *rank);
        let mut lines = lines.into_iter().map(|(_, line)| line);
        if let Some(first) = lines.next() {
            outln!("BROKEN: {first}");
        }
        for line in lines {
            outln!("  {line}");
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_hash(text: &str, what: &str) -> Result<Hash, String> {
    let mut hash = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut hash).is_err() {
        return Err(format!("{what} {text:?} is not 64 hex digits"));
    }
    Ok(hash)
}

fn parse_path(nodes: &[String], what: &str) -> Result<Vec<Hash>, String> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| parse_hash(node, &format!("{what}[{i}]")))
        .collect()
}

/// The checks of an inclusion proof against a verified head: what was proved, or every
/// failure.
fn check_inclusion(
    proof: &InclusionProof,
    head: &SignedHead,
    root: &Hash,
) -> Result<String, Vec<String>> {
    let mut failures = Vec::new();
    if proof.tenant != head.tenant || proof.event.tenant.as_str() != head.tenant {
        failures.push(format!(
            "the proof is for tenant {} (event of tenant {}), the head for tenant {}",
            proof.tenant, proof.event.tenant, head.tenant
        ));
    }
    if proof.tree_size < head.tree_size {
        failures.push(format!(
            "the proof is in the tree of {} events and the head signs the tree of {}: it cannot \
             be checked against this head (ask for the proof at tree_size={})",
            proof.tree_size, head.tree_size, head.tree_size
        ));
        return Err(failures);
    }
    if proof.tree_size > head.tree_size {
        failures.push(format!(
            "the proof is in the tree of {} events, beyond the head's {}: it cannot be checked \
             against this head (ask for the proof at tree_size={}, or use a later head)",
            proof.tree_size, head.tree_size, head.tree_size
        ));
        return Err(failures);
    }
    let data = leaf_data(&proof.event);
    match base64::engine::general_purpose::STANDARD.decode(&proof.leaf_data) {
        Ok(given) if given == data => {}
        Ok(_) => failures.push(
            "leaf_data is not what the event's stored fields give: the event or leaf_data was \
             changed"
                .into(),
        ),
        Err(error) => failures.push(format!("leaf_data is not base64: {error}")),
    }
    let leaf = leaf_hash(&data);
    match parse_hash(&proof.leaf_hash, "leaf_hash") {
        Ok(given) if given == leaf => {}
        Ok(_) => failures.push(format!(
            "leaf_hash {} is not the hash of the event's leaf data ({})",
            proof.leaf_hash,
            hex::encode(leaf)
        )),
        Err(error) => failures.push(error),
    }
    if proof.root_hash != head.root_hash {
        failures.push(format!(
            "the proof's root_hash {} is not the head's root {}",
            proof.root_hash, head.root_hash
        ));
    }
    match parse_path(&proof.audit_path, "audit_path") {
        Ok(path) => {
            if !verify_inclusion(proof.leaf_index, head.tree_size, &leaf, &path, root) {
                failures.push(format!(
                    "the audit path does not lead from the event's leaf at index {} to the \
                     head's root: the event is not leaf {} of the signed tree of {} events",
                    proof.leaf_index, proof.leaf_index, head.tree_size
                ));
            }
        }
        Err(error) => failures.push(error),
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    Ok(format!(
        "event stream {} revision {} is leaf {} of tenant {}'s tree of {} events signed {}",
        proof.event.stream_id,
        proof.event.revision,
        proof.leaf_index,
        head.tenant,
        head.tree_size,
        head.timestamp
    ))
}

/// The checks of a consistency proof against a verified head (the head is the later tree).
fn check_consistency(
    proof: &ConsistencyProof,
    head: &SignedHead,
    root: &Hash,
) -> Result<String, Vec<String>> {
    let mut failures = Vec::new();
    if proof.tenant != head.tenant {
        failures.push(format!(
            "the proof is for tenant {}, the head for tenant {}",
            proof.tenant, head.tenant
        ));
    }
    if proof.to != head.tree_size {
        failures.push(format!(
            "the proof leads to the tree of {} events and the head signs the tree of {}: it \
             cannot be checked against this head (ask for the proof to={})",
            proof.to, head.tree_size, head.tree_size
        ));
        return Err(failures);
    }
    if proof.to_root != head.root_hash {
        failures.push(format!(
            "the proof's to_root {} is not the head's root {}",
            proof.to_root, head.root_hash
        ));
    }
    match (
        parse_hash(&proof.from_root, "from_root"),
        parse_path(&proof.proof, "proof"),
    ) {
        (Ok(from_root), Ok(nodes)) => {
            if !verify_consistency(proof.from, proof.to, &from_root, root, &nodes) {
                failures.push(format!(
                    "the proof does not show that the signed tree of {} events extends a tree \
                     of {} events with root {}",
                    proof.to, proof.from, proof.from_root
                ));
            }
        }
        (Err(error), _) | (_, Err(error)) => failures.push(error),
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    Ok(format!(
        "tenant {}'s tree of {} events signed {} extends its tree of {} events with root {} \
         (compare that root with the head you hold for tree size {})",
        head.tenant, head.tree_size, head.timestamp, proof.from, proof.from_root, proof.from
    ))
}

/// The checks of a consistency proof's `from` side against the earlier head held.
fn check_from_head(proof: &ConsistencyProof, earlier: &SignedHead, key: &PublicKey) -> Vec<String> {
    let mut failures = Vec::new();
    if let Err(error) = earlier.verify(key) {
        failures.push(format!(
            "the earlier head (--from-head) does not verify: {error}"
        ));
    }
    if earlier.tenant != proof.tenant {
        failures.push(format!(
            "the earlier head is tenant {}'s, the proof tenant {}'s",
            earlier.tenant, proof.tenant
        ));
    }
    if earlier.tree_size != proof.from {
        failures.push(format!(
            "the earlier head signs the tree of {} events and the proof starts from {} (ask for \
             the proof from={})",
            earlier.tree_size, proof.from, earlier.tree_size
        ));
    } else if earlier.root_hash != proof.from_root {
        failures.push(format!(
            "the proof's from_root {} is not the root {} of the earlier head signed {}: the \
             tree of {} events was changed",
            proof.from_root, earlier.root_hash, earlier.timestamp, proof.from
        ));
    }
    failures
}

/// `audit check-proof`: no store is opened.
pub fn check_proof(
    proof: &Path,
    head: &Path,
    public_key: &str,
    from_head: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let key = read_public_key(public_key)?;
    let head = read_head(head)?;
    let earlier = from_head.map(read_head).transpose()?;
    let text = std::fs::read_to_string(proof)
        .with_context(|| format!("cannot read --proof {}", proof.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--proof {} is not JSON", proof.display()))?;
    let inclusion = value.get("leaf_index").is_some();
    if inclusion && earlier.is_some() {
        bail!(
            "--from-head is for consistency proofs; --proof {} is an inclusion proof",
            proof.display()
        );
    }
    let kind = if inclusion {
        "inclusion"
    } else if value.get("from").is_some() && value.get("to").is_some() {
        "consistency"
    } else {
        bail!(
            "--proof {} is neither an inclusion proof (\"leaf_index\") nor a consistency proof \
             (\"from\", \"to\")",
            proof.display()
        );
    };
    let outcome = match head.verify(&key) {
        Err(error) => Err(vec![format!("the head does not verify: {error}")]),
        Ok(root) if inclusion => {
            // From the text, not the Value: the event's data and metadata keep their bytes.
            let parsed: InclusionProof = serde_json::from_str(&text).with_context(|| {
                format!("--proof {} is not an inclusion proof", proof.display())
            })?;
            check_inclusion(&parsed, &head, &root)
        }
        Ok(root) => {
            let parsed: ConsistencyProof = serde_json::from_str(&text).with_context(|| {
                format!("--proof {} is not a consistency proof", proof.display())
            })?;
            let earlier_failures = earlier
                .as_ref()
                .map(|earlier| check_from_head(&parsed, earlier, &key))
                .unwrap_or_default();
            match check_consistency(&parsed, &head, &root) {
                Ok(proved) if earlier_failures.is_empty() => Ok(match &earlier {
                    Some(earlier) => format!(
                        "tenant {}'s tree of {} events signed {} extends, unchanged, its tree of \
                         {} events signed {}",
                        head.tenant,
                        head.tree_size,
                        head.timestamp,
                        earlier.tree_size,
                        earlier.timestamp
                    ),
                    None => proved,
                }),
                Ok(_) => Err(earlier_failures),
                Err(mut failures) => {
                    failures.extend(earlier_failures);
                    Err(failures)
                }
            }
        }
    };
    if json {
        let report = match &outcome {
            Ok(proved) => json!({"valid": true, "kind": kind, "proved": proved, "failures": []}),
            Err(failures) => json!({"valid": false, "kind": kind, "failures": failures}),
        };
        outln!("{report}");
    } else {
        match &outcome {
            Ok(proved) => outln!("valid {kind} proof: {proved}"),
            Err(failures) => {
                let mut failures = failures.iter();
                if let Some(first) = failures.next() {
                    outln!("INVALID {kind} proof: {first}");
                }
                for failure in failures {
                    outln!("  {failure}");
                }
            }
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
