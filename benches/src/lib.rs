//! Fixtures shared by the benchmarks: keys, chains, the payments bundle and a padded variant.

use std::path::PathBuf;

use aegis_core::{delegate, issue_root, Bundle, BundleSources, CredentialSpec, Engine, KeyPair, SystemClock, Clock};

/// The issuer name the fixtures trust.
pub const ISSUER: &str = "https://issuer.bench.example";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The payments bundle's sources.
pub fn payments_sources() -> BundleSources {
    let dir = repo_root().join("policies/payments");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    BundleSources {
        manifest: read("manifest.yaml"),
        schema: read("payments.cedarschema"),
        schema_file: "payments.cedarschema".into(),
        policies: ["approvals.cedar", "permits.cedar", "segregation.cedar", "limits.cedar"].iter().map(|f| ((*f).to_owned(), read(f))).collect(),
    }
}

/// The payments bundle padded to `policies` policies spread over `tools` extra tools.
pub fn padded_sources(tools: usize, policies: usize) -> BundleSources {
    let mut sources = payments_sources();
    let base = sources.policies.iter().map(|(_, s)| s.matches("@id(").count()).sum::<usize>();
    let per_tool = (policies.saturating_sub(base)).div_ceil(tools);
    let mut schema = sources.schema.clone();
    let mut extra = String::new();
    for t in 0..tools {
        schema.push_str(&format!(
            "action \"tool_{t:03}.run\" appliesTo {{ principal: [Agent], resource: [Tool], context: {{ \
             args: {{ amount: Long, target: String }}, agent_id: String, parent_agent_id?: String, initiator: String, \
             lineage: Set<String>, depth: Long, task_id: String, intent: String, now: Long, predicates: {{}}, \
             task: TaskDuties, break_glass: Bool }} }};\n"
        ));
        for p in 0..per_tool {
            let effect = if p % 2 == 0 { "permit" } else { "forbid" };
            extra.push_str(&format!(
                "@id(\"tool_{t:03}-{p}\")\n{effect} (principal, action == Action::\"tool_{t:03}.run\", resource) \
                 when {{ context.args.amount > {} && context.args.target != \"t{p}\" }};\n",
                p * 100
            ));
        }
    }
    sources.schema = schema;
    sources.policies.push(("padding.cedar".into(), extra));
    sources
}

/// Keys by seed: 1 issuer, 2 planner, 3 finance, 4.. sub-agents.
pub fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32]).unwrap_or_else(|_| unreachable!())
}

/// An engine on `bundle` trusting the bench issuer.
pub fn engine(bundle: Bundle) -> Engine {
    Engine::builder()
        .bundle(bundle)
        .trust_issuer(ISSUER, key(1).public_key().clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn spec(agent: &str, k: &KeyPair, jti: &str) -> CredentialSpec {
    let now = SystemClock.now_secs();
    CredentialSpec {
        agent_id: agent.into(),
        agent_key: k.public_key().clone(),
        audience: aegis_core::DEFAULT_AUDIENCE.into(),
        task_id: "bench-task".into(),
        intent: "benchmark".into(),
        scope: vec!["stripe.create_payment".into()],
        issued_at: now - 10,
        expires_at: now + 3000,
        jti: jti.into(),
    }
}

/// A chain of `links` credentials (root first) ending at a finance agent; `n` makes it unique.
pub fn chain(links: usize, n: usize) -> Vec<String> {
    let issuer = key(1);
    let mut parent_key = key(2);
    let root = issue_root(ISSUER, &issuer, spec("planner", &parent_key, &format!("root-{n}"))).unwrap_or_default();
    let mut out = vec![root];
    for depth in 1..links {
        let k = key(2 + depth as u8);
        let agent = if depth == links - 1 { "finance-agent".to_owned() } else { format!("coordinator-{depth}") };
        let next = delegate(&out[depth - 1], &parent_key, spec(&agent, &k, &format!("link-{n}-{depth}"))).unwrap_or_default();
        out.push(next);
        parent_key = k;
    }
    out
}
