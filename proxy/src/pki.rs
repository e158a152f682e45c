//! uatap's own application instance certificate for `uatap probe`: kept in a PKI folder
//! (`own/cert.der`, `own/key.pem`), generated on first use, or the user's `--cert/--key`.
//!
//! A server has to trust this certificate before it accepts the probe's secured channels, so
//! it stays the same from run to run: the user trusts it once (Kepware's Trusted Clients,
//! Ignition's Security > Client certificates, or the server's `pki/trusted/certs` folder).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use uatap_crypto::appcert::{
    generate_application_certificate, private_key_pem, ApplicationIdentity,
};
use uatap_crypto::{Certificate, PrivateKey};

/// The key and certificate the probe opens secured channels and sessions with.
#[derive(Clone)]
pub struct Identity {
    /// The application instance private key (never printed).
    pub key: Arc<PrivateKey>,
    /// The application instance certificate.
    pub cert: Certificate,
    /// The ApplicationUri in the certificate, which CreateSession must repeat.
    pub application_uri: String,
    /// Where the certificate is, to tell the user which file the server must trust.
    pub cert_path: PathBuf,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({}, {:?}, {})",
            self.application_uri,
            self.cert,
            self.cert_path.display()
        )
    }
}

/// Why the probe's certificate could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A key or certificate is unusable, or does not match the other.
    #[error("{path}: {why}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The per-user PKI folder: `%APPDATA%\uatap\pki` on Windows, `$HOME/.uatap/pki` elsewhere.
pub fn default_pki_dir() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        std::env::var_os("APPDATA").map(|d| PathBuf::from(d).join("uatap").join("pki"))
    }
    #[cfg(not(windows))]
    {
        std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".uatap").join("pki"))
    }
}

/// This machine's host name, for the certificate's names (`localhost` when unknown).
pub fn hostname() -> String {
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").ok();
    #[cfg(not(windows))]
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    name.map(|n| n.trim().to_string())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |error| PkiError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn bad(path: &Path) -> impl FnOnce(uatap_crypto::CryptoError) -> PkiError + '_ {
    move |e| PkiError::Bad {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// Reads a user's certificate (DER or PEM) and its private key (PEM or DER).
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, PkiError> {
    let cert = std::fs::read(cert_path).map_err(io(cert_path))?;
    let cert = Certificate::from_file_bytes(&cert).map_err(bad(cert_path))?;
    let key = std::fs::read(key_path).map_err(io(key_path))?;
    let key = PrivateKey::from_file_bytes(&key).map_err(bad(key_path))?;
    if !cert.matches(&key) {
        return Err(PkiError::Bad {
            path: key_path.to_path_buf(),
            why: format!("not the private key of {}", cert_path.display()),
        });
    }
    let application_uri = uatap_analysis::cert::summarize_certificate(cert.der())
        .application_uri
        .unwrap_or_default();
    Ok(Identity {
        key: Arc::new(key),
        cert,
        application_uri,
        cert_path: cert_path.to_path_buf(),
    })
}

/// Reads `DIR/own/cert.der` and `DIR/own/key.pem`, or makes them on first use (RSA 2048,
/// self-signed, valid one year, ApplicationUri `urn:<host>:uatap`).
pub fn load_or_create(dir: &Path) -> Result<Identity, PkiError> {
    let own = dir.join("own");
    let cert_path = own.join("cert.der");
    let key_path = own.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return load(&cert_path, &key_path);
    }
    std::fs::create_dir_all(&own).map_err(io(&own))?;
    let host = hostname();
    let key = PrivateKey::generate().map_err(bad(&key_path))?;
    let id = ApplicationIdentity {
        application_uri: format!("urn:{host}:uatap"),
        hostname: host.clone(),
        common_name: format!("uatap@{host}"),
        valid_for: Duration::from_secs(365 * 86_400),
    };
    let cert = generate_application_certificate(&key, &id).map_err(bad(&cert_path))?;
    let pem = private_key_pem(&key).map_err(bad(&key_path))?;
    write_private(&key_path, pem.as_bytes()).map_err(io(&key_path))?;
    std::fs::write(&cert_path, cert.der()).map_err(io(&cert_path))?;
    Ok(Identity {
        key: Arc::new(key),
        cert,
        application_uri: id.application_uri,
        cert_path,
    })
}

/// Writes a file only its owner can read (the private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("uatap-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create(&dir).expect("made");
        let b = load_or_create(&dir).expect("read back");
        assert_eq!(a.cert.der(), b.cert.der(), "the same certificate every run");
        assert!(a.application_uri.starts_with("urn:") && a.application_uri.ends_with(":uatap"));
        assert_eq!(b.application_uri, a.application_uri);
        assert!(b.cert.matches(&a.key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("own/key.pem"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's only");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
