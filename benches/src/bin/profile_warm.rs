//! Runs the warm decision in a loop for profiling (`perf record`): `profile_warm [seconds]`.

use std::time::{Duration, Instant};

use aegis_benches::*;
use aegis_sod::{AuthorizationRequest, Bundle};
use serde_json::json;

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    // `profile_warm 0 N`: exactly N decisions (for instruction counts under callgrind).
    let fixed: Option<u64> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let sources = payments_sources();
    let engine = engine(Bundle::from_sources(&sources).unwrap_or_else(|e| panic!("{e}")));
    let args = json!({"amount": 1200, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"});
    let request = AuthorizationRequest::new(chain(2, 0), "stripe.create_payment", args.clone());
    if std::env::var_os("RAW").is_some() {
        let (policies, request) = raw_cedar();
        let (authorizer, entities) = (cedar_policy::Authorizer::new(), cedar_policy::Entities::empty());
        for _ in 0..fixed.unwrap_or(100_000) {
            std::hint::black_box(authorizer.is_authorized(&request, &policies, &entities));
        }
        return;
    }
    if std::env::var_os("FLOOR").is_some() {
        // The cold decision's floor: the chain's 3 strict verifications plus raw Cedar.
        let (policies, request) = raw_cedar();
        let (authorizer, entities) = (cedar_policy::Authorizer::new(), cedar_policy::Entities::empty());
        let links = chain_signatures(&chain(3, 1));
        for _ in 0..fixed.unwrap_or(100) {
            for (key, message, signature) in &links {
                std::hint::black_box(key.verify_strict(message, signature).is_ok());
            }
            std::hint::black_box(authorizer.is_authorized(&request, &policies, &entities));
        }
        return;
    }
    if std::env::var_os("COLD").is_some() {
        let n = fixed.unwrap_or(100) as usize;
        let fresh: Vec<AuthorizationRequest> =
            (1..=n).map(|i| AuthorizationRequest::new(chain(3, i), "stripe.create_payment", args.clone())).collect();
        if std::env::var_os("SKIP").is_none() {
            for r in &fresh {
                std::hint::black_box(engine.authorize(r).unwrap_or_else(|e| panic!("{e}")));
            }
        }
        return;
    }
    if let Some(n) = fixed {
        // Warm the caches first, also for n = 0, so the difference of two runs is warm calls only.
        std::hint::black_box(engine.authorize(&request).unwrap_or_else(|e| panic!("{e}")));
        for _ in 0..n {
            std::hint::black_box(engine.authorize(&request).unwrap_or_else(|e| panic!("{e}")));
        }
        return;
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    let start = Instant::now();
    while Instant::now() < end {
        for _ in 0..1000 {
            std::hint::black_box(engine.authorize(&request).unwrap_or_else(|e| panic!("{e}")));
        }
        n += 1000;
    }
    println!("{n} decisions, {:.2} µs each", start.elapsed().as_secs_f64() * 1e6 / n as f64);
}
