//! A loop of warm decisions for a profiler: `perf record target/.../examples/warm_profile`.

use aegis_benches::*;
use aegis_sod::{AuthorizationRequest, Bundle};
use serde_json::json;

fn main() {
    let engine = engine(Bundle::from_sources(&payments_sources()).unwrap());
    let request = AuthorizationRequest::new(
        chain(2, 0),
        "stripe.create_payment",
        json!({"amount": 1200, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}),
    );
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(engine.authorize(&request).unwrap());
    }
    println!("{:.2} µs per decision", start.elapsed().as_secs_f64() * 1e6 / n as f64);
}
