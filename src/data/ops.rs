//! Body operations: compiled from [`OpConfig`] at load, applied to a parsed body.
//!
//! Every walk over a body follows a configured pointer, so recursion is bounded by
//! [`MAX_SEGMENTS`](super::pointer::MAX_SEGMENTS), whatever the body's depth.

use super::model::OpConfig;
use super::pointer::{Pointer, Segment};
use super::DataError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A validated operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// `from` and `to` share their segments up to and including the last `*` (`shared` of them).
    Rename {
        from: Pointer,
        to: Pointer,
        shared: usize,
    },
    Add {
        path: Pointer,
        value: Value,
    },
    Remove {
        path: Pointer,
    },
    Map {
        path: Pointer,
        values: BTreeMap<String, String>,
    },
    Wrap {
        path: Pointer,
        into: String,
    },
    Unwrap {
        path: Pointer,
        from: String,
    },
}

impl Op {
    /// Validates one configured op; `at` is its config path (`.changes[0].request[1]`).
    pub fn compile(config: &OpConfig, at: &str, errors: &mut Vec<DataError>) -> Option<Op> {
        let mut pointer = |field: &str, text: &str| match Pointer::parse(text) {
            Ok(p) => Some(p),
            Err(message) => {
                errors.push(DataError::new(format!("{at}.{field}"), message));
                None
            }
        };
        let op = match config {
            OpConfig::Rename { from, to } => {
                let (from_p, to_p) = (pointer("from", from), pointer("to", to));
                let (from, to) = (from_p?, to_p?);
                Op::Rename { shared: 0, from, to }
            }
            OpConfig::Add { path, value } => Op::Add { path: pointer("path", path)?, value: value.clone() },
            OpConfig::Remove { path } => Op::Remove { path: pointer("path", path)? },
            OpConfig::Map { path, values } => Op::Map { path: pointer("path", path)?, values: values.clone() },
            OpConfig::Wrap { path, into } => Op::Wrap { path: pointer("path", path)?, into: into.clone() },
            OpConfig::Unwrap { path, from } => Op::Unwrap { path: pointer("path", path)?, from: from.clone() },
        };
        let mut fail = |field: &str, message: String| {
            errors.push(DataError::new(format!("{at}.{field}"), message));
            None
        };
        match op {
            Op::Rename { from, to, .. } => {
                if from.segments.is_empty() || to.segments.is_empty() {
                    let field = if from.segments.is_empty() { "from" } else { "to" };
                    return fail(field, "the whole body cannot be renamed: name a field (use wrap or unwrap)".into());
                }
                if from.ends_with_each() || to.ends_with_each() {
                    let field = if from.ends_with_each() { "from" } else { "to" };
                    return fail(field, "a renamed pointer must end with a field, not '*'".into());
                }
                if from == to {
                    return fail("to", format!("renames {from} to itself"));
                }
                let shared = from.wildcards().last().map_or(0, |i| i + 1);
                let same_wildcards = from.wildcards().eq(to.wildcards());
                let same_prefix = from.segments.get(..shared) == to.segments.get(..shared);
                if !same_wildcards || !same_prefix {
                    return fail(
                        "to",
                        format!(
                            "{to} must have its '*' at the same positions as {from}, after the same segments: a rename moves a field within each element, not between arrays"
                        ),
                    );
                }
                Some(Op::Rename { from, to, shared })
            }
            Op::Add { ref path, .. } | Op::Remove { ref path } if path.segments.is_empty() => {
                fail("path", "the whole body cannot be added or removed: name a field".into())
            }
            Op::Add { ref path, .. } | Op::Remove { ref path } if path.ends_with_each() => {
                fail("path", format!("{path} ends with '*': name the array itself, or a field of each element"))
            }
            Op::Wrap { ref into, .. } if into.is_empty() => fail("into", "the member name is empty".into()),
            Op::Unwrap { ref from, .. } if from.is_empty() => fail("from", "the member name is empty".into()),
            op => Some(op),
        }
    }

    /// The pointer whose value this op reads, and the config field naming it.
    pub fn reads(&self) -> Option<(&Pointer, &'static str)> {
        match self {
            Op::Rename { from, .. } => Some((from, "from")),
            Op::Map { path, .. } | Op::Wrap { path, .. } | Op::Unwrap { path, .. } => Some((path, "path")),
            Op::Add { .. } | Op::Remove { .. } => None,
        }
    }

    /// The pointer this op takes away from the body.
    pub fn takes_away(&self) -> Option<&Pointer> {
        match self {
            Op::Rename { from, .. } => Some(from),
            Op::Remove { path } => Some(path),
            _ => None,
        }
    }

    /// The pointer this op puts (back) into the body.
    pub fn puts(&self) -> Option<&Pointer> {
        match self {
            Op::Rename { to, .. } => Some(to),
            Op::Add { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Applies the op to a body in place. Absent fields make it a no-op.
    pub fn apply(&self, body: &mut Value) {
        match self {
            Op::Rename { from, to, shared } => {
                let (Some(prefix), Some(from), Some(to)) =
                    (from.segments.get(..*shared), from.segments.get(*shared..), to.segments.get(*shared..))
                else {
                    return;
                };
                each_mut(body, prefix, &mut |element| rename_within(element, from, to));
            }
            Op::Add { path, value } => {
                let Some((Segment::Key(key), parent)) = path.segments.split_last() else { return };
                each_mut_creating(body, parent, &mut |container| {
                    if let Value::Object(map) = container {
                        map.entry(key.as_str()).or_insert_with(|| value.clone());
                    }
                });
            }
            Op::Remove { path } => {
                let Some((Segment::Key(key), parent)) = path.segments.split_last() else { return };
                each_mut(body, parent, &mut |container| {
                    take(container, key);
                });
            }
            Op::Map { path, values } => each_mut(body, &path.segments, &mut |value| {
                if let Some(new) = value.as_str().and_then(|s| values.get(s)) {
                    *value = Value::String(new.clone());
                }
            }),
            Op::Wrap { path, into } => each_mut(body, &path.segments, &mut |value| {
                let mut wrapper = Map::new();
                wrapper.insert(into.clone(), value.take());
                *value = Value::Object(wrapper);
            }),
            Op::Unwrap { path, from } => each_mut(body, &path.segments, &mut |value| {
                if let Some(inner) = value.as_object_mut().and_then(|map| map.remove(from)) {
                    *value = inner;
                }
            }),
        }
    }
}

/// Calls `f` on every value the segments reach; a `*` fans out over an array's elements.
fn each_mut(value: &mut Value, segments: &[Segment], f: &mut dyn FnMut(&mut Value)) {
    walk(value, segments, false, f);
}

/// Like [`each_mut`], but missing object members named on the way are created as `{}`.
fn each_mut_creating(value: &mut Value, segments: &[Segment], f: &mut dyn FnMut(&mut Value)) {
    walk(value, segments, true, f);
}

fn walk(value: &mut Value, segments: &[Segment], create: bool, f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = segments.split_first() else {
        f(value);
        return;
    };
    match (first, value) {
        (Segment::Each, Value::Array(items)) => items.iter_mut().for_each(|item| walk(item, rest, create, f)),
        (Segment::Key(key), Value::Object(map)) if create => {
            walk(map.entry(key.as_str()).or_insert_with(|| Value::Object(Map::new())), rest, create, f)
        }
        (Segment::Key(key), value) => {
            if let Some(child) = child_mut(value, key) {
                walk(child, rest, create, f);
            }
        }
        _ => {}
    }
}

/// An object's member, or an array's element when `key` is an index.
fn child_mut<'v>(value: &'v mut Value, key: &str) -> Option<&'v mut Value> {
    match value {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => items.get_mut(index(key)?),
        _ => None,
    }
}

fn index(key: &str) -> Option<usize> {
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    key.parse().ok()
}

/// Takes a member (or element) out of a container.
fn take(container: &mut Value, key: &str) -> Option<Value> {
    match container {
        Value::Object(map) => map.remove(key),
        Value::Array(items) => {
            let i = index(key).filter(|i| *i < items.len())?;
            Some(items.remove(i))
        }
        _ => None,
    }
}

/// Moves the value at `from` to `to`, both relative to `element` and free of `*`.
/// When `to` cannot be written (a non-object in the way) nothing moves.
fn rename_within(element: &mut Value, from: &[Segment], to: &[Segment]) {
    let Some((Segment::Key(from_key), from_parent)) = from.split_last() else { return };
    let Some(taken) = walk_mut(element, from_parent).and_then(|parent| take(parent, from_key)) else { return };
    if can_set(element, to) {
        set_creating(element, to, taken);
    } else if let Some(parent) = walk_mut(element, from_parent) {
        put_back(parent, from_key, taken);
    }
}

/// The value at a `*`-free path, if present.
fn walk_mut<'v>(mut value: &'v mut Value, path: &[Segment]) -> Option<&'v mut Value> {
    for segment in path {
        let Segment::Key(key) = segment else { return None };
        value = child_mut(value, key)?;
    }
    Some(value)
}

/// Whether [`set_creating`] can write `path`: every existing value on the way is an object
/// (or an array with that index), and the last one can hold the member.
fn can_set(mut value: &Value, path: &[Segment]) -> bool {
    for segment in path {
        let Segment::Key(key) = segment else { return false };
        value = match value {
            Value::Object(map) => match map.get(key) {
                Some(child) => child,
                None => return true,
            },
            Value::Array(items) => match index(key).and_then(|i| items.get(i)) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// Writes `new` at `path`, creating missing objects on the way, replacing what was there.
fn set_creating(mut value: &mut Value, path: &[Segment], new: Value) {
    let Some((Segment::Key(last), parents)) = path.split_last() else { return };
    for segment in parents {
        let Segment::Key(key) = segment else { return };
        value = match value {
            Value::Object(map) => map.entry(key.as_str()).or_insert_with(|| Value::Object(Map::new())),
            other => match child_mut(other, key) {
                Some(child) => child,
                None => return,
            },
        };
    }
    match value {
        Value::Object(map) => {
            map.insert(last.clone(), new);
        }
        Value::Array(items) => {
            if let Some(slot) = index(last).and_then(|i| items.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

/// Undoes [`take`].
fn put_back(container: &mut Value, key: &str, value: Value) {
    match container {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => {
            if let Some(i) = index(key).filter(|i| *i <= items.len()) {
                items.insert(i, value);
            }
        }
        _ => {}
    }
}
