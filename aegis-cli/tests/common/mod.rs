//! Helpers the CLI's integration tests share: headless Chromium and the figures of a page.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("headless Chromium is needed for the report page test: `apt-get install chromium` (CI installs it)");
}

/// Runs headless Chromium with the flags this machine needs (no sandbox as root, no network
/// chatter) on a fresh profile.
pub fn headless(profile: &Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.args(args).output().unwrap()
}

/// Every `data-figure="NAME">VALUE<` in the DOM.
pub fn figures(dom: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for part in dom.split("data-figure=\"").skip(1) {
        let (name, rest) = part.split_once('"').unwrap();
        let value = rest.split_once('>').unwrap().1.split('<').next().unwrap();
        out.insert(name.replace("&amp;", "&"), value.replace("&amp;", "&"));
    }
    out
}
