//! Minimal `--flag value` parsing shared by the subcommands.

use aegis_core::Error;

/// Parsed `--flag value` pairs, bare `--flag`s and positional words.
pub struct Args<'a> {
    pairs: Vec<(&'a str, Option<&'a str>)>,
    positional: Vec<&'a str>,
}

impl<'a> Args<'a> {
    /// Parses `words`; `switches` are flags that take no value.
    pub fn parse(words: &[&'a str], switches: &[&str]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut positional = Vec::new();
        let mut iter = words.iter();
        while let Some(word) = iter.next() {
            match word.strip_prefix("--") {
                Some(flag) if switches.contains(&flag) => pairs.push((flag, None)),
                Some(flag) => {
                    let value = iter.next().ok_or_else(|| format!("`--{flag}` needs a value"))?;
                    pairs.push((flag, Some(*value)));
                }
                None => positional.push(*word),
            }
        }
        Ok(Self { pairs, positional })
    }

    pub fn get(&self, flag: &str) -> Option<&'a str> {
        self.pairs.iter().rev().find(|(f, _)| *f == flag).and_then(|(_, v)| *v)
    }

    pub fn has(&self, flag: &str) -> bool {
        self.pairs.iter().any(|(f, _)| *f == flag)
    }

    pub fn require(&self, flag: &str) -> Result<&'a str, String> {
        self.get(flag).ok_or_else(|| format!("`--{flag}` is required"))
    }

    pub fn positional(&self, index: usize, what: &str) -> Result<&'a str, String> {
        self.positional.get(index).copied().ok_or_else(|| format!("missing <{what}>"))
    }
}

/// Renders a core error with its stable code.
pub fn show(error: Error) -> String {
    format!("[{}] {}", error.code(), error.message())
}

/// Reads a file, naming it on failure.
pub fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))
}
