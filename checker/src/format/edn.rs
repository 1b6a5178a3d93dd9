//! Jepsen's EDN histories (`history.edn`), read and written with the `edn-format` crate.
//!
//! A file is either one vector (or list) of op maps, as older Jepsen and Knossos write it, or
//! one op map per line, as newer Jepsen writes it. To report the line of each operation (and of
//! each error), the file is first cut into its top-level forms by a small scanner that knows
//! only where forms begin and end (strings, characters, comments, brackets, tags); each form is
//! then parsed by `edn-format`.
//!
//! EDN values become JSON values: `nil` → `null`; keywords and symbols → strings without the
//! colon (`:timed-out` → `"timed-out"`); vectors, lists and sets → arrays; maps → objects with
//! keys rendered as strings; characters, instants and UUIDs → strings; other tagged values →
//! `{"tag": ..., "value": ...}`. Integers beyond 64 bits become strings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use edn_format::{Keyword, Value as Edn};
use serde_json::{Map, Number, Value};

use super::Independent;
use crate::error::HistoryError;
use crate::history::{Event, EventType, History, Process};

/// Where one top-level form sits in the text.
struct Form {
    start: usize,
    end: usize,
    line: usize,
}

/// Parses an EDN history.
pub fn parse(source: &str, text: &str, independent: Independent) -> Result<History, HistoryError> {
    let top = Scanner::new(source, text, 0, 1).forms(false)?;
    // One vector or list holding everything: descend into it.
    let forms = match top.as_slice() {
        [only] if matches!(text.as_bytes()[only.start], b'[' | b'(') => {
            Scanner::new(source, text, only.start + 1, only.line).forms(true)?
        }
        _ => top,
    };
    let mut maps = Vec::with_capacity(forms.len());
    for form in &forms {
        let slice = &text[form.start..form.end];
        let value = edn_format::parse_str(slice).map_err(|e| {
            HistoryError::at(
                source,
                form.line + e.row.saturating_sub(1),
                format!("not valid EDN: {}", e.error),
            )
        })?;
        let map = match value {
            Edn::Map(m) => m,
            Edn::TaggedElement(_, inner) => match *inner {
                Edn::Map(m) => m,
                _ => return Err(not_an_op(source, form.line)),
            },
            _ => return Err(not_an_op(source, form.line)),
        };
        maps.push((map, form.line));
    }

    let tuples = match independent {
        Independent::Yes => true,
        Independent::No => false,
        Independent::Auto => looks_independent(&maps),
    };
    let mut events = Vec::with_capacity(maps.len());
    for (position, (map, line)) in maps.iter().enumerate() {
        events.push(event_of(source, map, *line, position, tuples)?);
    }
    Ok(History {
        source: source.to_string(),
        events,
    })
}

fn not_an_op(source: &str, line: usize) -> HistoryError {
    HistoryError::at(
        source,
        line,
        "expected an op map like {:process 0, :type :invoke, ...}",
    )
}

fn kw(name: &str) -> Edn {
    Edn::Keyword(Keyword::from_name(name))
}

/// Jepsen's `independent` workloads wrap every value as `[key value]` (a MapEntry). A plain
/// cas value is also a pair, so a history made only of cas operations is not taken for one;
/// nor is a transaction of two micro-operations (`:f :txn`, `[[:read :x nil] [:write :y 2]]`).
fn looks_independent(maps: &[(BTreeMap<Edn, Edn>, usize)]) -> bool {
    let mut any = false;
    let mut all_cas = true;
    for (m, _) in maps {
        if !matches!(m.get(&kw("process")), Some(Edn::Integer(_))) {
            continue;
        }
        if matches!(m.get(&kw("f")), Some(Edn::Keyword(k)) if k.name() == "txn") {
            return false;
        }
        any = true;
        match m.get(&kw("value")) {
            Some(Edn::Vector(v)) if v.len() == 2 => {}
            _ => return false,
        }
        if !matches!(m.get(&kw("f")), Some(Edn::Keyword(k)) if k.name() == "cas") {
            all_cas = false;
        }
    }
    any && !all_cas
}

fn event_of(
    source: &str,
    m: &BTreeMap<Edn, Edn>,
    line: usize,
    position: usize,
    tuples: bool,
) -> Result<Event, HistoryError> {
    let at = |msg: String| HistoryError::at(source, line, msg);
    let process = match m.get(&kw("process")) {
        Some(Edn::Integer(p)) if *p >= 0 => Process::Client(*p as u64),
        Some(Edn::Keyword(k)) if k.name() == "nemesis" => Process::Nemesis,
        Some(other) => {
            return Err(at(format!(
                ":process must be a non-negative integer or :nemesis, got {}",
                show(other)
            )))
        }
        None => return Err(at("the op has no :process".to_string())),
    };
    let kind = match m.get(&kw("type")) {
        Some(Edn::Keyword(k)) => EventType::parse(k.name()),
        _ => None,
    }
    .ok_or_else(|| at(":type must be one of :invoke, :ok, :fail, :info".to_string()))?;
    let f = match m.get(&kw("f")) {
        Some(Edn::Keyword(k)) => k.name().to_string(),
        Some(Edn::Symbol(s)) => s.name().to_string(),
        Some(Edn::String(s)) => s.clone(),
        Some(other) if process == Process::Nemesis => show(other),
        None if process == Process::Nemesis => String::new(),
        _ => return Err(at("the op has no :f (function)".to_string())),
    };
    let raw_value = m.get(&kw("value")).cloned().unwrap_or(Edn::Nil);
    let mut key = m.get(&kw("key")).map(to_json);
    let value = match raw_value {
        Edn::Vector(pair) if tuples && process != Process::Nemesis && pair.len() == 2 => {
            key = Some(to_json(&pair[0]));
            to_json(&pair[1])
        }
        Edn::TaggedElement(tag, inner)
            if tag.name() == "Tuple" || tag.name().ends_with(".Tuple") =>
        {
            // #jepsen.independent.Tuple{:key k, :value v}, from older Jepsen.
            match *inner {
                Edn::Map(t) => {
                    key = t.get(&kw("key")).map(to_json);
                    t.get(&kw("value")).map(to_json).unwrap_or(Value::Null)
                }
                other => to_json(&other),
            }
        }
        Edn::Vector(_) if tuples && process != Process::Nemesis => {
            return Err(at(
                "expected an independent [key value] tuple as :value".to_string()
            ))
        }
        other => to_json(&other),
    };
    let index = match m.get(&kw("index")) {
        Some(Edn::Integer(i)) if *i >= 0 => *i as u64,
        _ => position as u64,
    };
    let time = match m.get(&kw("time")) {
        Some(Edn::Integer(t)) if *t >= 0 => Some(*t as u64),
        _ => None,
    };
    let node = match m.get(&kw("node")) {
        Some(Edn::String(s)) => Some(s.clone()),
        Some(Edn::Keyword(k)) => Some(k.name().to_string()),
        _ => None,
    };
    Ok(Event {
        index,
        time,
        process,
        kind,
        f,
        key: key.filter(|k| !k.is_null()),
        value,
        node,
        error: m.get(&kw("error")).map(to_json),
        line,
    })
}

fn show(v: &Edn) -> String {
    crate::text::abbreviate(&crate::text::for_terminal(&edn_format::emit_str(v)), 60)
}

/// Converts an EDN value to JSON (see the module documentation for the rules).
pub fn to_json(v: &Edn) -> Value {
    match v {
        Edn::Nil => Value::Null,
        Edn::Boolean(b) => Value::Bool(*b),
        Edn::Integer(i) => Value::from(*i),
        Edn::Float(f) => Number::from_f64(f.into_inner())
            .map_or_else(|| Value::String(f.into_inner().to_string()), Value::Number),
        Edn::BigInt(b) => b
            .to_string()
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(b.to_string())),
        Edn::BigDec(d) => Value::String(d.to_string()),
        Edn::String(s) => Value::String(s.clone()),
        Edn::Character(c) => Value::String(c.to_string()),
        Edn::Keyword(k) => Value::String(qualified(k.namespace(), k.name())),
        Edn::Symbol(s) => Value::String(qualified(s.namespace(), s.name())),
        Edn::List(items) | Edn::Vector(items) => Value::Array(items.iter().map(to_json).collect()),
        Edn::Set(items) => Value::Array(items.iter().map(to_json).collect()),
        Edn::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Edn::Inst(t) => Value::String(t.to_rfc3339()),
        Edn::Uuid(u) => Value::String(u.to_string()),
        Edn::TaggedElement(tag, inner) => {
            let mut out = Map::new();
            out.insert(
                "tag".into(),
                Value::String(qualified(tag.namespace(), tag.name())),
            );
            out.insert("value".into(), to_json(inner));
            Value::Object(out)
        }
    }
}

fn qualified(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Converts a JSON value to EDN: `null` → `nil`, arrays → vectors, objects → maps with string
/// keys.
pub fn from_json(v: &Value) -> Edn {
    match v {
        Value::Null => Edn::Nil,
        Value::Bool(b) => Edn::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Edn::Integer(i)
            } else if let Some(u) = n.as_u64() {
                Edn::BigInt(u.into())
            } else {
                Edn::Float(n.as_f64().unwrap_or(f64::NAN).into())
            }
        }
        Value::String(s) => Edn::String(s.clone()),
        Value::Array(items) => Edn::Vector(items.iter().map(from_json).collect()),
        Value::Object(m) => Edn::Map(
            m.iter()
                .map(|(k, v)| (Edn::String(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// Writes a history as Jepsen EDN: one vector of op maps, one per line. Keyed operations get
/// `independent` tuples (`:value [key value]`), which is what Jepsen's independent checker
/// expects.
pub fn write(events: &[Event]) -> String {
    let mut out = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push_str("\n ");
        }
        let mut m = BTreeMap::new();
        m.insert(kw("index"), Edn::Integer(e.index as i64));
        if let Some(t) = e.time {
            m.insert(kw("time"), Edn::Integer(t as i64));
        }
        m.insert(
            kw("process"),
            match e.process {
                Process::Client(p) => Edn::Integer(p as i64),
                Process::Nemesis => kw("nemesis"),
            },
        );
        m.insert(kw("type"), kw(e.kind.as_str()));
        if !e.f.is_empty() {
            m.insert(kw("f"), keyword_or_string(&e.f));
        }
        let value = from_json(&e.value);
        m.insert(
            kw("value"),
            match &e.key {
                Some(k) => Edn::Vector(vec![from_json(k), value]),
                None => value,
            },
        );
        if let Some(n) = &e.node {
            m.insert(kw("node"), Edn::String(n.clone()));
        }
        if let Some(err) = &e.error {
            m.insert(kw("error"), from_json(err));
        }
        let _ = write!(out, "{}", edn_format::emit_str(&Edn::Map(m)));
    }
    out.push_str("]\n");
    out
}

/// `:read` for plain names; a string for anything a keyword cannot spell.
fn keyword_or_string(name: &str) -> Edn {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_*+!?<>=.".contains(c))
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        kw(name)
    } else {
        Edn::String(name.to_string())
    }
}

/// Finds where top-level forms begin and end, without interpreting them.
struct Scanner<'a> {
    source: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn new(source: &'a str, text: &'a str, pos: usize, line: usize) -> Scanner<'a> {
        Scanner {
            source,
            bytes: text.as_bytes(),
            pos,
            line,
        }
    }

    fn err(&self, msg: &str) -> HistoryError {
        HistoryError::at(self.source, self.line, msg.to_string())
    }

    /// The forms from the current position to the end (or, `inside` a collection, to its
    /// closing bracket).
    fn forms(mut self, inside: bool) -> Result<Vec<Form>, HistoryError> {
        let mut forms = Vec::new();
        loop {
            self.skip_blank();
            match self.bytes.get(self.pos) {
                None if inside => {
                    return Err(self.err("the history's opening bracket is never closed"))
                }
                None => return Ok(forms),
                Some(b']' | b')') if inside => return Ok(forms),
                Some(b']' | b')' | b'}') => return Err(self.err("unbalanced closing bracket")),
                Some(_) => {
                    let (start, line) = (self.pos, self.line);
                    if self.form()? {
                        forms.push(Form {
                            start,
                            end: self.pos,
                            line,
                        });
                    }
                }
            }
        }
    }

    fn skip_blank(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' | b'\x0b' | b'\x0c' => self.pos += 1,
                b';' => {
                    while self.bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// Consumes one form; false if it was a `#_` discard (not a form of its own).
    fn form(&mut self) -> Result<bool, HistoryError> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.err("unexpected end of input"));
        };
        match b {
            b'"' => self.string()?,
            b'\\' => {
                // A character literal: `\c`, `\newline`, `\u0041`.
                self.pos += 1;
                if self.pos < self.bytes.len() {
                    self.pos += utf8_len(self.bytes[self.pos]);
                }
                self.atom();
            }
            b'(' | b'[' | b'{' => self.collection()?,
            b'#' => match self.bytes.get(self.pos + 1) {
                Some(b'{') => {
                    self.pos += 1;
                    self.collection()?;
                }
                Some(b'_') => {
                    self.pos += 2;
                    self.skip_blank();
                    self.form()?;
                    return Ok(false);
                }
                _ => {
                    // A tag, then the tagged form.
                    self.atom();
                    self.skip_blank();
                    self.form()?;
                }
            },
            _ => self.atom(),
        }
        Ok(true)
    }

    fn string(&mut self) -> Result<(), HistoryError> {
        let start_line = self.line;
        self.pos += 1;
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(HistoryError::at(
            self.source,
            start_line,
            "a string is never closed",
        ))
    }

    fn collection(&mut self) -> Result<(), HistoryError> {
        let open_line = self.line;
        let close = match self.bytes[self.pos] {
            b'(' => b')',
            b'[' => b']',
            _ => b'}',
        };
        self.pos += 1;
        loop {
            self.skip_blank();
            match self.bytes.get(self.pos) {
                None => {
                    return Err(HistoryError::at(
                        self.source,
                        open_line,
                        format!(
                            "a bracket opened here is never closed (expected {:?})",
                            close as char
                        ),
                    ))
                }
                Some(&b) if b == close => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b')' | b']' | b'}') => return Err(self.err("mismatched closing bracket")),
                Some(_) => {
                    self.form()?;
                }
            }
        }
    }

    /// Consumes a symbol, keyword, number or similar token: at least one byte, so the scanner
    /// always makes progress whatever the input.
    fn atom(&mut self) {
        if self.pos < self.bytes.len() {
            self.pos += 1;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_whitespace()
                || matches!(
                    b,
                    b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';'
                )
            {
                return;
            }
            self.pos += 1;
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}
