//! Warm decisions per second on one and two threads (each in its own task), alternating five
//! times: `target/.../examples/threads_profile`.

use std::time::{Duration, Instant};

use aegis_benches::*;
use aegis_sod::{AuthorizationRequest, Bundle};
use serde_json::json;

fn main() {
    let engine = engine(Bundle::from_sources(&payments_sources()).unwrap());
    let requests: Vec<AuthorizationRequest> = (0..2)
        .map(|t| {
            AuthorizationRequest::new(
                chain_in_task(&format!("threads-{t}"), 2, t),
                "stripe.create_payment",
                json!({"amount": 1200, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}),
            )
        })
        .collect();
    let rate = |threads: usize| {
        let start = Instant::now();
        let done: usize = std::thread::scope(|s| {
            let workers: Vec<_> = requests[..threads]
                .iter()
                .map(|r| {
                    let engine = &engine;
                    s.spawn(move || {
                        let mut n = 0;
                        while start.elapsed() < Duration::from_millis(700) {
                            for _ in 0..100 {
                                std::hint::black_box(engine.authorize(r).unwrap());
                            }
                            n += 100;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        done as f64 / start.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    for _ in 0..5 {
        let (one, two) = (rate(1), rate(2));
        ratios.push(two / one);
        println!("1 thread {one:.0}/s, 2 threads {two:.0}/s: {:.2}x", two / one);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median 2 threads / 1 thread: {:.2}x", ratios[2]);
}
