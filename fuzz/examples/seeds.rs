//! Writes the seed corpora into `corpus/<target>/` (the files `tests/corpus.rs` checks):
//! `cargo run --example seeds` from `fuzz/`. Existing seeds of the same name are overwritten;
//! other files are left alone.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = libnfq_fuzz::seeds::all();
    for (target, name, input) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), input)?;
    }
    println!("{} seeds written under {}", seeds.len(), root.display());
    Ok(())
}
