//! Files the tools write (`export --out`): never over an existing file unless `--force`, never
//! through a symbolic link, and never over the store's own files (the database, its WAL and
//! shared-memory files, the master key, the head-signing key), whatever the path that names
//! them.
//!
//! The checks are made on the opened file, not on the path before opening it, so a link
//! swapped in between cannot redirect the write: the open refuses a link as the last
//! component (`O_NOFOLLOW`), and the file is truncated only after its identity (device and
//! inode) is known not to be one of the store's.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use crm_core::store::StoreUrl;

/// Creates `path` for writing with mode 0600. An existing file is refused unless `force`; a
/// symbolic link, a directory, or one of the store's own files is always refused.
pub fn create(path: &Path, force: bool, store: &StoreUrl, option: &str) -> Result<File> {
    create_guarding(path, force, store, option, &[])
}

/// As [`create`], also refusing `guarded` (key files named elsewhere, such as
/// `--signing-key-file`).
pub fn create_guarding(
    path: &Path,
    force: bool,
    store: &StoreUrl,
    option: &str,
    guarded: &[PathBuf],
) -> Result<File> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    if force {
        options.create(true);
    } else {
        options.create_new(true);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        // O_NOFOLLOW on a link as the last component (or O_EXCL on any link).
        Err(error)
            if error.raw_os_error() == Some(libc::ELOOP)
                || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            bail!(
                "{option} {} is a symbolic link: name the file itself",
                path.display()
            )
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{option} {} already exists: pass --force to overwrite it",
            path.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", path.display()));
        }
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if meta.is_dir() {
        bail!("{option} {} is a directory", path.display());
    }
    for own in store_files(store)
        .into_iter()
        .chain(guarded.iter().cloned())
    {
        if let Ok(theirs) = std::fs::metadata(&own)
            && theirs.dev() == meta.dev()
            && theirs.ino() == meta.ino()
        {
            bail!(
                "{option} {} is the store's own file {}: refusing to write over it",
                path.display(),
                own.display()
            );
        }
    }
    if meta.is_file() {
        // An existing file keeps its mode on open: narrow it, then empty it, before anything
        // is written (a device such as /dev/null is neither chmodded nor truncated).
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
        file.set_len(0)
            .with_context(|| format!("cannot empty {}", path.display()))?;
    }
    Ok(file)
}

/// The files a SQLite store lives in (a PostgreSQL store has none on this machine's paths
/// that a tool could name).
fn store_files(store: &StoreUrl) -> Vec<PathBuf> {
    match store {
        StoreUrl::Sqlite { path, .. } => {
            let with = |suffix: &str| {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                PathBuf::from(name)
            };
            let mut files = vec![path.clone(), with("-wal"), with("-shm"), with("-journal")];
            if let Some(dir) = path.parent() {
                files.push(dir.join("master.key"));
                files.push(crm_core::audit::default_signing_key_file(path));
            }
            files
        }
        StoreUrl::Postgres { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> StoreUrl {
        let path = dir.join("events.db");
        std::fs::write(&path, b"the store").expect("store file");
        std::fs::write(dir.join("events.db-wal"), b"its wal").expect("wal file");
        StoreUrl::parse(&format!("sqlite://{}", path.display())).expect("url")
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_in(dir.path());
        let target = dir.path().join("out.jsonl");
        std::fs::write(&target, b"keep me").expect("write");
        let error = create(&target, false, &store, "--out").expect_err("refused");
        assert!(error.to_string().contains("--force"), "{error}");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep me");

        drop(create(&target, true, &store, "--out").expect("forced"));
        assert_eq!(std::fs::read(&target).expect("read"), b"");
        let mode = std::fs::metadata(&target).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn links_and_the_stores_own_files_are_refused_even_when_forced() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_in(dir.path());
        let link = dir.path().join("innocent.jsonl");
        std::os::unix::fs::symlink(dir.path().join("events.db"), &link).expect("link");
        for force in [false, true] {
            let error = create(&link, force, &store, "--out").expect_err("link refused");
            assert!(error.to_string().contains("symbolic link"), "{error}");
        }
        // A hard link or another spelling of the same file is still the store.
        let hard = dir.path().join("hard.jsonl");
        std::fs::hard_link(dir.path().join("events.db-wal"), &hard).expect("hard link");
        let spelled = dir.path().join(".").join("events.db");
        for target in [&hard, &spelled] {
            let error = create(target, true, &store, "--out").expect_err("store refused");
            assert!(error.to_string().contains("store's own file"), "{error}");
        }
        assert_eq!(
            std::fs::read(dir.path().join("events.db")).expect("read"),
            b"the store"
        );
        assert_eq!(
            std::fs::read(dir.path().join("events.db-wal")).expect("read"),
            b"its wal"
        );
    }
}
