//! OPC UA key logs, the text format Wireshark's OPC UA dissector reads (4.4 and later;
//! `opcua.debug_file`, or a pcapng Decryption Secrets Block of type `UAKL`): per channel and
//! token, the AES key and IV of each side and the signature length.
//!
//! ```text
//! client_iv_1_1: E846649285ECE896B8AD6D975A5F002F
//! client_key_1_1: 97A35CEE...
//! client_siglen_1_1: 32
//! server_iv_1_1: ...
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::keys::hex;
use crate::symmetric::ChannelKeys;

/// pcapng Decryption Secrets Block type of an OPC UA key log ("UAKL").
pub const SECRETS_TYPE_OPCUA: u32 = 0x5541_4B4C;

/// The lines of one token's keys.
pub fn lines(channel_id: u32, token_id: u32, keys: &ChannelKeys) -> String {
    let siglen = keys
        .policy
        .symmetric_hash()
        .map_or(0, |h| h.signature_len());
    let mut out = String::new();
    for (side, k) in [("client", &keys.client), ("server", &keys.server)] {
        let (_, key, iv) = k.parts();
        let _ = writeln!(
            out,
            "{side}_iv_{channel_id}_{token_id}: {}",
            hex(iv).to_uppercase()
        );
        let _ = writeln!(
            out,
            "{side}_key_{channel_id}_{token_id}: {}",
            hex(key).to_uppercase()
        );
        let _ = writeln!(out, "{side}_siglen_{channel_id}_{token_id}: {siglen}");
    }
    out
}

/// One side's keys as a key log has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideKeys {
    /// AES key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// IV.
    pub iv: [u8; 16],
    /// Signature length (20 or 32).
    pub signature_len: usize,
}

/// Both sides' keys of one (SecureChannelId, TokenId).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenKeys {
    /// Keys of what the client sends.
    pub client: SideKeys,
    /// Keys of what the server sends.
    pub server: SideKeys,
}

/// A parsed key log: (SecureChannelId, TokenId) -> keys.
pub type KeyLog = BTreeMap<(u32, u32), TokenKeys>;

/// Most tokens read from one key log.
const MAX_TOKENS: usize = 100_000;

/// Parses a key log; a line that is not `side_field_channel_token: value` is an error with its
/// line number. Unknown fields are skipped (the format may grow).
pub fn parse(text: &str) -> Result<KeyLog, String> {
    let mut log = KeyLog::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = n.saturating_add(1);
        let bad = |why: &str| format!("line {at}: {why}");
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("expected NAME: VALUE"))?;
        let parts: Vec<&str> = name.trim().split('_').collect();
        let [side, field, channel, token] = parts.as_slice() else {
            return Err(bad("expected a name like client_key_1_1"));
        };
        let channel: u32 = channel.parse().map_err(|_| bad("bad SecureChannelId"))?;
        let token: u32 = token.parse().map_err(|_| bad("bad TokenId"))?;
        if !log.contains_key(&(channel, token)) && log.len() >= MAX_TOKENS {
            return Err(bad("too many tokens"));
        }
        let entry = log.entry((channel, token)).or_default();
        let keys = match *side {
            "client" => &mut entry.client,
            "server" => &mut entry.server,
            _ => return Err(bad("the side is client or server")),
        };
        let value = value.trim();
        match *field {
            "key" => {
                let k = unhex(value).ok_or_else(|| bad("the key is not hex"))?;
                if k.len() != 16 && k.len() != 32 {
                    return Err(bad("an AES key has 16 or 32 bytes"));
                }
                keys.key = k;
            }
            "iv" => {
                let iv = unhex(value).ok_or_else(|| bad("the IV is not hex"))?;
                keys.iv = iv.try_into().map_err(|_| bad("an IV has 16 bytes"))?;
            }
            "siglen" => {
                keys.signature_len = value.parse().map_err(|_| bad("bad siglen"))?;
                if keys.signature_len > 64 {
                    return Err(bad("siglen over 64"));
                }
            }
            _ => {}
        }
    }
    Ok(log)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i.saturating_add(2))?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::policy::SecurityPolicy;

    #[test]
    fn written_lines_parse_back() {
        let k = ChannelKeys::derive(SecurityPolicy::Basic256Sha256, true, &[1; 32], &[2; 32]);
        let text = lines(7, 3, &k);
        assert_eq!(text.lines().count(), 6);
        assert!(text.starts_with("client_iv_7_3: "), "{text}");
        let log = parse(&text).unwrap();
        let t = &log[&(7, 3)];
        assert_eq!(t.client.key, k.client.parts().1);
        assert_eq!(&t.server.iv, k.server.parts().2);
        assert_eq!(t.server.signature_len, 32);
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(
            parse("client_key_1_1: zz").unwrap_err(),
            "line 1: the key is not hex"
        );
        assert!(parse("\nfoo").unwrap_err().starts_with("line 2:"));
        assert!(parse("peer_iv_1_1: 00").is_err());
        assert!(parse("client_iv_1_1: 00").is_err());
        assert!(parse("client_note_1_1: anything\n# comment\n").is_ok());
    }
}
