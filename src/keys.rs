//! Reading the private keys users hand uatap (`--private-key`), with errors that name the file.

use std::path::PathBuf;

use anyhow::Context;
use uatap_crypto::passive::KeyStore;
use uatap_crypto::PrivateKey;

/// Loads every key file; each is labelled with its file name in reports (never its content).
pub fn load(paths: &[PathBuf]) -> anyhow::Result<KeyStore> {
    let mut keys = Vec::with_capacity(paths.len());
    for p in paths {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let key = PrivateKey::from_file_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let label = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        keys.push((label, key));
    }
    Ok(KeyStore::new(keys))
}
