//! The encoder side: every wire structure measures itself, then writes itself.

use bytes::BufMut;

/// A structure that can be written in the UA binary encoding (or UA TCP framing).
///
/// `encoded_len` is exact, so size fields can be written before the bytes they measure and
/// buffers allocated once.
pub trait Encode {
    /// Number of bytes `encode` will write.
    fn encoded_len(&self) -> usize;
    /// Writes the structure.
    fn encode<B: BufMut>(&self, out: &mut B);

    /// Encodes into a fresh vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}
