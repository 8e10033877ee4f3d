//! The supported subset of JSON Schema: compiled from the contract's raw JSON at load
//! (every keyword outside the subset is a config error naming its path), checked against
//! request bodies at run time.
//!
//! Hand-written rather than a `jsonschema`-style crate: the subset is small, the full
//! validators pull in regex engines and URL resolution that would multiply the size of
//! the wasm module (which must stay under 1 MiB), and we need config paths and body
//! pointers in every message.

use super::pointer::push_escaped;
use super::DataError;
use serde_json::{Map, Value};
use std::fmt;

/// The deepest a schema may nest (`properties` and `items` each count one level).
/// Validation recurses along the schema, so this bounds it whatever the body's depth.
pub const MAX_DEPTH: usize = 32;
/// The most violations reported for one body; the rest are summed up in one last entry.
pub const MAX_VIOLATIONS: usize = 64;

/// Keywords that carry meaning, in the order the docs list them.
pub const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
];
/// Keywords accepted and ignored.
pub const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "examples", "default"];

/// JSON types a schema's `type` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Types(u8);

const TYPE_NAMES: [&str; 7] = ["object", "array", "string", "number", "integer", "boolean", "null"];
const NUMBER: u8 = 1 << 3;
const INTEGER: u8 = 1 << 4;

impl Types {
    fn parse(name: &str) -> Option<Types> {
        TYPE_NAMES.iter().position(|n| *n == name).map(|i| Types(1 << i))
    }

    /// The type of a value, as the narrowest name (`1` and `1.0` are integers).
    fn of(value: &Value) -> Types {
        let i = match value {
            Value::Object(_) => 0,
            Value::Array(_) => 1,
            Value::String(_) => 2,
            Value::Number(n) if is_integer(n) => 4,
            Value::Number(_) => 3,
            Value::Bool(_) => 5,
            Value::Null => 6,
        };
        Types(1 << i)
    }

    /// Whether every value `other` allows is allowed here (a number allows integers).
    pub fn covers(self, other: Types) -> bool {
        let mut wanted = other.0 & !self.0;
        if self.0 & NUMBER != 0 {
            wanted &= !INTEGER;
        }
        wanted == 0
    }
}

impl fmt::Display for Types {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> =
            TYPE_NAMES.iter().enumerate().filter(|(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n).collect();
        f.write_str(&names.join(" or "))
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// A compiled schema. A missing keyword constrains nothing.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Where it is in the config (`.contracts[0].schema.properties.email`).
    pub at: String,
    pub types: Option<Types>,
    pub properties: Vec<(String, Schema)>,
    pub required: Vec<String>,
    /// `Some(false)` refuses members not in `properties`.
    pub additional_properties: Option<bool>,
    pub items: Option<Box<Schema>>,
    pub enumeration: Option<Vec<Value>>,
    pub constant: Option<Value>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
}

/// One way a body breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the failing value in the client's body (`/email`, `/items/0/qty`; `""` is the body).
    pub pointer: String,
    pub message: String,
    /// Set on the summary entry past [`MAX_VIOLATIONS`]: how many failures it stands for.
    pub more: usize,
}

impl Violation {
    /// How many failing values a list of violations stands for, the summary's included.
    pub fn count(violations: &[Violation]) -> usize {
        violations.iter().map(|v| v.more.max(1)).sum()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "the body" } else { &self.pointer };
        write!(f, "{at} {}", self.message)
    }
}

impl Schema {
    /// Compiles a raw schema found at config path `at`.
    pub fn compile(raw: &Value, at: &str, errors: &mut Vec<DataError>) -> Schema {
        compile_at(raw, at, 0, errors)
    }

    /// Every violation of this schema by `body` (at most [`MAX_VIOLATIONS`] and a summary).
    pub fn violations(&self, body: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut pointer = String::new();
        let mut dropped = 0usize;
        self.check(body, &mut pointer, &mut out, &mut dropped);
        if dropped > 0 {
            out.push(Violation {
                pointer: String::new(),
                message: format!("breaks the contract in {dropped} more places"),
                more: dropped,
            });
        }
        out
    }

    fn check(&self, value: &Value, pointer: &mut String, out: &mut Vec<Violation>, dropped: &mut usize) {
        let mut fail = |pointer: &str, message: String| {
            if out.len() < MAX_VIOLATIONS {
                out.push(Violation { pointer: pointer.to_owned(), message, more: 0 });
            } else {
                *dropped += 1;
            }
        };
        if let Some(types) = self.types {
            let actual = Types::of(value);
            if !types.covers(actual) {
                return fail(pointer, format!("must be {types}, not {actual}"));
            }
        }
        if let Some(allowed) = &self.enumeration {
            if !allowed.iter().any(|a| json_eq(a, value, 0)) {
                fail(pointer, format!("must be one of {}", list(allowed)));
            }
        }
        if let Some(constant) = &self.constant {
            if !json_eq(constant, value, 0) {
                fail(pointer, format!("must be {constant}"));
            }
        }
        match value {
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if let Some(min) = self.min_length.filter(|min| length < *min) {
                    fail(pointer, format!("must be at least {min} characters long, not {length}"));
                }
                if let Some(max) = self.max_length.filter(|max| length > *max) {
                    fail(pointer, format!("must be at most {max} characters long, not {length}"));
                }
            }
            Value::Number(number) => {
                let n = number.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = self.minimum.filter(|min| n < *min) {
                    fail(pointer, format!("must be at least {min}, not {number}"));
                }
                if let Some(max) = self.maximum.filter(|max| n > *max) {
                    fail(pointer, format!("must be at most {max}, not {number}"));
                }
                if let Some(min) = self.exclusive_minimum.filter(|min| n <= *min) {
                    fail(pointer, format!("must be greater than {min}, not {number}"));
                }
                if let Some(max) = self.exclusive_maximum.filter(|max| n >= *max) {
                    fail(pointer, format!("must be less than {max}, not {number}"));
                }
            }
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(min) = self.min_items.filter(|min| count < *min) {
                    fail(pointer, format!("must have at least {min} items, not {count}"));
                }
                if let Some(max) = self.max_items.filter(|max| count > *max) {
                    fail(pointer, format!("must have at most {max} items, not {count}"));
                }
                if let Some(schema) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        let len = pointer.len();
                        push_escaped(pointer, &i.to_string());
                        schema.check(item, pointer, out, dropped);
                        pointer.truncate(len);
                    }
                }
            }
            Value::Object(members) => self.check_object(members, pointer, out, dropped),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn check_object(
        &self,
        members: &Map<String, Value>,
        pointer: &mut String,
        out: &mut Vec<Violation>,
        dropped: &mut usize,
    ) {
        let len = pointer.len();
        for name in &self.required {
            if !members.contains_key(name) {
                push_escaped(pointer, name);
                push(out, dropped, pointer, "is required".to_owned());
                pointer.truncate(len);
            }
        }
        for (name, value) in members {
            push_escaped(pointer, name);
            match self.properties.iter().find(|(n, _)| n == name) {
                Some((_, schema)) => schema.check(value, pointer, out, dropped),
                None if self.additional_properties == Some(false) => {
                    push(out, dropped, pointer, "is not allowed: the contract lists no such property".to_owned())
                }
                None => {}
            }
            pointer.truncate(len);
        }
    }
}

fn push(out: &mut Vec<Violation>, dropped: &mut usize, pointer: &str, message: String) {
    if out.len() < MAX_VIOLATIONS {
        out.push(Violation { pointer: pointer.to_owned(), message, more: 0 });
    } else {
        *dropped += 1;
    }
}

/// Values joined for a message: `"a", "b" or 3`.
pub fn list(values: &[Value]) -> String {
    let texts: Vec<String> = values.iter().map(ToString::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => texts.join(""),
    }
}

/// JSON equality where `1` equals `1.0`, as JSON Schema defines it. Depth-bounded; values
/// nested deeper than serde_json parses (128) never reach it.
pub fn json_eq(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > 128 {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().is_some_and(|x| Some(x) == y.as_f64()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w, depth + 1)))
        }
        _ => a == b,
    }
}

/// The config path of a member: `.email`, or `["odd name"]` when it is not a plain word.
pub fn member_path(name: &str) -> String {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-$".contains(&b));
    if plain {
        format!(".{name}")
    } else {
        format!("[{}]", Value::String(name.to_owned()))
    }
}

fn compile_at(raw: &Value, at: &str, depth: usize, errors: &mut Vec<DataError>) -> Schema {
    let mut schema = Schema { at: at.to_owned(), ..Schema::default() };
    let Some(object) = raw.as_object() else {
        errors.push(DataError::new(at, "a schema must be a JSON object"));
        return schema;
    };
    if depth >= MAX_DEPTH {
        errors.push(DataError::new(at, format!("the schema nests deeper than {MAX_DEPTH} levels")));
        return schema;
    }
    for (keyword, value) in object {
        let path = format!("{at}{}", member_path(keyword));
        let mut error = |message: String| errors.push(DataError::new(&path, message));
        match keyword.as_str() {
            "type" => schema.types = compile_types(value).map_err(&mut error).ok(),
            "properties" => match value.as_object() {
                Some(members) => {
                    schema.properties = members
                        .iter()
                        .map(|(name, sub)| {
                            (name.clone(), compile_at(sub, &format!("{path}{}", member_path(name)), depth + 1, errors))
                        })
                        .collect();
                }
                None => error("must be an object of schemas by property name".into()),
            },
            "required" => match value.as_array().map(|names| names.iter().map(Value::as_str).collect()) {
                Some(Some(names)) => {
                    let names: Vec<&str> = names;
                    schema.required = names.into_iter().map(str::to_owned).collect();
                }
                _ => error("must be an array of property names".into()),
            },
            "additionalProperties" => match value.as_bool() {
                Some(allowed) => schema.additional_properties = Some(allowed),
                None => error("only true or false are supported here, not a schema".into()),
            },
            "items" => match value {
                Value::Object(_) => schema.items = Some(Box::new(compile_at(value, &path, depth + 1, errors))),
                _ => error("must be one schema (an object) for every item; tuple forms are not supported".into()),
            },
            "enum" => match value.as_array() {
                Some(values) if !values.is_empty() => schema.enumeration = Some(values.clone()),
                _ => error("must be a non-empty array of values".into()),
            },
            "const" => schema.constant = Some(value.clone()),
            "minLength" | "maxLength" | "minItems" | "maxItems" => match value.as_u64() {
                Some(n) => {
                    let slot = match keyword.as_str() {
                        "minLength" => &mut schema.min_length,
                        "maxLength" => &mut schema.max_length,
                        "minItems" => &mut schema.min_items,
                        _ => &mut schema.max_items,
                    };
                    *slot = Some(n);
                }
                None => error("must be a non-negative integer".into()),
            },
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => match value.as_f64() {
                Some(n) => {
                    let slot = match keyword.as_str() {
                        "minimum" => &mut schema.minimum,
                        "maximum" => &mut schema.maximum,
                        "exclusiveMinimum" => &mut schema.exclusive_minimum,
                        _ => &mut schema.exclusive_maximum,
                    };
                    *slot = Some(n);
                }
                None => error("must be a number (the boolean form of draft 4 is not supported)".into()),
            },
            k if ANNOTATIONS.contains(&k) => {}
            k => error(format!(
                "{k:?} is not in the supported JSON Schema subset ({}; annotations {})",
                KEYWORDS.join(", "),
                ANNOTATIONS.join(", ")
            )),
        }
    }
    schema
}

fn compile_types(value: &Value) -> Result<Types, String> {
    let bad = || format!("must be one of {} or a non-empty array of them", TYPE_NAMES.join(", "));
    match value {
        Value::String(name) => Types::parse(name).ok_or_else(bad),
        Value::Array(names) if !names.is_empty() => names.iter().try_fold(Types(0), |acc, name| {
            let t = name.as_str().and_then(Types::parse).ok_or_else(bad)?;
            Ok(Types(acc.0 | t.0))
        }),
        _ => Err(bad()),
    }
}
