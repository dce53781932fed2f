//! A call's tool and plain arguments as `aegis.js` writes them (`class Tape`): two values cross
//! the N-API boundary however many the arguments hold, where reading an object through N-API
//! took several calls per property (and the tool's name was one more string to convert).
//!
//! The tape is a `Float64Array`: its first number is how many of its numbers are used (the
//! array is reused, and may be longer); then the tool's length in UTF-16 units (its name is the
//! start of the joined text); then the arguments, one value, written as:
//!
//! | value | numbers |
//! |---|---|
//! | `null`, `false`, `true` | tag 0, 1, 2 |
//! | a number | tag 3, the number |
//! | a string | tag 4, its length in UTF-16 units (its text is next in the joined text) |
//! | an array | tag 5, its length, its items |
//! | an object | tag 6, its number of keys, then per key its length (text as for a string) and its value |
//!
//! Only `aegis.js` writes tapes, but a tape is read as untrusted input all the same: anything
//! out of place is an error, never a panic or a value read past its end.

use serde_json::{Map, Number, Value};

/// The deepest nesting read: the text path's limit, which `aegis.js` keeps to as well.
const MAX_DEPTH: usize = 126;

/// The largest integer a double holds exactly; `aegis.js` sends larger whole numbers as text.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// The tool and the arguments on `tape`, their names and strings in `text`, read afresh (into
/// nothing to reuse): what [`call_into`] must read whatever its slot held.
#[cfg(test)]
fn call<'a>(tape: &[f64], text: &'a str) -> Result<(&'a str, Value), &'static str> {
    let mut args = Value::Null;
    call_into(tape, text, &mut args).map(|tool| (tool, args))
}

/// The tool and the arguments on `tape`, their names and strings in `text`, the arguments read
/// into `args` in place where its shape allows: strings
/// into its strings, arrays into its arrays, an object into an object with the same keys in the
/// same order. An agent calls a tool with arguments of one shape call after call, and the
/// allocations of reading them afresh (each key, each string, the map) were a tenth of the
/// binding's cost. What is read is what [`call`] reads, whatever `args` held; on an error,
/// `args` holds part of the old and part of the new.
pub(crate) fn call_into<'a>(tape: &[f64], text: &'a str, args: &mut Value) -> Result<&'a str, &'static str> {
    let used = tape.first().and_then(|n| count(*n)).ok_or("a tape without its length")?;
    let numbers = tape.get(1..used).ok_or("a tape longer than its array")?;
    let mut reader = Reader { numbers, next: 0, text, at: 0 };
    let units = reader.count()?;
    let tool = reader.text(units)?;
    reader.value_into(args, 0)?;
    if reader.next != numbers.len() || reader.at != text.len() {
        return Err("a tape with more than one value");
    }
    match args {
        Value::Object(_) => Ok(tool),
        _ => Err("arguments that are not an object"),
    }
}

/// `n` as a count: a whole, non-negative number that fits.
fn count(n: f64) -> Option<usize> {
    (n.fract() == 0.0 && (0.0..=EXACT_INTEGER).contains(&n)).then_some(n as usize)
}

struct Reader<'n, 'a> {
    numbers: &'n [f64],
    next: usize,
    text: &'a str,
    /// Where the next string starts in `text` (a byte offset).
    at: usize,
}

impl<'a> Reader<'_, 'a> {
    fn number(&mut self) -> Result<f64, &'static str> {
        let n = *self.numbers.get(self.next).ok_or("a tape cut short")?;
        self.next += 1;
        Ok(n)
    }

    fn count(&mut self) -> Result<usize, &'static str> {
        count(self.number()?).ok_or("a count that is not a whole number")
    }

    /// The next `units` UTF-16 code units of the text (whole characters: `aegis.js` writes only
    /// well-formed strings).
    fn text(&mut self, units: usize) -> Result<&'a str, &'static str> {
        let rest = &self.text[self.at..];
        let bytes = rest.as_bytes();
        // ASCII, the usual case: one byte per unit.
        let end = if bytes.len() >= units && bytes[..units].is_ascii() {
            units
        } else {
            let (mut seen, mut end) = (0, 0);
            for c in rest.chars() {
                if seen >= units {
                    break;
                }
                seen += c.len_utf16();
                end += c.len_utf8();
            }
            if seen != units {
                return Err("a string length that does not end on one of the text's characters");
            }
            end
        };
        self.at += end;
        Ok(&rest[..end])
    }

    /// The next value, read into `slot` (see [`call_into`]).
    fn value_into(&mut self, slot: &mut Value, depth: usize) -> Result<(), &'static str> {
        let (start, start_at) = (self.next, self.at);
        let tag = *self.numbers.get(self.next).ok_or("a tape cut short")?;
        match slot {
            Value::String(old) if tag == 4.0 => {
                self.next += 1;
                let units = self.count()?;
                let text = self.text(units)?;
                old.clear();
                old.push_str(text);
                return Ok(());
            }
            Value::Array(items) if tag == 5.0 && depth < MAX_DEPTH => {
                self.next += 1;
                let len = self.count()?;
                items.truncate(len);
                for i in 0..len {
                    match items.get_mut(i) {
                        Some(item) => self.value_into(item, depth + 1)?,
                        None => items.push(self.value(depth + 1)?),
                    }
                }
                return Ok(());
            }
            Value::Object(map) if tag == 6.0 && depth < MAX_DEPTH => {
                self.next += 1;
                if self.count()? == map.len() {
                    let mut same = true;
                    for (key, value) in map.iter_mut() {
                        let units = self.count()?;
                        if self.text(units)? != key {
                            same = false;
                            break;
                        }
                        self.value_into(value, depth + 1)?;
                    }
                    if same {
                        return Ok(());
                    }
                }
                // Another shape: read afresh, from the object's tag.
                (self.next, self.at) = (start, start_at);
            }
            _ => {}
        }
        *slot = self.value(depth)?;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, &'static str> {
        let tag = self.number()?;
        Ok(match tag as u8 {
            _ if tag.fract() != 0.0 || !(0.0..=6.0).contains(&tag) => return Err("an unknown tag"),
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(number(self.number()?)?),
            4 => {
                let units = self.count()?;
                Value::String(self.text(units)?.to_owned())
            }
            _ if depth >= MAX_DEPTH => return Err("arguments nested too deeply"),
            5 => {
                let len = self.count()?;
                // Each item takes at least one number: a length beyond what is left is a lie.
                let mut items = Vec::with_capacity(len.min(self.numbers.len() - self.next));
                for _ in 0..len {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            _ => {
                let len = self.count()?;
                let mut map = Map::new();
                for _ in 0..len {
                    let units = self.count()?;
                    let key = self.text(units)?.to_owned();
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        })
    }
}

/// A number as the text path reads it: whole numbers as integers (`JSON.stringify(2 ** 40)` is
/// `1099511627776`, an integer to the core), -0 as `0` (as JSON writes it), others as they are.
fn number(f: f64) -> Result<Number, &'static str> {
    if f.fract() == 0.0 && f.abs() <= EXACT_INTEGER {
        // In range and whole, so the casts are exact.
        return Ok(if f < 0.0 { Number::from(f as i64) } else { Number::from(f as u64) });
    }
    Number::from_f64(f).ok_or("a number that is not finite")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tape of a call of tool `t` (one unit long) with `numbers` for its arguments.
    fn tape(numbers: &[f64]) -> Vec<f64> {
        let mut t = vec![numbers.len() as f64 + 2.0, 1.0];
        t.extend_from_slice(numbers);
        t
    }

    fn args(tape: &[f64], text: &str) -> Result<Value, &'static str> {
        let text = format!("t{text}");
        let (tool, value) = call(tape, &text)?;
        assert_eq!(tool, "t");
        Ok(value)
    }

    #[test]
    fn reads_what_aegis_js_writes() {
        // {"a": [1, -0, 2.5, null, true], "ü😀": "x😀y"}
        let t = tape(&[6.0, 2.0, 1.0, 5.0, 5.0, 3.0, 1.0, 3.0, -0.0, 3.0, 2.5, 0.0, 2.0, 3.0, 4.0, 4.0]);
        let value = args(&t, "aü😀x😀y").unwrap();
        assert_eq!(value, json!({"a": [1, 0, 2.5, null, true], "ü😀": "x😀y"}));
        assert!(value["a"][0].is_u64() && value["a"][1].is_u64() && value["a"][2].is_f64());
    }

    #[test]
    fn refuses_a_tape_out_of_place() {
        let good = tape(&[6.0, 1.0, 1.0, 4.0, 2.0]);
        assert!(args(&good, "abc").is_ok());
        let cases: Vec<(Vec<f64>, &str)> = vec![
            (vec![], ""),
            (vec![99.0, 1.0, 6.0, 0.0], ""),              // longer than its array
            (vec![2.0, 1.0], ""),                         // no arguments
            (tape(&[6.0, 1.0, 1.0, 4.0, 2.0]), "ab"),     // text too short
            (tape(&[6.0, 1.0, 1.0, 4.0, 2.0]), "abcd"),   // text left over
            (tape(&[6.0, 1.0, 1.0, 4.0]), "abc"),         // cut short
            (tape(&[6.0, 0.0, 0.0]), ""),                 // numbers left over
            (tape(&[7.0]), ""),                           // unknown tag
            (tape(&[2.5]), ""),                           // tag not whole
            (tape(&[5.0, 0.0]), ""),                      // not an object
            (tape(&[6.0, 1.0, 1.0, 3.0, f64::NAN]), "a"), // not finite
            (tape(&[6.0, -1.0]), ""),                     // negative count
            (tape(&[6.0, 1e300]), ""),                    // huge count
            (tape(&[6.0, 1.0, 1.0, 4.0, 1.0]), "a😀"),    // half a character
        ];
        for (t, text) in cases {
            assert!(args(&t, text).is_err(), "{t:?} {text:?}");
        }
        let mut deep = vec![6.0, 1.0, 1.0];
        for _ in 0..200 {
            deep.extend([5.0, 1.0]);
        }
        deep.push(0.0);
        assert!(args(&tape(&deep), "a").is_err());
    }

    /// `value` on a tape, as `aegis.js` writes it (for a call of tool `t`).
    fn write(value: &Value) -> (Vec<f64>, String) {
        fn put(v: &Value, tape: &mut Vec<f64>, text: &mut String) {
            let string = |s: &str, tape: &mut Vec<f64>, text: &mut String| {
                tape.push(s.encode_utf16().count() as f64);
                text.push_str(s);
            };
            match v {
                Value::Null => tape.push(0.0),
                Value::Bool(b) => tape.push(if *b { 2.0 } else { 1.0 }),
                Value::Number(n) => tape.extend([3.0, n.as_f64().unwrap()]),
                Value::String(s) => {
                    tape.push(4.0);
                    string(s, tape, text);
                }
                Value::Array(items) => {
                    tape.extend([5.0, items.len() as f64]);
                    items.iter().for_each(|i| put(i, tape, text));
                }
                Value::Object(map) => {
                    tape.extend([6.0, map.len() as f64]);
                    for (k, v) in map {
                        string(k, tape, text);
                        put(v, tape, text);
                    }
                }
            }
        }
        let (mut tape, mut text) = (vec![0.0, 1.0], String::from("t"));
        put(value, &mut tape, &mut text);
        tape[0] = tape.len() as f64;
        (tape, text)
    }

    /// The next of a xorshift sequence, below `n` (the same values every run).
    fn next(seed: &mut u64, n: u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    }

    /// A small random JSON value.
    fn random(seed: &mut u64, depth: usize) -> Value {
        let words = ["", "a", "b", "ü", "😀x", "amount", "currency"];
        let word = |seed: &mut u64| words[next(seed, words.len() as u64) as usize];
        match next(seed, if depth > 2 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(next(seed, 2) == 1),
            2 => Value::Number(number([0.0, 7.0, -3.0, 2.5, 1e21][next(seed, 5) as usize]).unwrap()),
            3 | 4 => {
                let times = next(seed, 3) as usize;
                Value::String(word(seed).repeat(times))
            }
            5 => Value::Array((0..next(seed, 4)).map(|_| random(seed, depth + 1)).collect()),
            _ => {
                let mut map = Map::new();
                for _ in 0..next(seed, 4) {
                    let key = word(seed).to_owned();
                    map.insert(key, random(seed, depth + 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn read_in_place_is_read_afresh_whatever_came_before() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut slot = Value::Null;
        for round in 0..4000 {
            // Runs of one shape, as an agent calls, and changes of shape between them.
            let value = match random(&mut seed, 0) {
                Value::Object(map) => Value::Object(map),
                other => json!({ "amount": other, "currency": "eur" }),
            };
            let (tape, text) = write(&value);
            for _ in 0..1 + round % 3 {
                assert_eq!(call_into(&tape, &text, &mut slot), Ok("t"));
                assert_eq!(slot, value, "round {round}");
                assert_eq!(call(&tape, &text).map(|(_, v)| v), Ok(value.clone()));
                let mut request = aegis_sod::AuthorizationRequest::new(vec![], "t", slot);
                request.clear_call();
                slot = request.args;
            }
        }
    }

    #[test]
    fn reads_the_tool_by_its_utf16_length() {
        let split = Err("a string length that does not end on one of the text's characters");
        assert_eq!(call(&[4.0, 3.0, 6.0, 0.0], "pé😀").map(|(tool, _)| tool), split);
        assert_eq!(call(&[4.0, 5.0, 6.0, 0.0], "pé😀").map(|(tool, _)| tool), split);
        assert_eq!(call(&[4.0, 2.0, 6.0, 0.0], "péx").map(|(tool, _)| tool), Err("a tape with more than one value"));
        assert_eq!(call(&[4.0, 4.0, 6.0, 0.0], "pé😀").map(|(tool, _)| tool), Ok("pé😀"));
        assert!(call(&[3.0, 1.0, 6.0], "p").is_err());
    }
}
