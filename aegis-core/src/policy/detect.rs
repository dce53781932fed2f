//! Detectors: the `@detect` obligation. Where `@sanitize` names argument paths, a detector
//! finds sensitive text anywhere in the arguments (a card number in a free-text `memo`) and
//! replaces each match in its string. Only how many matches each detector found is reported,
//! never the matched text.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value as Json;

/// A kind of sensitive text a permit's `@detect` obligation redacts wherever it appears in the
/// arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Ord, PartialOrd)]
#[non_exhaustive]
pub enum Detector {
    /// `payment_card`: 13 to 19 digits, optionally grouped by single spaces or dashes, that pass
    /// the Luhn check.
    PaymentCard,
    /// `iban`: an ISO 13616 account number (country, check digits, 11 to 30 alphanumerics,
    /// optionally grouped by four), that passes the mod-97 check.
    Iban,
    /// `email`: an address `local@domain.tld`.
    Email,
    /// `secret`: common credential formats (AWS access key ids, Stripe, GitHub, Slack and
    /// OpenAI-style keys, PEM private key blocks, JWTs).
    Secret,
}

/// A detector name that is not one of [`Detector::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDetector(pub String);

impl fmt::Display for UnknownDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
        write!(f, "unknown detector `{}`; the detectors are {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownDetector {}

impl Detector {
    /// Every detector, in the order of their names in error messages.
    pub const ALL: [Detector; 4] = [Detector::PaymentCard, Detector::Iban, Detector::Email, Detector::Secret];

    /// Where overlapping detectors meet, the one applied first wins: a secret or an IBAN may
    /// hold a digit run that passes the Luhn check, and must be replaced whole, not in part.
    const APPLIED: [Detector; 4] = [Detector::Secret, Detector::Iban, Detector::PaymentCard, Detector::Email];

    /// The stable name: `payment_card`, `iban`, `email` or `secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentCard => "payment_card",
            Self::Iban => "iban",
            Self::Email => "email",
            Self::Secret => "secret",
        }
    }

    /// The text that replaces a match: `[REDACTED:<name>]`.
    pub fn replacement(self) -> &'static str {
        match self {
            Self::PaymentCard => "[REDACTED:payment_card]",
            Self::Iban => "[REDACTED:iban]",
            Self::Email => "[REDACTED:email]",
            Self::Secret => "[REDACTED:secret]",
        }
    }

    /// The compiled pattern, or `None` if it failed to compile (the patterns are constants and
    /// a unit test compiles each, so this does not happen; [`Detector::find`] fails closed).
    fn regex(self) -> Option<&'static Regex> {
        match self {
            Self::PaymentCard => DIGIT_RUN.as_ref(),
            Self::Iban => IBAN.as_ref(),
            Self::Email => EMAIL.as_ref(),
            Self::Secret => SECRET.as_ref(),
        }
    }

    /// The byte ranges of `text` this detector matches, in order and not overlapping.
    fn find(self, text: &str) -> Vec<Range<usize>> {
        let Some(regex) = self.regex() else {
            // Without its pattern the detector cannot tell what to keep: it redacts everything.
            return std::iter::once(0..text.len()).filter(|r| !r.is_empty()).collect();
        };
        match self {
            Self::PaymentCard => regex.find_iter(text).flat_map(|m| cards_in_run(text, m.range())).collect(),
            Self::Iban => regex.find_iter(text).filter_map(|m| iban_in(text, m.range())).collect(),
            Self::Email | Self::Secret => regex.find_iter(text).map(|m| m.range()).collect(),
        }
    }
}

impl FromStr for Detector {
    type Err = UnknownDetector;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|d| d.as_str() == name).ok_or_else(|| UnknownDetector(name.to_owned()))
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maximal runs of ASCII digits joined by single spaces or dashes. Greedy from the first digit,
/// so a run never starts or ends next to another digit; `[0-9]` rather than `\d`, which would
/// take other scripts' digits the Luhn check cannot read.
static DIGIT_RUN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"[0-9](?:[ -]?[0-9])*").ok());

/// A candidate IBAN: country, check digits, then groups of four (a space or a dash before each
/// allowed) and a shorter last group; the length and the mod-97 check are verified in code.
static IBAN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)(?-u:\b)[A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?(?-u:\b)").ok());

/// A pragmatic addr-spec: the characters addresses use in practice, a dotted domain and a
/// letters-only top-level domain.
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?-u:\b)").ok()
});

/// Secret formats, one alternative each. `\b` (ASCII) keeps a prefix inside a word (`task-...`,
/// `work_live_...`) from counting. A private key block without its end line is redacted to the
/// end of the text: a truncated key is still a key.
static SECRET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*)",
        r"|(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
        r#"|(?i:aws_secret_access_key|secret_access_key|aws_secret)["']?\s*[=:]\s*["']?[A-Za-z0-9/+]{40}(?-u:\b)"#,
        r"|(?-u:\b)(?:sk_live|sk_test|rk_live)_[0-9A-Za-z]{24,}",
        r"|(?-u:\b)(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}",
        r"|(?-u:\b)github_pat_[A-Za-z0-9_]{22,}",
        r"|(?-u:\b)xox[abprs]-[A-Za-z0-9-]{10,}",
        r"|(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r"|(?-u:\b)sk-[A-Za-z0-9_-]{20,}",
    ))
    .ok()
});

/// The card numbers in a run of digit groups: from each group, the longest span of whole groups
/// with 13 to 19 digits that passes the Luhn check. A run that is longer than any card (a card
/// followed by an expiry or a reference, `4242 4242 4242 4242 12`) still yields its card; a
/// contiguous digit string is one number and is never cut.
fn cards_in_run(text: &str, run: Range<usize>) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    // The groups of the run: byte ranges of consecutive digits.
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = run.start;
    for i in run.clone() {
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            groups.push(start..i);
            start = i + 1;
        }
    }
    groups.push(start..run.end);
    let mut found = Vec::new();
    let mut first = 0;
    while first < groups.len() {
        // The spans from `first` that hold 13 to 19 digits, longest last. Bounded by 19 digits
        // so that a long run (`1 2 3 4 ...`) costs linear time, not quadratic.
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        let mut spans = Vec::new();
        for (last, group) in groups.iter().enumerate().skip(first) {
            if digits.len() + group.len() > 19 {
                break;
            }
            digits.extend(bytes.get(group.clone()).unwrap_or_default().iter().map(|b| b - b'0'));
            if digits.len() >= 13 {
                spans.push((last, digits.len()));
            }
        }
        let card = spans.iter().rev().find(|(_, n)| luhn(digits.get(..*n).unwrap_or_default())).map(|(last, _)| *last);
        match card {
            Some(last) => {
                found.push(groups[first].start..groups[last].end);
                first = last + 1;
            }
            None => first += 1,
        }
    }
    found
}

/// The Luhn check over decimal digits.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match i % 2 {
                0 => d,
                _ if d * 2 > 9 => d * 2 - 9,
                _ => d * 2,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The IBAN in a candidate match: the longest prefix ending at a group boundary with 11 to 30
/// characters after the check digits that passes the mod-97 check (the pattern may have taken
/// a following word of four letters as one more group).
fn iban_in(text: &str, candidate: Range<usize>) -> Option<Range<usize>> {
    let slice = text.get(candidate.clone())?;
    let separator = |b: u8| b == b' ' || b == b'-';
    let ends = slice.bytes().enumerate().filter(|(_, b)| separator(*b)).map(|(i, _)| i).chain(std::iter::once(slice.len()));
    let mut ends: Vec<usize> = ends.collect();
    ends.reverse();
    ends.into_iter().find_map(|end| {
        let chars: Vec<u8> = slice.get(..end)?.bytes().filter(|b| !separator(*b)).map(|b| b.to_ascii_uppercase()).collect();
        ((15..=34).contains(&chars.len()) && mod97(&chars)).then(|| candidate.start..candidate.start + end)
    })
}

/// ISO 13616's check: the first four characters moved to the end, letters read as 10 to 35,
/// the number taken modulo 97 is 1.
fn mod97(chars: &[u8]) -> bool {
    let (head, tail) = chars.split_at(4.min(chars.len()));
    let mut rest = 0u32;
    for &c in tail.iter().chain(head) {
        let value = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        // Two digits at most per character: the remainder stays below 97 * 100.
        rest = if value >= 10 { (rest * 100 + value) % 97 } else { (rest * 10 + value) % 97 };
    }
    rest == 1
}

/// Replaces every match of `detectors` in every string of `args` (object values and array
/// items at any depth; keys are left alone; a card number may also be a JSON integer) and returns how many matches each detector found,
/// listing only detectors that found some. The counts are all that leaves this function: never
/// the matched text.
pub(crate) fn scrub(args: &mut Json, detectors: &[Detector]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    if detectors.is_empty() {
        return counts;
    }
    let applied: Vec<Detector> = Detector::APPLIED.into_iter().filter(|d| detectors.contains(d)).collect();
    scrub_value(args, &applied, &mut counts);
    counts
}

fn scrub_value(value: &mut Json, detectors: &[Detector], counts: &mut BTreeMap<&'static str, u64>) {
    match value {
        Json::String(text) => {
            for &detector in detectors {
                let found = detector.find(text);
                if found.is_empty() {
                    continue;
                }
                *counts.entry(detector.as_str()).or_insert(0) += found.len() as u64;
                *text = replace(text, &found, detector.replacement());
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, detectors, counts)),
        Json::Object(map) => map.values_mut().for_each(|v| scrub_value(v, detectors, counts)),
        // A card number sent as a JSON integer (13 to 19 digits that pass the Luhn check) is
        // replaced by the marker: a number is no hiding place.
        Json::Number(n) if detectors.contains(&Detector::PaymentCard) => {
            let digits = n.as_u64().map(|v| v.to_string()).unwrap_or_default();
            if (13..=19).contains(&digits.len()) && luhn(digits.as_bytes()) {
                *counts.entry(Detector::PaymentCard.as_str()).or_insert(0) += 1;
                *value = Json::String(Detector::PaymentCard.replacement().to_owned());
            }
        }
        Json::Null | Json::Bool(_) | Json::Number(_) => {}
    }
}

/// `text` with each of the ordered, disjoint `ranges` replaced by `with`.
fn replace(text: &str, ranges: &[Range<usize>], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(text.get(at..r.start).unwrap_or_default());
        out.push_str(with);
        at = r.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scrubbed(text: &str, detector: Detector) -> (String, u64) {
        let mut value = json!(text);
        let counts = scrub(&mut value, &[detector]);
        (value.as_str().unwrap().to_owned(), counts.get(detector.as_str()).copied().unwrap_or(0))
    }

    #[test]
    fn every_pattern_compiles() {
        for d in Detector::ALL {
            assert!(d.regex().is_some(), "{d}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for d in Detector::ALL {
            assert_eq!(d.as_str().parse::<Detector>(), Ok(d));
            assert_eq!(d.replacement(), format!("[REDACTED:{d}]"));
        }
        let e = "credit_card".parse::<Detector>().unwrap_err();
        assert_eq!(e.to_string(), "unknown detector `credit_card`; the detectors are payment_card, iban, email, secret");
    }

    #[test]
    fn payment_cards_pass_luhn() {
        for (text, want) in [
            ("pay 4242 4242 4242 4242 ref 77", "pay [REDACTED:payment_card] ref 77"),
            ("4242-4242-4242-4242", "[REDACTED:payment_card]"),
            ("card:4242424242424242.", "card:[REDACTED:payment_card]."),
            ("amex 3782 822463 10005", "amex [REDACTED:payment_card]"),
            ("4242 4242 4242 4242 12", "[REDACTED:payment_card] 12"),
            ("a 4111111111111111 b 5555555555554444", "a [REDACTED:payment_card] b [REDACTED:payment_card]"),
        ] {
            assert_eq!(scrubbed(text, Detector::PaymentCard).0, want, "{text}");
        }
        assert_eq!(scrubbed("a 4111111111111111 b 5555555555554444", Detector::PaymentCard).1, 2);
    }

    #[test]
    fn digit_runs_failing_luhn_or_length_are_kept() {
        for text in [
            "order 4242424242424241",    // 16 digits, Luhn fails
            "order 1234-5678-9012-3456", // grouped, Luhn fails
            "short 424242424242",        // 12 digits
            "long 42424242424242424242", // 20 digits: no card is that long
            "4242  4242  4242  4242",    // double spaces do not join groups
            "date 2026-01-01, phone 0800 123 4567",
            "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", // no span of 13-19 ones passes
        ] {
            assert_eq!(scrubbed(text, Detector::PaymentCard), (text.to_owned(), 0), "{text}");
        }
    }

    #[test]
    fn ibans_pass_mod_97() {
        for (text, want) in [
            ("to DE89 3704 0044 0532 0130 00 now", "to [REDACTED:iban] now"),
            ("to DE89370400440532013000", "to [REDACTED:iban]"),
            ("GB82 WEST 1234 5698 7654 32", "[REDACTED:iban]"),
            ("gb82west12345698765432", "[REDACTED:iban]"),
            ("BE68 5390 0754 7034 ABCD", "[REDACTED:iban] ABCD"),
            ("NO93 8601 1117 947", "[REDACTED:iban]"),
        ] {
            assert_eq!(scrubbed(text, Detector::Iban), (want.to_owned(), 1), "{text}");
        }
        for text in [
            "DE88 3704 0044 0532 0130 00", // wrong check digits
            "DE89 3704 0044 0532 0130 01", // wrong account
            "ID12 3456 7",                 // too short
            "ABCD 1234 5678 9012 3456",    // no check digits
        ] {
            assert_eq!(scrubbed(text, Detector::Iban), (text.to_owned(), 0), "{text}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            scrubbed("mail jane.doe+q3@finance.example.co.uk, cc ops@example.com.", Detector::Email),
            ("mail [REDACTED:email], cc [REDACTED:email].".to_owned(), 2)
        );
        for text in ["no@tld", "@example.com", "user@", "a @ b.com", "price 5@ea"] {
            assert_eq!(scrubbed(text, Detector::Email), (text.to_owned(), 0), "{text}");
        }
    }

    #[test]
    fn secrets() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----";
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_live_4eC39HqLyjWDarjtT1zdp7dcXYZ",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS",
            "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
            "xoxp-1234567890-abcdef",
            jwt,
            pem,
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC (truncated)",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
            "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
        ] {
            let text = format!("key: {secret} (rotate)");
            let (out, n) = scrubbed(&text, Detector::Secret);
            assert_eq!(n, 1, "{secret}");
            assert!(!out.contains(secret) && out.starts_with("key: [REDACTED:secret]"), "{out}");
        }
        for text in [
            "AKIA1234",                                         // too short
            "sk_live_short",                                    // too short
            "task-vendor-payouts-q3-with-a-long-slug-name",     // `sk-` inside a word
            "ghp_tooshort",                                     // too short
            "eyJhbGciOiJIUzI1NiJ9 alone",                       // one segment
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0B", // public
            "sk-short",                                         // under 20
        ] {
            assert_eq!(scrubbed(text, Detector::Secret), (text.to_owned(), 0), "{text}");
        }
    }

    #[test]
    fn every_string_at_any_depth_is_scrubbed_and_keys_are_not() {
        let mut args = json!({
            "amount": 4242424242424241_i64,
            "memo": "pay 4242 4242 4242 4242",
            "4242424242424242": "key is left alone",
            "lines": [
                {"note": "mail ops@example.com", "refs": ["5555555555554444", 7, null, true]},
                ["DE89370400440532013000", "order 4242424242424241"],
            ],
        });
        let counts = scrub(&mut args, &[Detector::Email, Detector::PaymentCard, Detector::Iban, Detector::Secret]);
        assert_eq!(
            args,
            json!({
                "amount": 4242424242424241_i64,
                "memo": "pay [REDACTED:payment_card]",
                "4242424242424242": "key is left alone",
                "lines": [
                    {"note": "mail [REDACTED:email]", "refs": ["[REDACTED:payment_card]", 7, null, true]},
                    ["[REDACTED:iban]", "order 4242424242424241"],
                ],
            })
        );
        let counts: Vec<(&str, u64)> = counts.into_iter().collect();
        assert_eq!(counts, [("email", 1), ("iban", 1), ("payment_card", 2)]);
    }

    #[test]
    fn counts_name_detectors_never_the_matched_text() {
        let card = "4242424242424242";
        let mut args = json!({"memo": format!("{card} and 4111 1111 1111 1111"), "to": "jane@example.com"});
        let counts = scrub(&mut args, &Detector::ALL);
        let counted = serde_json::to_string(&counts).unwrap();
        assert_eq!(counted, r#"{"email":1,"payment_card":2}"#);
        let recorded = args.to_string();
        for text in [card, "4111", "jane@example.com"] {
            assert!(!counted.contains(text) && !recorded.contains(text), "{text}");
        }
        // Nothing to find, nothing counted: the map holds only detectors that matched.
        let mut clean = json!({"memo": "invoice 77"});
        assert!(scrub(&mut clean, &Detector::ALL).is_empty());
        assert!(scrub(&mut args, &[]).is_empty());
    }

    #[test]
    fn replacement_texts_match_no_detector() {
        // Detectors run one after another over the same text: a marker one leaves must not be
        // found (and counted) by the next.
        for d in Detector::ALL {
            let mut value = json!(format!("a {} b", d.replacement()));
            assert!(scrub(&mut value, &Detector::ALL).is_empty(), "{d}");
        }
    }

    #[test]
    fn a_card_number_sent_as_a_json_integer_is_replaced() {
        let mut args = json!({"card": 4_242_424_242_424_242_u64, "order": 4_242_424_242_424_241_u64, "n": 7});
        let counts = scrub(&mut args, &[Detector::PaymentCard]);
        assert_eq!(args["card"], json!("[REDACTED:payment_card]"));
        assert_eq!(
            (args["order"].clone(), args["n"].clone()),
            (json!(4_242_424_242_424_241_u64), json!(7)),
            "Luhn-failing and short stay"
        );
        assert_eq!(counts.get("payment_card"), Some(&1));
    }

    #[test]
    fn dashed_ibans_pgp_blocks_and_aws_secrets_are_found() {
        assert_eq!(scrubbed("iban DE89-3704-0044-0532-0130-00 ok", Detector::Iban), ("iban [REDACTED:iban] ok".into(), 1));
        assert_eq!(scrubbed("iban DE89-3704-0044-0532-0130-01", Detector::Iban).1, 0, "the check digits fail");
        let pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF...\n-----END PGP PRIVATE KEY BLOCK-----";
        assert_eq!(scrubbed(&format!("key: {pgp} done"), Detector::Secret), ("key: [REDACTED:secret] done".into(), 1));
        assert_eq!(scrubbed("temp ASIAIOSFODNN7EXAMPLE used", Detector::Secret).1, 1);
        let aws = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(scrubbed(aws, Detector::Secret), ("[REDACTED:secret]".into(), 1));
        // Forty characters without a label are not taken for a secret.
        assert_eq!(scrubbed("hash wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", Detector::Secret).1, 0);
    }
}
