//! Bundle loading: the fuzzer's text as the manifest (YAML), as a policy file and as the
//! schema, beside the payments bundle's other files. Loading fails with `invalid_bundle` or
//! succeeds; it never panics.
#![no_main]

use aegis_sod::{Bundle, BundleSources, ErrorCode};
use libfuzzer_sys::fuzz_target;

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{}/../policies/payments/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policies: Vec<(String, String)> =
        ["approvals.cedar", "limits.cedar", "permits.cedar", "segregation.cedar"].iter().map(|f| ((*f).to_owned(), read(f))).collect();
    let base = BundleSources {
        manifest: read("manifest.yaml"),
        schema: read("payments.cedarschema"),
        schema_file: "payments.cedarschema".into(),
        policies,
    };
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
