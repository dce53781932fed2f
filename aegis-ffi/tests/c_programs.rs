//! Real C programs against the committed header and the built library: the shared vectors
//! (also under valgrind's memcheck), API misuse from C, and the payments example.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The directory holding `libaegis_ffi.so`: this test binary lives in its `deps/`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libaegis_ffi.so").is_file(),
        "libaegis_ffi.so not found in {}: build it first with `cargo build -p aegis-ffi` (scripts/test-all does)",
        dir.display()
    );
    dir
}

/// Compiles a C program strictly against the header and the shared library.
fn compile(source: &Path, name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("aegis-c-{name}-{}", std::process::id()));
    let lib = lib_dir();
    let status = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg(format!("-I{}", repo_root().join("aegis-ffi/include").display()))
        .arg(source)
        .arg(format!("-L{}", lib.display()))
        .arg("-laegis_ffi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("gcc is required to test the C API");
    assert!(status.success(), "gcc failed on {}", source.display());
    out
}

fn run(program: &Path, under_valgrind: bool) -> (bool, String, String) {
    let root = repo_root();
    let output = if under_valgrind {
        Command::new("valgrind")
            .args(["--quiet", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect"])
            .args(["--show-leak-kinds=definite,indirect"])
            .arg(program)
            .arg(&root)
            .output()
            .expect("valgrind is required to check the C API for memory errors")
    } else {
        Command::new(program).arg(&root).output().unwrap()
    };
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn c_program_runs_the_shared_vectors_clean_under_memcheck() {
    let program = compile(&repo_root().join("aegis-ffi/c/vectors.c"), "vectors");
    let (ok, out, err) = run(&program, true);
    assert!(ok, "vectors under valgrind failed:\n{out}\n{err}");
    let line = out.lines().last().unwrap_or_default();
    let passed: usize = line.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 30 && line.ends_with(" passed, 0 failed"), "{line}");
    assert!(!err.contains("Invalid read") && !err.contains("definitely lost"), "{err}");
}

#[test]
fn bad_input_from_c_gets_a_status_never_a_crash() {
    let program = compile(&repo_root().join("aegis-ffi/c/misuse.c"), "misuse");
    let (ok, out, err) = run(&program, true);
    assert!(ok && out.contains("misuse: ok"), "{out}\n{err}");
}

#[test]
fn c_payments_example_builds_and_runs() {
    let program = compile(&repo_root().join("examples/c/payments.c"), "payments");
    let (ok, out, err) = run(&program, false);
    assert!(ok && out.contains("c payments story: ok"), "{out}\n{err}");
}
