//! The fuzz targets' logic, as plain functions of the input bytes, so that the libFuzzer
//! targets (`fuzz_targets/`), the corpus replay test (`tests/corpus.rs`, stable toolchain) and
//! the seed generator (`examples/seeds.rs`) share it.
//!
//! Each target decodes its input with [`input::Input`], which never fails (missing bytes read
//! as zeros), and the seed generator encodes with [`input::Output`], its mirror image.

pub mod checksum;
pub mod dispatch;
pub mod edits;
pub mod input;
pub mod packets;
pub mod seeds;
pub mod views;

/// `true` when `inner` lies inside `outer` (an empty `inner` anywhere from its start to its
/// end counts as inside).
pub fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}
