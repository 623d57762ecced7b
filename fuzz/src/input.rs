//! Decoding fuzz input into values ([`Input`]) and encoding values into seed inputs
//! ([`Output`]): the two are exact mirrors.

/// A reader over the fuzz input. Reads past the end give zeros (or fewer bytes), so every input
/// decodes to something.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// A byte string preceded by its `u8` length.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    /// A byte string preceded by its `u16` length.
    pub fn long_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }

    /// An offset into something `len` bytes long: mostly inside (`0..=len`), sometimes raw
    /// (high bit set: the low 15 bits as they are, often outside).
    pub fn offset(&mut self, len: usize) -> usize {
        let v = self.u16();
        if v & 0x8000 != 0 {
            usize::from(v & 0x7fff)
        } else {
            usize::from(v) % (len + 1)
        }
    }
}

/// Writes what [`Input`] reads.
#[derive(Default)]
pub struct Output(pub Vec<u8>);

impl Output {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    pub fn short_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u8(u8::try_from(b.len()).expect("at most 255 bytes"));
        self.bytes(b)
    }

    pub fn long_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u16(u16::try_from(b.len()).expect("at most 65535 bytes"));
        self.bytes(b)
    }

    /// An offset that [`Input::offset`] decodes to `v` (`v` at most 0x7fff).
    pub fn offset(&mut self, v: usize) -> &mut Self {
        self.u16(0x8000 | u16::try_from(v).expect("offset below 0x8000"))
    }
}
