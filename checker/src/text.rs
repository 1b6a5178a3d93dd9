//! Making text from histories safe to print. Histories are untrusted input: a value may hold
//! terminal escape sequences or control characters, and nothing read from a file may reach a
//! terminal or log unescaped.

use serde_json::Value;

/// Replaces control characters (including ESC, DEL and C1 controls) with `\u{..}` escapes,
/// leaving ordinary text, including non-ASCII letters, untouched.
pub fn for_terminal(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    // Bidirectional overrides can make a terminal show text in a misleading order.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text of a value, safe for a terminal. JSON already escapes C0 controls inside strings;
/// this also escapes the rest.
pub fn json_for_terminal(v: &Value) -> String {
    for_terminal(&v.to_string())
}

/// Shortens long text for one-line messages, marking the cut.
pub fn abbreviate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_control_sequences() {
        assert_eq!(for_terminal("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(for_terminal("tab\there"), "tab\\u{9}here");
        assert_eq!(for_terminal("ok é"), "ok é");
        assert_eq!(for_terminal("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn abbreviates_on_char_boundaries() {
        assert_eq!(abbreviate("héllo wörld", 5), "héll…");
        assert_eq!(abbreviate("short", 10), "short");
    }
}
