//! JSON values as block YAML that YAML 1.1 readers take back unchanged.
//!
//! `kubectl` reads manifests with a YAML 1.1 parser, where the plain scalars `on`, `off`, `yes`,
//! `no`, `y` and `n` are booleans, `1_000` is a number and `2027-06-30` may be a date. A YAML 1.2
//! writer leaves those unquoted, so a catalog's `{"on": "ACTIVE"}` would reach the filter as
//! `{"true": "ACTIVE"}`. Here a string is written plain only when it starts with a letter or `/`
//! and holds nothing but letters, digits, `_`, `.`, `/` and `-`, and is not one of the words a
//! YAML 1.1 or 1.2 reader takes for a boolean or null; every other string is double-quoted.

use serde_json::{Number, Value};

/// One YAML document (no `---`), ending in a newline.
pub fn document(value: &Value) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => block(value, 0),
        Value::Array(items) if !items.is_empty() => block(value, 0),
        scalar => format!("{}\n", inline(scalar)),
    }
}

/// A non-empty mapping or sequence, each line indented by `indent` spaces.
fn block(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(&format!("{pad}{}:", string(key)));
                match item {
                    Value::Object(m) if !m.is_empty() => out.push_str(&format!("\n{}", block(item, indent + 2))),
                    // A sequence under a key stands at the key's indentation, as kubectl writes it.
                    Value::Array(a) if !a.is_empty() => out.push_str(&format!("\n{}", block(item, indent))),
                    scalar => out.push_str(&format!(" {}\n", inline(scalar))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => nested_item(&mut out, item, indent),
                    Value::Array(a) if !a.is_empty() => nested_item(&mut out, item, indent),
                    scalar => out.push_str(&format!("{pad}- {}\n", inline(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
    out
}

/// A sequence entry that is itself a block: its first line goes after the `- `.
fn nested_item(out: &mut String, item: &Value, indent: usize) {
    let inner = block(item, indent + 2);
    out.push_str(&" ".repeat(indent));
    out.push_str("- ");
    out.push_str(inner.get(indent + 2..).unwrap_or_default());
}

/// A scalar, or an empty mapping or sequence, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

/// YAML 1.1 reads a float only with a `.` in its mantissa and a sign in its exponent.
fn number(n: &Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
        None => (text.clone(), None),
    };
    let mantissa = if mantissa.contains('.') { mantissa } else { format!("{mantissa}.0") };
    match exponent {
        Some(e) if e.starts_with(['+', '-']) => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// Words some YAML reader takes for a boolean or null (compared without case).
const RESERVED: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn string(s: &str) -> String {
    let mut chars = s.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED.iter().any(|word| s.eq_ignore_ascii_case(word));
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::document;
    use serde_json::json;

    #[test]
    fn block_layout_like_kubectl() {
        let value = json!({"spec": {"match": [{"mode": "CLIENT", "ports": [{"number": 80}]}], "empty": {},
                           "none": [], "nested": [["a", 1], []], "url": "/register"}});
        assert_eq!(
            document(&value),
            "spec:\n  empty: {}\n  match:\n  - mode: CLIENT\n    ports:\n    - number: 80\n  \
             nested:\n  - - a\n    - 1\n  - []\n  none: []\n  url: /register\n"
        );
    }

    #[test]
    fn strings_a_yaml_1_1_reader_would_change_are_quoted() {
        for word in [
            "on",
            "Off",
            "YES",
            "no",
            "y",
            "N",
            "true",
            "null",
            "~",
            "",
            "1",
            "1_000",
            "0x1f",
            "2027-06-30",
            "12:30",
            ".inf",
            "-1",
            "^1",
            ">=2.1, <3",
            "a: b",
            "# x",
            "x #y",
            "*a",
            "&a",
            "!a",
            "@a",
            "%a",
            "'a'",
        ] {
            let text = document(&json!({ word: word }));
            let quoted = serde_json::to_string(word).unwrap();
            assert_eq!(text, format!("{quoted}: {quoted}\n"), "{word:?}");
        }
        for word in ["user", "user-2.1.0", "x-meshver-route", "/register", "CLIENT", "online", "Norway", "noon"] {
            assert_eq!(document(&json!([word])), format!("- {word}\n"), "{word:?}");
        }
        assert_eq!(document(&json!(["a\"b\\c\nd\u{7f}é"])), "- \"a\\\"b\\\\c\\nd\\u007fé\"\n");
    }

    #[test]
    fn numbers_stay_numbers() {
        assert_eq!(
            document(&json!([1, -2, 0.5, 1e300, 2.5e-7, 100.0])),
            "- 1\n- -2\n- 0.5\n- 1.0e+300\n- 2.5e-7\n- 100.0\n"
        );
    }
}
