//! JSON text exactly as Python's `json.dumps` writes it with default
//! options: `", "` and `": "` separators, every character outside
//! printable ASCII escaped as `\uXXXX` (lowercase hex, surrogate pairs).
//!
//! Objects are written in the order the caller gives; nested objects of a
//! `serde_json::Value` come out in its (sorted) key order.

use std::fmt::Write;

use serde_json::Value;

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Appends a JSON value.
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(out, m.iter()),
    }
}

/// Appends an object with its entries in the given order.
pub fn write_object<'a, K: AsRef<str> + 'a>(
    out: &mut String,
    entries: impl IntoIterator<Item = (K, &'a Value)>,
) {
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, k.as_ref());
        out.push_str(": ");
        write_value(out, v);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn like_python_json_dumps() {
        // The expected text is what CPython 3.11 prints for the same dict.
        let v = json!("é\u{7f}\u{1F600}\"\\\n\u{1}");
        let mut out = String::new();
        write_object(
            &mut out,
            [
                ("a", &v),
                ("b", &json!([1, 2])),
                ("c", &Value::Null),
                ("d", &json!(true)),
                ("e", &json!([])),
            ],
        );
        assert_eq!(
            out,
            r#"{"a": "\u00e9\u007f\ud83d\ude00\"\\\n\u0001", "b": [1, 2], "c": null, "d": true, "e": []}"#
        );
    }

    #[test]
    fn output_is_json_with_the_same_value() {
        let v = json!({"x": [1, "\u{0}\t", {"y": null}], "z": -3, "": false});
        let mut out = String::new();
        write_value(&mut out, &v);
        assert!(out.is_ascii());
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
    }
}
