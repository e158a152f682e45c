//! Application instance keys and certificates: the RSA private key a user hands uatap (PEM or
//! DER, PKCS#8 or PKCS#1) and the X.509 certificates peers send in OPN chunks.

use aws_lc_rs::digest;
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::CryptoError;

/// An RSA private key, ready to sign and to decrypt.
pub struct PrivateKey {
    pair: RsaKeyPair,
    oaep: OaepPrivateDecryptingKey,
    pkcs1: Pkcs1PrivateDecryptingKey,
    /// PKCS#8 DER, kept for the SHA-1 signatures ring-style APIs do not offer.
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    /// Never prints key material, only the size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} bits)", self.bits())
    }
}

impl PrivateKey {
    /// Reads a key file: PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`) or DER (PKCS#8 or PKCS#1).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Self::from_pem(bytes);
        }
        Self::from_pkcs8(bytes).or_else(|_| Self::from_pkcs1(bytes))
    }

    /// Reads the first private key of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CryptoError> {
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| CryptoError::Key(format!("bad PEM: {e}")))?;
            match block.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8(&block.contents),
                "RSA PRIVATE KEY" => return Self::from_pkcs1(&block.contents),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(CryptoError::Key(
                        "the key file is password-protected; write a clear copy first \
                         (openssl pkey -in KEY -out clear.pem) and keep it safe"
                            .into(),
                    ))
                }
                _ => {}
            }
        }
        Err(CryptoError::Key(
            "no RSA private key in the PEM file".into(),
        ))
    }

    /// Reads a PKCS#8 DER key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| CryptoError::Key(format!("not an RSA PKCS#8 key: {e}")))?;
        let decrypting = || {
            PrivateDecryptingKey::from_pkcs8(der)
                .map_err(|e| CryptoError::Key(format!("not an RSA PKCS#8 key: {e}")))
        };
        let unusable = |_| CryptoError::Key("the RSA key cannot decrypt".into());
        Ok(PrivateKey {
            pair,
            oaep: OaepPrivateDecryptingKey::new(decrypting()?).map_err(unusable)?,
            pkcs1: Pkcs1PrivateDecryptingKey::new(decrypting()?).map_err(unusable)?,
            pkcs8: der.to_vec(),
        })
    }

    /// Reads a PKCS#1 `RSAPrivateKey` DER key (OpenSSL's traditional format).
    pub fn from_pkcs1(der: &[u8]) -> Result<Self, CryptoError> {
        Self::from_pkcs8(&pkcs1_to_pkcs8(der))
    }

    /// A fresh 2048-bit key, for uatap's own application certificate.
    pub fn generate() -> Result<Self, CryptoError> {
        let key = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| CryptoError::Key("RSA key generation failed".into()))?;
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
            .map_err(|_| CryptoError::Key("RSA key export failed".into()))?;
        Self::from_pkcs8(der.as_ref())
    }

    /// The PKCS#8 DER of the key, to save it or to hand it to a certificate generator.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Length of the modulus in bytes: the length of a signature and of a ciphertext block.
    pub fn size(&self) -> usize {
        self.pair.public_modulus_len()
    }

    /// Length of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.size().saturating_mul(8)
    }

    /// The public key as a DER `RSAPublicKey`, to match the key against a certificate.
    pub fn public_key_der(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub(crate) fn pair(&self) -> &RsaKeyPair {
        &self.pair
    }

    pub(crate) fn oaep_decrypting(&self) -> &OaepPrivateDecryptingKey {
        &self.oaep
    }

    pub(crate) fn pkcs1_decrypting(&self) -> &Pkcs1PrivateDecryptingKey {
        &self.pkcs1
    }

    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

/// Wraps a PKCS#1 `RSAPrivateKey` into a PKCS#8 `PrivateKeyInfo` (version 0, rsaEncryption).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }.
    const ALG: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut inner = vec![0x02, 0x01, 0x00];
    inner.extend_from_slice(&ALG);
    inner.push(0x04);
    der_len(&mut inner, pkcs1.len());
    inner.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(&mut out, inner.len());
    out.extend_from_slice(&inner);
    out
}

/// Appends a DER length.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// A peer's application instance certificate: the DER bytes, its RSA public key and the
/// SHA-1 thumbprint OPN chunks name it by.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    /// DER `RSAPublicKey`.
    public_key: Vec<u8>,
    thumbprint: [u8; 20],
    key_bits: usize,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Certificate({})", hex(&self.thumbprint))
    }
}

impl Certificate {
    /// Reads a DER certificate; bytes after the first certificate (a chain, as asyncua sends
    /// in SenderCertificate) are ignored.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CryptoError::Key(format!("not a DER X.509 certificate: {e}")))?;
        let leaf = der
            .get(..der.len().saturating_sub(rest.len()))
            .unwrap_or(der);
        let spki = cert.public_key();
        let public_key = spki.subject_public_key.data.to_vec();
        let key_bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => {
                return Err(CryptoError::Key(
                    "the certificate's key is not RSA".to_string(),
                ))
            }
        };
        Ok(Certificate {
            der: leaf.to_vec(),
            public_key,
            thumbprint: thumbprint(leaf),
            key_bits,
        })
    }

    /// Reads a certificate file: DER, or the first `CERTIFICATE` of a PEM file.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
                let block = block.map_err(|e| CryptoError::Key(format!("bad PEM: {e}")))?;
                if block.label == "CERTIFICATE" {
                    return Self::from_der(&block.contents);
                }
            }
            return Err(CryptoError::Key("no CERTIFICATE in the PEM file".into()));
        }
        Self::from_der(bytes)
    }

    /// The DER bytes of the (leaf) certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-1 of the DER bytes, as ReceiverCertificateThumbprint carries it.
    pub fn thumbprint(&self) -> &[u8; 20] {
        &self.thumbprint
    }

    /// Size of the RSA key in bits.
    pub fn key_bits(&self) -> usize {
        self.key_bits
    }

    /// Size of the RSA key in bytes (signature and ciphertext block length).
    pub fn key_size(&self) -> usize {
        self.key_bits.div_ceil(8)
    }

    /// True when `key` is the private key of this certificate.
    pub fn matches(&self, key: &PrivateKey) -> bool {
        self.public_key == key.public_key_der()
    }

    pub(crate) fn encrypting_key(&self) -> Result<PublicEncryptingKey, CryptoError> {
        // The encrypting key wants a SubjectPublicKeyInfo; build it from the RSAPublicKey.
        PublicEncryptingKey::from_der(&rsa_spki(&self.public_key))
            .map_err(|_| CryptoError::Key("the certificate's RSA key is unusable".into()))
    }

    pub(crate) fn verifier(
        &self,
        params: &'static signature::RsaParameters,
    ) -> signature::UnparsedPublicKey<&[u8]> {
        signature::UnparsedPublicKey::new(params, self.public_key.as_slice())
    }
}

/// A SubjectPublicKeyInfo around an `RSAPublicKey`.
fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    const ALG: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(&mut bit_string, rsa_public_key.len().saturating_add(1));
    bit_string.push(0);
    bit_string.extend_from_slice(rsa_public_key);
    let mut out = vec![0x30];
    der_len(&mut out, ALG.len().saturating_add(bit_string.len()));
    out.extend_from_slice(&ALG);
    out.extend_from_slice(&bit_string);
    out
}

/// SHA-1 of a certificate's DER bytes.
pub fn thumbprint(der: &[u8]) -> [u8; 20] {
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let mut out = [0u8; 20];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex, for thumbprints in messages.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// RSASSA-PKCS1-v1_5 with SHA-1, which the deprecated policies need and the ring-style API
/// of aws-lc-rs does not offer for signing: one call into the same AWS-LC library.
#[allow(unsafe_code)]
pub(crate) fn sign_pkcs1_sha1(key: &PrivateKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use aws_lc_sys::{
        CBS_init, EVP_PKEY_free, EVP_PKEY_get1_RSA, EVP_parse_private_key, NID_sha1, RSA_free,
        RSA_sign, CBS,
    };
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    let pkcs8 = key.pkcs8();
    let mut sig = vec![0u8; key.size()];
    let mut sig_len: std::os::raw::c_uint = 0;
    // SAFETY: every pointer passed is valid for the length given with it; the CBS only borrows
    // `pkcs8` for the duration of the parse; the EVP_PKEY and RSA objects are freed exactly
    // once (get1 takes its own reference); `sig` has RSA_size bytes, the most RSA_sign writes.
    let ok = unsafe {
        let mut cbs: CBS = std::mem::zeroed();
        CBS_init(&mut cbs, pkcs8.as_ptr(), pkcs8.len());
        let pkey = EVP_parse_private_key(&mut cbs);
        if pkey.is_null() {
            return Err(CryptoError::Key(
                "the key does not parse for SHA-1 signing".into(),
            ));
        }
        let rsa = EVP_PKEY_get1_RSA(pkey);
        EVP_PKEY_free(pkey);
        if rsa.is_null() {
            return Err(CryptoError::Key("not an RSA key".into()));
        }
        let ok = RSA_sign(
            NID_sha1,
            d.as_ref().as_ptr(),
            d.as_ref().len(),
            sig.as_mut_ptr(),
            &mut sig_len,
            rsa,
        );
        RSA_free(rsa);
        ok
    };
    if ok != 1 {
        return Err(CryptoError::Sign);
    }
    sig.truncate(sig_len as usize);
    Ok(sig)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_keys_are_wrapped_into_pkcs8() {
        let key = PrivateKey::generate().unwrap();
        assert_eq!(key.bits(), 2048);
        // Take the PKCS#1 part back out of the PKCS#8 and read it as PKCS#1.
        // SEQUENCE(4) version(3) AlgorithmIdentifier(15) OCTET STRING(4) RSAPrivateKey.
        let der = key.pkcs8_der();
        assert_eq!(der[22..24], [0x04, 0x82]);
        let pkcs1 = &der[26..];
        let again = PrivateKey::from_pkcs1(pkcs1).unwrap();
        assert_eq!(again.public_key_der(), key.public_key_der());
        assert!(PrivateKey::from_file_bytes(b"not a key").is_err());
        let e = PrivateKey::from_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("password-protected"), "{e}");
    }

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_len(&mut v, 0x7f);
        der_len(&mut v, 0x80);
        der_len(&mut v, 0x1234);
        assert_eq!(v, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
