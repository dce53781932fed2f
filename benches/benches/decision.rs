//! Side by side, in one run: the full warm decision, raw Cedar on the same prebuilt request, a
//! cold decision with a chain of depth 3 beside its floor (3 strict verifications + raw Cedar),
//! and the payments bundle padded to 1,000 policies over 100 tools. Prints the ratios at the end.

use std::str::FromStr;
use std::time::{Duration, Instant};

use aegis_benches::*;
use aegis_sod::{AuthorizationRequest, Bundle, Outcome};
use cedar_policy::{Authorizer, Entities, EntityUid};
use criterion::{black_box, Criterion};
use serde_json::json;

fn args() -> serde_json::Value {
    json!({"amount": 1200, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"})
}

fn request(chain: Vec<String>) -> AuthorizationRequest {
    AuthorizationRequest::new(chain, "stripe.create_payment", args())
}

fn main() {
    let mut c =
        Criterion::default().configure_from_args().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let small_bundle = Bundle::from_sources(&payments_sources()).unwrap();
    let small_index = small_bundle.enforced_policies().clone();
    let small = engine(small_bundle);
    let padded_bundle = Bundle::from_sources(&padded_sources(100, 1000)).unwrap();
    let padded_policies = padded_bundle
        .enforced_policies()
        .for_action(&EntityUid::from_str(r#"Action::"tool_000.run""#).unwrap())
        .policies()
        .count();
    let padded = engine(padded_bundle);
    let warm = request(chain(2, 0));
    assert_eq!(small.authorize(&warm).unwrap().outcome, Outcome::Allow);
    assert_eq!(padded.authorize(&warm).unwrap().outcome, Outcome::Allow);
    let (policies, cedar_request) = raw_cedar();
    let authorizer = Authorizer::new();
    let entities = Entities::empty();
    assert_eq!(authorizer.is_authorized(&cedar_request, &policies, &entities).decision(), cedar_policy::Decision::Allow);

    // Set to skip criterion's runs and print only the paired ratios.
    let paired_only = std::env::var_os("AEGIS_BENCH_PAIRED_ONLY").is_some();
    // The cold floor: ed25519-dalek's `verify_strict` on a fresh depth-3 chain's own three
    // links, then raw Cedar on the prebuilt request.
    let minted = std::sync::atomic::AtomicUsize::new(1);
    if !paired_only {
        let mut group = c.benchmark_group("decision");
        group.bench_function("raw_cedar_is_authorized", |b| {
            b.iter(|| authorizer.is_authorized(black_box(&cedar_request), &policies, &entities))
        });
        group.bench_function("aegis_warm", |b| b.iter(|| small.authorize(black_box(&warm)).unwrap()));
        group.bench_function("aegis_warm_1000_policies", |b| b.iter(|| padded.authorize(black_box(&warm)).unwrap()));

        // Cold: every iteration presents a chain never seen before (root + 2 delegations).
        group.bench_function("floor_3_verify_strict_plus_raw_cedar", |b| {
            b.iter_custom(|iters| {
                // The links of chains never seen before, as the cold decision gets them: a
                // floor that re-verified one chain would run on warm caches and trained
                // branch predictors.
                let first = minted.fetch_add(iters as usize, std::sync::atomic::Ordering::Relaxed);
                let fresh: Vec<_> = (first..first + iters as usize).map(|n| chain_signatures(&chain(3, n))).collect();
                let start = Instant::now();
                for links in &fresh {
                    for (key, message, signature) in links {
                        black_box(key.verify_strict(black_box(message), signature).is_ok());
                    }
                    black_box(authorizer.is_authorized(black_box(&cedar_request), &policies, &entities));
                }
                start.elapsed()
            })
        });
        group.bench_function("aegis_cold_depth_3", |b| {
            b.iter_custom(|iters| {
                // Unique chains across every sample: none can be in the cache.
                let first = minted.fetch_add(iters as usize, std::sync::atomic::Ordering::Relaxed);
                let fresh: Vec<AuthorizationRequest> = (first..first + iters as usize).map(|n| request(chain(3, n))).collect();
                let start = Instant::now();
                for r in &fresh {
                    black_box(small.authorize(r).unwrap());
                }
                start.elapsed()
            })
        });
        group.finish();
    }
    if !paired_only {
        c.final_summary();
        print_ratios(padded_policies);
    }

    // The same comparisons as paired ratios: both sides in alternating batches.
    // How much of the warm decision is Aegis's own pipeline: the same call's policy evaluation
    // alone (the engine's evaluator on the tool's policies, over the prebuilt request).
    let pipeline_ratio = paired_ratio(
        301,
        200,
        |_| drop(black_box(small_index.evaluate(&cedar_request, &entities))),
        |_| drop(black_box(small.authorize(&warm).unwrap())),
    );
    let warm_ratio = paired_ratio(
        301,
        200,
        |_| drop(black_box(authorizer.is_authorized(&cedar_request, &policies, &entities))),
        |_| drop(black_box(small.authorize(&warm).unwrap())),
    );
    let first = minted.fetch_add(1_000_000, std::sync::atomic::Ordering::Relaxed);
    let fresh: Vec<AuthorizationRequest> = (0..301 * 10).map(|i| request(chain(3, first + i))).collect();
    // Each round's floor verifies the links of the chains its cold side decides on.
    let fresh_links: Vec<_> = fresh.iter().map(|r| chain_signatures(&r.chain)).collect();
    let cold_ratio = paired_ratio(
        301,
        10,
        |i| {
            for (key, message, signature) in &fresh_links[i] {
                black_box(key.verify_strict(message, signature).is_ok());
            }
            black_box(authorizer.is_authorized(&cedar_request, &policies, &entities));
        },
        |i| drop(black_box(small.authorize(&fresh[i]).unwrap())),
    );
    let padded_ratio = paired_ratio(
        301,
        200,
        |_| drop(black_box(small.authorize(&warm).unwrap())),
        |_| drop(black_box(padded.authorize(&warm).unwrap())),
    );
    // An agent with a role on a schema that groups its actions: its request entities (the
    // action entities, itself and its roles) are kept per bundle rather than built per call.
    // Both root agents are denied by the same segregation-of-duties forbids (a root agent is
    // the task's initiator).
    let grouped = engine(Bundle::from_sources(&grouped_sources(200, 1000)).unwrap());
    let without_role = request(root_with_roles("grouped-0", "treasury-bot", &[], 0));
    let with_role = request(root_with_roles("grouped-1", "treasury-bot", &["finance-approver"], 1));
    let (a, b) = (grouped.authorize(&without_role).unwrap(), grouped.authorize(&with_role).unwrap());
    assert_eq!((a.outcome, a.codes()), (b.outcome, b.codes()));
    let roles_ratio = paired_ratio(
        301,
        200,
        |_| drop(black_box(grouped.authorize(&without_role).unwrap())),
        |_| drop(black_box(grouped.authorize(&with_role).unwrap())),
    );
    println!("\nPaired wall-clock ratios (median of 301 rounds of alternating batches):");
    println!("  warm decision / raw Cedar                       {warm_ratio}   (goal <= 0.75x)");
    println!("  cold decision, depth 3 / (3 verify + raw Cedar) {cold_ratio}   (target <= 1.05x)");
    println!("  1,000-policy bundle / small bundle              {padded_ratio}   (target <= 1.2x)");
    println!("  warm decision / its policy evaluation alone     {pipeline_ratio}   (the pipeline around Cedar; goal <= 1.15x)");
    println!("  with a role, 200 grouped actions / without      {roles_ratio}   (target <= 1.1x)");
}

fn mean_ns(name: &str) -> Option<f64> {
    let path = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"))
        .join("criterion/decision")
        .join(name)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn print_ratios(padded_per_action: usize) {
    let get = |n| mean_ns(n).unwrap_or(f64::NAN);
    let (raw, warm, padded, floor, cold) = (
        get("raw_cedar_is_authorized"),
        get("aegis_warm"),
        get("aegis_warm_1000_policies"),
        get("floor_3_verify_strict_plus_raw_cedar"),
        get("aegis_cold_depth_3"),
    );
    println!("\nAegis decision cost, as ratios (this machine):");
    println!("  raw Cedar is_authorized             {:>9.2} µs", raw / 1e3);
    println!("  warm decision (chain cached)        {:>9.2} µs  = {:.2}x raw Cedar   (target <= 1.25x)", warm / 1e3, warm / raw);
    println!("  3x verify_strict + raw Cedar        {:>9.2} µs", floor / 1e3);
    println!(
        "  cold decision, chain depth 3        {:>9.2} µs  = {:.2}x that floor  (target <= 1.05x)",
        cold / 1e3,
        cold / floor
    );
    println!("  warm decision, 1,000-policy bundle  {:>9.2} µs  = {:.2}x small bundle (target <= 1.2x; {padded_per_action} policies apply to a padded tool)", padded / 1e3, padded / warm);
}
