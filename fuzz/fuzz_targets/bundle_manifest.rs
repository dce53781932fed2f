//! Bundle loading: the fuzzer's text as the manifest (YAML), as a policy file and as the
//! schema, beside the payments bundle's other files. Loading fails with `invalid_bundle` or
//! succeeds; it never panics.
#![no_main]

use aegis_sod::{Bundle, BundleSources, ErrorCode};
use libfuzzer_sys::fuzz_target;

/// The payments bundle as the engine reads it (its SoD matrix compiled), read once.
static BASE: std::sync::LazyLock<BundleSources> = std::sync::LazyLock::new(|| {
    BundleSources::read_dir(format!("{}/../policies/payments", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The SoD matrix compiler: any text compiles or is refused with a code, never panics.
    let _ = aegis_sod::compile_matrix(text);
    let base = BASE.clone();
    let variants = [
        BundleSources { manifest: text.to_owned(), ..base.clone() },
        BundleSources { schema: text.to_owned(), ..base.clone() },
        {
            let mut b = base.clone();
            b.policies.push(("fuzz.cedar".into(), text.to_owned()));
            b
        },
    ];
    for sources in variants {
        if let Err(e) = Bundle::from_sources(&sources) {
            assert_eq!(e.code(), ErrorCode::InvalidBundle, "{e:?}");
        }
    }
});
