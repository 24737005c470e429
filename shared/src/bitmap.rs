//! A set of chunk indexes, as HQ reports which chunks of a blob it holds.

use serde::{Deserialize, Serialize};

/// One bit a chunk. A 8 MiB scan in 16 KiB chunks is 512 chunks: 64 bytes on the wire.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bitmap(#[serde(with = "serde_bytes")] Vec<u8>);

impl Bitmap {
    pub fn new(len: u32) -> Self {
        Bitmap(vec![0; (len as usize).div_ceil(8)])
    }
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Bitmap(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn get(&self, i: u32) -> bool {
        self.0
            .get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
    pub fn set(&mut self, i: u32) {
        let byte = (i / 8) as usize;
        if byte >= self.0.len() {
            self.0.resize(byte + 1, 0);
        }
        self.0[byte] |= 1 << (i % 8);
    }
    pub fn count(&self) -> u32 {
        self.0.iter().map(|b| b.count_ones()).sum()
    }
    /// True when every index below `len` is set.
    pub fn is_full(&self, len: u32) -> bool {
        (0..len).all(|i| self.get(i))
    }
    pub fn missing(&self, len: u32) -> impl Iterator<Item = u32> + '_ {
        (0..len).filter(move |i| !self.get(*i))
    }
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitmap({} set)", self.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn set_get_missing() {
        let mut b = Bitmap::new(10);
        b.set(0);
        b.set(9);
        assert!(b.get(0) && b.get(9) && !b.get(5) && !b.get(100));
        assert_eq!(b.count(), 2);
        assert_eq!(b.missing(10).count(), 8);
        for i in 0..10 {
            b.set(i);
        }
        assert!(b.is_full(10));
        b.set(20);
        assert!(b.get(20));
    }
}
