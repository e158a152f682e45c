//! Reading the keys users hand uatap: application private keys (`--private-key`), key logs
//! (`--keys`), and where derived keys go (`--export-keys`), with errors that name the file.

use std::path::PathBuf;

use anyhow::Context;
use uatap_crypto::passive::KeyStore;
use uatap_crypto::PrivateKey;

/// The key options shared by `uatap analyze` and `uatap proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// The private key (PEM or DER) of the client's or the server's application certificate:
    /// secured OpenSecureChannel messages encrypted to it are read (the exact status of a
    /// refused channel); with both keys, whole secured channels are decoded. Forwarding is
    /// unchanged. Repeatable.
    #[arg(long = "private-key", value_name = "KEY.pem")]
    pub private_keys: Vec<PathBuf>,
    /// A key log in Wireshark's OPC UA format (`client_key_1_1: ...`): SignAndEncrypt channels
    /// whose keys it holds are decrypted. Repeatable.
    #[arg(long = "keys", value_name = "FILE")]
    pub key_logs: Vec<PathBuf>,
    /// Write the symmetric keys of every channel read with --private-key (or, with --mitm, of
    /// the client's leg of every channel) to this key log, for
    /// Wireshark 4.4+ (Preferences > Protocols > OpcUa > key log file) or `uatap analyze --keys`.
    /// The file holds secrets: keep it as safe as the keys.
    #[arg(long = "export-keys", value_name = "FILE")]
    pub export_keys: Option<PathBuf>,
}

impl KeyArgs {
    /// Loads every key file; keys are labelled with their file name in reports (never their
    /// content).
    pub fn load(&self) -> anyhow::Result<KeyStore> {
        self.load_for(false)
    }

    /// Like [`KeyArgs::load`]; `mitm`: the MITM mode derives keys itself, so --export-keys
    /// needs no private key then.
    pub fn load_for(&self, mitm: bool) -> anyhow::Result<KeyStore> {
        let mut keys = Vec::with_capacity(self.private_keys.len());
        for p in &self.private_keys {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let key = PrivateKey::from_file_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let label = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            keys.push((label, key));
        }
        let mut log = uatap_crypto::keylog::KeyLog::new();
        for p in &self.key_logs {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let parsed = uatap_crypto::keylog::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            log.extend(parsed);
        }
        let mut store = KeyStore::new(keys).with_key_log(log);
        if let Some(p) = &self.export_keys {
            if self.private_keys.is_empty() && !mitm {
                anyhow::bail!("--export-keys writes the keys derived with --private-key: give the keys of both applications");
            }
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            store = store.export_to(Box::new(f));
        }
        Ok(store)
    }
}
