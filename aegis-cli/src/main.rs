//! `aegis`: validate bundles, manage keys and credentials, authorize calls, run the demo.

mod args;
mod authorize;
mod demo;
mod exec;
mod keys;
mod policy;
mod token;

use std::process::ExitCode;

const USAGE: &str = "usage:
  aegis demo [--bundle DIR]
  aegis policy validate <bundle-dir>
  aegis keys generate [--seed HEX64] [--public]
  aegis token issue --issuer NAME --key ISSUER.jwk --agent ID --agent-key AGENT.jwk \\
                    --task ID --intent TEXT --scope a,b [--ttl SECS] [--audience AUD]
  aegis token delegate --parent TOKEN --key PARENT.jwk --agent ID --agent-key AGENT.jwk \\
                    --scope a,b [--ttl SECS]
  aegis token inspect <token>
  aegis authorize --bundle DIR --trust NAME=ISSUER.jwk --request REQUEST.json
  aegis exec JOB.json        (a batch of engine operations on a shared store; see exec.rs)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["demo", rest @ ..] => demo::run(rest),
        ["policy", "validate", rest @ ..] => policy::validate(rest),
        ["keys", "generate", rest @ ..] => keys::generate(rest),
        ["token", "issue", rest @ ..] => token::issue(rest),
        ["token", "delegate", rest @ ..] => token::delegate(rest),
        ["token", "inspect", rest @ ..] => token::inspect(rest),
        ["authorize", rest @ ..] => authorize::run(rest),
        ["exec", rest @ ..] => exec::run(rest),
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
