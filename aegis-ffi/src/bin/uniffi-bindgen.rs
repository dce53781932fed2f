//! uniffi's bindings generator, built with this crate's version of uniffi: run in `--library`
//! mode on the built `libaegis_ffi` to write the Kotlin and Swift bindings.

fn main() {
    uniffi::uniffi_bindgen_main()
}
