//! A byte format for structured fuzz inputs, read by [`Reader`] and written by [`Writer`].
//!
//! libFuzzer mutates bytes; a target that wants a sequence of operations reads them with a
//! [`Reader`], which never fails: past the end every number reads as zero and every byte
//! string as empty, so any input is a valid program. The seed generator writes the same
//! format with a [`Writer`], which is why this is a hand-made format and not `arbitrary`'s:
//! a seed must say exactly which operations it stands for.

/// Reads numbers and byte strings from a fuzz input, big-endian.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte; 0 past the end.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Two bytes.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Four bytes.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Eight bytes.
    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// `N` bytes, zero-filled past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    /// A byte string: a two-byte length, then that many bytes (fewer at the end of the input).
    pub fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16()).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken
    }
}

/// Writes what a [`Reader`] reads back.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The input written so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// Two bytes.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Four bytes.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Eight bytes.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Raw bytes, no length (the counterpart of [`Reader::array`]).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }

    /// A byte string with its two-byte length.
    ///
    /// # Panics
    ///
    /// If `v` is longer than 65,535 bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).expect("a byte string of at most 65,535 bytes");
        self.u16(len).raw(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let mut w = Writer::default();
        w.u8(7)
            .u16(0x4001)
            .u32(600)
            .u64(u64::MAX - 1)
            .bytes(b"hello")
            .raw(&[1, 2]);
        let mut r = Reader::new(&w.out);
        assert_eq!(r.u8(), 7);
        assert_eq!(r.u16(), 0x4001);
        assert_eq!(r.u32(), 600);
        assert_eq!(r.u64(), u64::MAX - 1);
        assert_eq!(r.bytes(), b"hello");
        assert_eq!(r.array::<2>(), [1, 2]);
        assert!(r.is_empty());
        assert_eq!(
            (r.u8(), r.u32(), r.bytes()),
            (0, 0, &[][..]),
            "zeros past the end"
        );
    }

    #[test]
    fn a_length_past_the_end_takes_what_is_left() {
        let mut r = Reader::new(&[0xFF, 0xFF, 1, 2, 3]);
        assert_eq!(r.bytes(), [1, 2, 3]);
        assert!(r.is_empty());
    }
}
