//! Fixtures shared by the benchmarks: keys, chains, the payments bundle and a padded variant.

use std::path::PathBuf;

use std::str::FromStr;

use cedar_policy::{Context, EntityUid, PolicySet, Request, RestrictedExpression};

use aegis_sod::{delegate, issue_root, Bundle, BundleSources, Clock, CredentialSpec, Engine, KeyPair, SystemClock};

/// The issuer name the fixtures trust.
pub const ISSUER: &str = "https://issuer.bench.example";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The payments bundle's sources, without its budget: the warm benchmark repeats one call in one
/// task hundreds of thousands of times, which a per-task budget would (rightly) stop after four.
pub fn payments_sources() -> BundleSources {
    let mut sources = payments_sources_as_shipped();
    // Batches lift the budget: they go with it.
    for section in ["budgets", "batches"] {
        sources.manifest = without_section(&sources.manifest, section);
    }
    sources
}

/// `manifest` without its top-level section `name` (the line `name:` and the indented or
/// comment lines under it).
fn without_section(manifest: &str, name: &str) -> String {
    let mut out = String::with_capacity(manifest.len());
    let mut skipping = false;
    for line in manifest.lines() {
        let top_level = !line.is_empty() && !line.starts_with([' ', '\t', '#', '-']);
        if top_level {
            skipping = line.strip_prefix(name).is_some_and(|rest| rest.starts_with(':'));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The payments bundle's sources, as shipped.
pub fn payments_sources_as_shipped() -> BundleSources {
    // The bundle's files as the engine reads them (its SoD matrix compiled).
    BundleSources::read_dir(repo_root().join("policies/payments")).unwrap_or_default()
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

/// [`padded_sources`] with every padding tool's action in one of ten action groups
/// (`group_0` .. `group_9`): a schema that groups its actions, so every request is evaluated
/// with the action entities.
pub fn grouped_sources(tools: usize, policies: usize) -> BundleSources {
    let mut sources = padded_sources(tools, policies);
    for t in 0..tools {
        sources.schema = sources.schema.replace(
            &format!("action \"tool_{t:03}.run\" appliesTo"),
            &format!("action \"tool_{t:03}.run\" in [\"group_{}\"] appliesTo", t % 10),
        );
    }
    sources.schema.extend((0..10).map(|g| format!("action \"group_{g}\";\n")));
    sources
}

/// A chain of one link: a root agent `agent` in `task` whose issuer attests `roles` (roles are
/// attested on root credentials only); `n` makes it unique.
pub fn root_with_roles(task: &str, agent: &str, roles: &[&str], n: usize) -> Vec<String> {
    let now = SystemClock.now_secs();
    let mut spec = spec(task, agent, &key(2), &format!("root-roles-{n}"), now);
    spec.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    vec![issue_root(ISSUER, &key(1), spec).unwrap_or_else(|e| panic!("root credential: {e}"))]
}

/// Keys by seed: 1 issuer, 2 planner, 3 finance, 4.. sub-agents.
pub fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32]).unwrap_or_else(|_| unreachable!())
}

/// An engine on `bundle` trusting the bench issuer.
pub fn engine(bundle: Bundle) -> Engine {
    Engine::builder().bundle(bundle).trust_issuer(ISSUER, key(1).public_key().clone()).build().unwrap_or_else(|e| panic!("{e}"))
}

fn spec(task: &str, agent: &str, k: &KeyPair, jti: &str, now: i64) -> CredentialSpec {
    CredentialSpec {
        agent_id: agent.into(),
        agent_key: k.public_key().clone(),
        audience: aegis_sod::DEFAULT_AUDIENCE.into(),
        task_id: task.into(),
        intent: "benchmark".into(),
        scope: vec!["stripe.create_payment".into()],
        issued_at: now - 10,
        expires_at: now + 3000,
        jti: jti.into(),
        roles: Vec::new(),
    }
}

/// A chain of `links` credentials (root first) ending at a finance agent; `n` makes it unique.
pub fn chain(links: usize, n: usize) -> Vec<String> {
    chain_in_task("bench-task", links, n)
}

/// [`chain`] in task `task` (concurrent benchmarks give each thread its own task, as agents
/// running different tasks would be).
pub fn chain_in_task(task: &str, links: usize, n: usize) -> Vec<String> {
    // One instant for every link: a child stamped a second later than its parent would
    // outlive it, and delegation would (rightly) refuse it.
    let now = SystemClock.now_secs();
    let issuer = key(1);
    let mut parent_key = key(2);
    let root = issue_root(ISSUER, &issuer, spec(task, "planner", &parent_key, &format!("root-{n}"), now))
        .unwrap_or_else(|e| panic!("root credential: {e}"));
    let mut out = vec![root];
    for depth in 1..links {
        let k = key(2 + depth as u8);
        let agent = if depth == links - 1 { "finance-agent".to_owned() } else { format!("coordinator-{depth}") };
        let next = delegate(&out[depth - 1], &parent_key, spec(task, &agent, &k, &format!("link-{n}-{depth}"), now))
            .unwrap_or_else(|e| panic!("delegation: {e}"));
        out.push(next);
        parent_key = k;
    }
    out
}

/// The Cedar request the engine builds for the warm case, built once, by hand.
pub fn raw_cedar() -> (PolicySet, Request) {
    let src: String = payments_sources().policies.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join("\n");
    let mut policies = PolicySet::from_str(&src).unwrap_or_else(|e| panic!("{e}"));
    // The shadow policy is not enforced by Aegis; leave it out of the comparison.
    let shadow: Vec<_> = policies.policies().filter(|p| p.annotation("shadow").is_some()).map(|p| p.id().clone()).collect();
    for id in shadow {
        policies.remove_static(id).unwrap_or_else(|e| panic!("{e}"));
    }
    let s = |v: &str| RestrictedExpression::new_string(v.into());
    let context = Context::from_pairs([
        (
            "args".to_owned(),
            RestrictedExpression::new_record([
                ("amount".to_owned(), RestrictedExpression::new_long(1200)),
                ("currency".to_owned(), s("eur")),
                ("destination".to_owned(), s("acct_1032D82eZvKYlo2C")),
            ])
            .unwrap_or_else(|e| panic!("{e}")),
        ),
        ("agent_id".to_owned(), s("finance-agent")),
        ("parent_agent_id".to_owned(), s("planner")),
        ("initiator".to_owned(), s("planner")),
        ("lineage".to_owned(), RestrictedExpression::new_set([s("planner")])),
        ("depth".to_owned(), RestrictedExpression::new_long(1)),
        ("task_id".to_owned(), s("bench-task")),
        ("intent".to_owned(), s("benchmark")),
        ("now".to_owned(), RestrictedExpression::new_long(1_767_225_600)),
        (
            "predicates".to_owned(),
            RestrictedExpression::new_record([("destination_account_valid".to_owned(), RestrictedExpression::new_bool(true))])
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        (
            "task".to_owned(),
            RestrictedExpression::new_record([
                ("duties_by_agent".to_owned(), RestrictedExpression::new_set([s("stripe.create_payment")])),
                ("duties_by_lineage".to_owned(), RestrictedExpression::new_set([s("stripe.create_payment")])),
                ("performed".to_owned(), RestrictedExpression::new_set([s("stripe.create_payment")])),
                ("actors".to_owned(), RestrictedExpression::new_set([s("finance-agent")])),
            ])
            .unwrap_or_else(|e| panic!("{e}")),
        ),
        ("break_glass".to_owned(), RestrictedExpression::new_bool(false)),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let uid = |s: &str| EntityUid::from_str(s).unwrap_or_else(|e| panic!("{e}"));
    let request = Request::new(
        uid(r#"Agent::"finance-agent""#),
        uid(r#"Action::"stripe.create_payment""#),
        uid(r#"Tool::"stripe.create_payment""#),
        context,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (policies, request)
}

/// The floor of a cold decision on `chain`: each link's own signature checked by
/// ed25519-dalek's `verify_strict` under the key that signed it (issuer, then each parent), on
/// the link's real signing input.
pub fn chain_signatures(chain: &[String]) -> Vec<(ed25519_dalek::VerifyingKey, Vec<u8>, ed25519_dalek::Signature)> {
    chain
        .iter()
        .enumerate()
        .map(|(depth, token)| {
            let (input, sig) = token.rsplit_once('.').unwrap_or_else(|| panic!("token has no signature"));
            let signer = if depth == 0 { key(1) } else { key(1 + depth as u8) };
            let key = ed25519_dalek::VerifyingKey::from_bytes(signer.public_key().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let sig = aegis_sod::testing::b64_decode(sig).unwrap_or_else(|e| panic!("{e}"));
            let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap_or_else(|e| panic!("{e}"));
            assert!(key.verify_strict(input.as_bytes(), &sig).is_ok(), "fixture link {depth} must verify");
            (key, input.as_bytes().to_vec(), sig)
        })
        .collect()
}

/// Wall-clock ratio of `measured` to `baseline`, robust to a host whose speed drifts: the two
/// run in alternating batches of `batch` calls, each round yields one ratio, and the median
/// (with the quartiles) over `rounds` rounds is reported. Criterion's separate runs of each
/// side seconds apart do not cancel drift; adjacent batches do.
pub fn paired_ratio(
    rounds: usize,
    batch: usize,
    mut baseline: impl FnMut(usize),
    mut measured: impl FnMut(usize),
) -> PairedRatio {
    let mut ratios = Vec::with_capacity(rounds);
    let mut call = 0;
    for round in 0..rounds {
        let time = |f: &mut dyn FnMut(usize), call: usize| {
            let start = std::time::Instant::now();
            for i in 0..batch {
                f(call + i);
            }
            start.elapsed().as_secs_f64()
        };
        // Alternate which side goes first, so neither always runs on a warmer cache.
        let (b, m) = if round % 2 == 0 {
            let b = time(&mut baseline, call);
            (b, time(&mut measured, call))
        } else {
            let m = time(&mut measured, call);
            (time(&mut baseline, call), m)
        };
        call += batch;
        ratios.push(m / b);
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    PairedRatio { median: at(0.5), lower_quartile: at(0.25), upper_quartile: at(0.75) }
}

/// The result of [`paired_ratio`].
#[derive(Debug, Clone, Copy)]
pub struct PairedRatio {
    /// The median of the per-round ratios.
    pub median: f64,
    /// The 25th percentile.
    pub lower_quartile: f64,
    /// The 75th percentile.
    pub upper_quartile: f64,
}

impl std::fmt::Display for PairedRatio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}x (quartiles {:.3}-{:.3})", self.median, self.lower_quartile, self.upper_quartile)
    }
}
