//! Interning of JSON values, so models compare small integers instead of JSON trees.
//!
//! Each key's history is decoded with its own table (keys are checked in parallel, so a shared
//! table would be a point of contention). Two values get the same id exactly when their JSON
//! texts are equal: `1` and `1.0` are different values, as they are in Jepsen's Clojure.

use rustc_hash::FxHashMap;
use serde_json::Value;

/// A small handle for an interned value; only meaningful with the table that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Maps values to [`ValueId`]s and back.
#[derive(Debug, Default, Clone)]
pub struct ValueTable {
    values: Vec<Value>,
    ids: FxHashMap<String, ValueId>,
}

impl ValueTable {
    pub fn new() -> ValueTable {
        ValueTable::default()
    }

    /// The id of `v`, adding it if new.
    pub fn intern(&mut self, v: &Value) -> ValueId {
        let text = v.to_string();
        if let Some(&id) = self.ids.get(&text) {
            return id;
        }
        let id = ValueId(self.values.len() as u32);
        self.values.push(v.clone());
        self.ids.insert(text, id);
        id
    }

    /// The id of `v` if it was interned.
    pub fn lookup(&self, v: &Value) -> Option<ValueId> {
        self.ids.get(&v.to_string()).copied()
    }

    /// The value behind an id from this table.
    pub fn get(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    /// JSON text of an interned value, safe to print.
    pub fn render(&self, id: ValueId) -> String {
        crate::text::abbreviate(&crate::text::json_for_terminal(self.get(id)), 200)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
