//! The security policies of OPC 10000-7 that RSA-based servers offer (Kepware, Ignition,
//! asyncua, node-opcua, open62541), with the algorithms and sizes each one fixes.

use std::fmt;

use uatap_codec::secure::SECURITY_POLICY_URI_PREFIX;

/// A security policy: which algorithms protect the OPN (asymmetric) and the MSG/CLO
/// (symmetric) chunks of a channel, and how long its keys and nonces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// No security: nothing signed or encrypted.
    None,
    /// Deprecated since 1.04: RSA PKCS#1 v1.5 encryption, SHA-1 signatures, AES-128.
    Basic128Rsa15,
    /// Deprecated since 1.04: RSA-OAEP (SHA-1), SHA-1 signatures, AES-256.
    Basic256,
    /// The usual policy of Kepware/Ignition pairs: RSA-OAEP (SHA-1), RSA-SHA256, AES-256.
    Basic256Sha256,
    /// RSA-OAEP (SHA-1), RSA-SHA256, AES-128.
    Aes128Sha256RsaOaep,
    /// RSA-OAEP (SHA-256), RSA-PSS (SHA-256), AES-256.
    Aes256Sha256RsaPss,
}

/// How an OPN chunk is encrypted to the receiver's RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricEncryption {
    /// RSAES-PKCS1-v1_5 (`http://www.w3.org/2001/04/xmlenc#rsa-1_5`).
    Pkcs1v15,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA1 (`http://www.w3.org/2001/04/xmlenc#rsa-oaep`).
    OaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA256.
    OaepSha256,
}

impl AsymmetricEncryption {
    /// Bytes of one RSA block that padding takes: the plaintext block is the key length less
    /// this.
    pub fn overhead(self) -> usize {
        match self {
            AsymmetricEncryption::Pkcs1v15 => 11,
            AsymmetricEncryption::OaepSha1 => 42,
            AsymmetricEncryption::OaepSha256 => 66,
        }
    }

    /// The algorithm URI, as UserTokenPolicy and UserNameIdentityToken.EncryptionAlgorithm
    /// carry it.
    pub fn uri(self) -> &'static str {
        match self {
            AsymmetricEncryption::Pkcs1v15 => "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
            AsymmetricEncryption::OaepSha1 => "http://www.w3.org/2001/04/xmlenc#rsa-oaep",
            AsymmetricEncryption::OaepSha256 => {
                "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256"
            }
        }
    }
}

/// How an OPN chunk (and the session signatures) are signed with the sender's RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricSignature {
    /// RSASSA-PKCS1-v1_5 with SHA-1.
    Pkcs1Sha1,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Pkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA256 and a 32-byte salt.
    PssSha256,
}

impl AsymmetricSignature {
    /// The algorithm URI, as SignatureData.Algorithm carries it in CreateSession and
    /// ActivateSession.
    pub fn uri(self) -> &'static str {
        match self {
            AsymmetricSignature::Pkcs1Sha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            AsymmetricSignature::Pkcs1Sha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            AsymmetricSignature::PssSha256 => {
                "http://opcfoundation.org/UA/security/rsa-pss-sha2-256"
            }
        }
    }
}

/// The hash of the symmetric signature (HMAC) and of the key derivation (P_hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymmetricHash {
    /// HMAC-SHA1 (20-byte signatures), P_SHA1.
    Sha1,
    /// HMAC-SHA256 (32-byte signatures), P_SHA256.
    Sha256,
}

impl SymmetricHash {
    /// Length of an HMAC signature of a MSG/CLO chunk.
    pub fn signature_len(self) -> usize {
        match self {
            SymmetricHash::Sha1 => 20,
            SymmetricHash::Sha256 => 32,
        }
    }
}

/// Every policy, in the order a probe tries them (strongest first).
pub const ALL_POLICIES: [SecurityPolicy; 6] = [
    SecurityPolicy::Aes256Sha256RsaPss,
    SecurityPolicy::Basic256Sha256,
    SecurityPolicy::Aes128Sha256RsaOaep,
    SecurityPolicy::Basic256,
    SecurityPolicy::Basic128Rsa15,
    SecurityPolicy::None,
];

impl SecurityPolicy {
    /// The short name, the part of the URI after `#` (`Aes128_Sha256_RsaOaep`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic128Rsa15 => "Basic128Rsa15",
            SecurityPolicy::Basic256 => "Basic256",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256RsaOaep => "Aes128_Sha256_RsaOaep",
            SecurityPolicy::Aes256Sha256RsaPss => "Aes256_Sha256_RsaPss",
        }
    }

    /// The SecurityPolicyUri.
    pub fn uri(self) -> String {
        format!("{SECURITY_POLICY_URI_PREFIX}{}", self.name())
    }

    /// The policy a SecurityPolicyUri names (`None` for an unknown URI).
    pub fn from_uri(uri: &[u8]) -> Option<Self> {
        let name = uri.strip_prefix(SECURITY_POLICY_URI_PREFIX.as_bytes())?;
        let name = std::str::from_utf8(name).ok()?;
        Self::from_name(name)
    }

    /// The policy a short name names, as users type it (case-insensitive, `_` optional).
    pub fn from_name(name: &str) -> Option<Self> {
        let key: String = name
            .chars()
            .filter(|c| *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        ALL_POLICIES.into_iter().find(|p| {
            p.name()
                .chars()
                .filter(|c| *c != '_')
                .flat_map(char::to_lowercase)
                .eq(key.chars())
        })
    }

    /// True for Basic128Rsa15 and Basic256, deprecated by OPC UA 1.04 and off by default in
    /// current Kepware and Ignition releases.
    pub fn is_deprecated(self) -> bool {
        matches!(
            self,
            SecurityPolicy::Basic128Rsa15 | SecurityPolicy::Basic256
        )
    }

    /// The asymmetric encryption of OPN chunks (`None` for the None policy).
    pub fn asymmetric_encryption(self) -> Option<AsymmetricEncryption> {
        Some(match self {
            SecurityPolicy::None => return None,
            SecurityPolicy::Basic128Rsa15 => AsymmetricEncryption::Pkcs1v15,
            SecurityPolicy::Basic256
            | SecurityPolicy::Basic256Sha256
            | SecurityPolicy::Aes128Sha256RsaOaep => AsymmetricEncryption::OaepSha1,
            SecurityPolicy::Aes256Sha256RsaPss => AsymmetricEncryption::OaepSha256,
        })
    }

    /// The asymmetric signature of OPN chunks and session signatures.
    pub fn asymmetric_signature(self) -> Option<AsymmetricSignature> {
        Some(match self {
            SecurityPolicy::None => return None,
            SecurityPolicy::Basic128Rsa15 | SecurityPolicy::Basic256 => {
                AsymmetricSignature::Pkcs1Sha1
            }
            SecurityPolicy::Basic256Sha256 | SecurityPolicy::Aes128Sha256RsaOaep => {
                AsymmetricSignature::Pkcs1Sha256
            }
            SecurityPolicy::Aes256Sha256RsaPss => AsymmetricSignature::PssSha256,
        })
    }

    /// The HMAC and key-derivation hash.
    pub fn symmetric_hash(self) -> Option<SymmetricHash> {
        Some(match self {
            SecurityPolicy::None => return None,
            SecurityPolicy::Basic128Rsa15 | SecurityPolicy::Basic256 => SymmetricHash::Sha1,
            _ => SymmetricHash::Sha256,
        })
    }

    /// Length of the derived signing key.
    pub fn signing_key_len(self) -> usize {
        match self {
            SecurityPolicy::None => 0,
            SecurityPolicy::Basic128Rsa15 => 16,
            SecurityPolicy::Basic256 => 24,
            _ => 32,
        }
    }

    /// Length of the derived AES key (16 for AES-128, 32 for AES-256).
    pub fn encrypting_key_len(self) -> usize {
        match self {
            SecurityPolicy::None => 0,
            SecurityPolicy::Basic128Rsa15 | SecurityPolicy::Aes128Sha256RsaOaep => 16,
            _ => 32,
        }
    }

    /// Length of the nonces exchanged in OpenSecureChannel and CreateSession.
    pub fn nonce_len(self) -> usize {
        match self {
            SecurityPolicy::None => 0,
            SecurityPolicy::Basic128Rsa15 => 16,
            _ => 32,
        }
    }

    /// The RSA key sizes (bits) the policy allows for application certificates.
    pub fn rsa_key_bits(self) -> Option<(usize, usize)> {
        match self {
            SecurityPolicy::None => None,
            SecurityPolicy::Basic128Rsa15 | SecurityPolicy::Basic256 => Some((1024, 2048)),
            _ => Some((2048, 4096)),
        }
    }
}

impl fmt::Display for SecurityPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris_round_trip() {
        for p in ALL_POLICIES {
            assert_eq!(SecurityPolicy::from_uri(p.uri().as_bytes()), Some(p));
            assert_eq!(SecurityPolicy::from_name(p.name()), Some(p));
        }
        assert_eq!(
            SecurityPolicy::from_name("aes128sha256rsaoaep"),
            Some(SecurityPolicy::Aes128Sha256RsaOaep)
        );
        assert_eq!(
            SecurityPolicy::from_uri(b"http://example.com/#Basic256"),
            None
        );
        assert_eq!(SecurityPolicy::from_name("Basic512"), None);
    }

    #[test]
    fn sizes_match_the_reference_table() {
        use SecurityPolicy::*;
        let rows = [
            (Basic128Rsa15, 16, 16, 16, 20),
            (Basic256, 24, 32, 32, 20),
            (Basic256Sha256, 32, 32, 32, 32),
            (Aes128Sha256RsaOaep, 32, 16, 32, 32),
            (Aes256Sha256RsaPss, 32, 32, 32, 32),
        ];
        for (p, sig, enc, nonce, hmac) in rows {
            assert_eq!(p.signing_key_len(), sig, "{p}");
            assert_eq!(p.encrypting_key_len(), enc, "{p}");
            assert_eq!(p.nonce_len(), nonce, "{p}");
            assert_eq!(
                p.symmetric_hash().map(SymmetricHash::signature_len),
                Some(hmac)
            );
        }
        assert_eq!(None.symmetric_hash(), Option::None);
    }
}
