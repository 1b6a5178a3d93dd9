//! Escaping for everything the report writes. Histories, node logs and results files are
//! untrusted input: a value such as `<script>alert(1)</script>` must reach the page as text,
//! never as markup, in HTML text, in attributes, inside the embedded JSON and in XML.

use serde::Serialize;

/// Text for an HTML text node or a double- or single-quoted attribute value. Control
/// characters (which would also confuse a terminal a user copies them to) become visible
/// `\u{..}` escapes.
pub fn html(s: &str) -> String {
    escape(s, false)
}

/// Like [`html`], keeping line breaks and tabs: for `<pre>` blocks (logs, test.toml).
pub fn html_block(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' if keep_lines => out.push(c),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Control characters, and bidirectional overrides that can make text read in a misleading
/// order (as `faultline_checker::text::for_terminal` treats them).
fn needs_escape(c: char) -> bool {
    // U+FFFE and U+FFFF are not characters XML may carry (junit.xml shares this escaping).
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{fffe}' | '\u{ffff}')
}

/// Text for XML 1.0 (junit.xml), keeping line breaks: the five entities are valid XML too,
/// and every character XML cannot carry is a control character, escaped as `\u{..}`.
pub fn xml(s: &str) -> String {
    escape(s, true)
}

/// JSON to embed in `<script type="application/json">`. JSON itself may contain `</script>`
/// or `<!--` inside strings, which would end the element early; `<`, `>` and `&` are written
/// as `\u003c`-style escapes, which JSON readers decode back to the same text.
pub fn json_for_script<T: Serialize>(value: &T) -> Result<String, String> {
    let text = serde_json::to_string(value).map_err(|e| format!("cannot encode JSON: {e}"))?;
    let mut out = String::with_capacity(text.len() + 64);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One line of text for a plot label or a table cell: control characters escaped, cut to
/// `max` characters (a set read can hold thousands of elements).
pub fn short(s: &str, max: usize) -> String {
    faultline_checker::text::abbreviate(&faultline_checker::text::for_terminal(s), max)
}

/// A JSON value as compact text (strings without their quotes), cut to `max` characters.
pub fn value_text(v: &serde_json::Value, max: usize) -> String {
    match v {
        serde_json::Value::String(s) => short(s, max),
        other => short(&other.to_string(), max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_text() {
        assert_eq!(
            html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html("a\u{1b}[31mb\u{0}"), "a\\u{1b}[31mb\\u{0}");
        assert_eq!(html("a\nb"), "a\\u{a}b");
        assert_eq!(html_block("a\nb\u{7}<"), "a\nb\\u{7}&lt;");
    }

    #[test]
    fn embedded_json_cannot_close_its_script_element() {
        let v = serde_json::json!({"v": "</script><script>alert(1)</script><!--"});
        let s = json_for_script(&v).unwrap();
        assert!(!s.contains('<') && !s.contains('>'), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn short_text_is_cut_on_char_boundaries() {
        assert_eq!(short("héllo wörld", 5), "héll…");
        assert_eq!(value_text(&serde_json::json!("x\ny"), 10), "x\\u{a}y");
        assert_eq!(value_text(&serde_json::json!([1, 2]), 10), "[1,2]");
    }
}
