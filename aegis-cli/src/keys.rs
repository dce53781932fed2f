//! `aegis keys generate`.

use aegis_core::ffi;

use crate::args::{show, Args};

pub fn generate(words: &[&str]) -> Result<(), String> {
    let args = Args::parse(words, &["public"])?;
    let private = ffi::generate_key_json(args.get("seed")).map_err(show)?;
    let out = if args.has("public") { ffi::public_jwk_json(&private).map_err(show)? } else { private };
    println!("{out}");
    Ok(())
}
