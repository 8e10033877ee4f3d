//! Build step of the filter: `meshver-trim-exports [--section NAME] [--out PATH] MODULE`
//! writes the module (to PATH, by default in place) exporting only the proxy-wasm callbacks
//! that the list section NAME (default `meshver.callbacks`) names.
//!
//! One build gives two modules this way: the header filter (`meshver.callbacks`) and the body
//! filter (`meshver.body_callbacks`, which adds the body and response callbacks). The output
//! is written to a temporary file and renamed over PATH, so the input (cargo's artifact, which
//! cargo hard-links into place) is never changed.
//!
//! The SDK exports every `proxy_on_*` callback, each a default that does nothing. Envoy calls
//! a callback only when the module exports it, and each call is an entry into the VM; an
//! HTTP request would enter it seven times where meshver needs three. The module names the
//! callbacks it implements in a custom section ([`LIST_SECTION`], written by `src/host`,
//! kept so that running the step again changes nothing); every other `proxy_on_*` export is
//! removed. Functions stay in the code: only export entries go, so nothing else moves.

use std::collections::BTreeSet;
use std::process::ExitCode;
use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

/// The default custom section listing the callbacks to keep, whitespace-separated.
const LIST_SECTION: &str = "meshver.callbacks";
/// The prefix of the callbacks the host may call.
const CALLBACK_PREFIX: &str = "proxy_on_";

fn main() -> ExitCode {
    let Some(Args { section, input, out }) = parse_args(std::env::args().skip(1)) else {
        eprintln!("usage: meshver-trim-exports [--section NAME] [--out PATH] MODULE.wasm (default: in place)");
        return ExitCode::from(2);
    };
    let path = &out;
    let outcome = std::fs::read(&input).map_err(|e| format!("cannot read {input}: {e}")).and_then(|module| {
        let trimmed = trim(&module, &section)?;
        let temporary = format!("{out}.trimming");
        std::fs::write(&temporary, &trimmed.module).map_err(|e| format!("cannot write {temporary}: {e}"))?;
        std::fs::rename(&temporary, &out).map_err(|e| format!("cannot write {out}: {e}"))?;
        Ok(trimmed)
    });
    match outcome {
        Ok(Trimmed { removed, .. }) if removed.is_empty() => {
            println!("{path}: exports already trimmed");
            ExitCode::SUCCESS
        }
        Ok(Trimmed { removed, .. }) => {
            println!("{path}: removed {} unused callback export(s): {}", removed.len(), removed.join(" "));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("meshver-trim-exports: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    section: String,
    input: String,
    out: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Option<Args> {
    let (mut section, mut out, mut input) = (LIST_SECTION.to_owned(), None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--section" => section = args.next()?,
            "--out" => out = Some(args.next()?),
            _ if input.is_none() && !arg.starts_with("--") => input = Some(arg),
            _ => return None,
        }
    }
    let input = input?;
    Some(Args { section, out: out.unwrap_or_else(|| input.clone()), input })
}

#[derive(Debug)]
struct Trimmed {
    module: Vec<u8>,
    removed: Vec<String>,
}

/// The module without the callback exports its list does not name. A module without the
/// list is refused, as is a listed callback that is not exported (a typo would silently drop
/// the callback it meant).
fn trim(module: &[u8], section: &str) -> Result<Trimmed, String> {
    let keep = callback_list(module, section)?;
    let mut out = Module::new();
    let mut removed = Vec::new();
    let mut exported = BTreeSet::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| format!("not a readable wasm module: {e}"))?;
        if let Payload::ExportSection(reader) = &payload {
            let mut exports = ExportSection::new();
            for export in reader.clone() {
                let export = export.map_err(|e| format!("unreadable export section: {e}"))?;
                exported.insert(export.name.to_owned());
                let is_callback = export.name.starts_with(CALLBACK_PREFIX);
                if is_callback && !keep.contains(export.name) {
                    removed.push(export.name.to_owned());
                    continue;
                }
                exports.export(export.name, export_kind(export.kind), export.index);
            }
            out.section(&exports);
        } else if let Some((id, range)) = payload.as_section() {
            let data = usize::try_from(range.start)
                .ok()
                .zip(usize::try_from(range.end).ok())
                .and_then(|(start, end)| module.get(start..end))
                .ok_or("a section lies outside the module")?;
            out.section(&RawSection { id, data });
        }
    }
    match keep.iter().find(|name| !exported.contains(*name)) {
        Some(missing) => Err(format!("`{section}` names {missing}, which the module does not export")),
        None => Ok(Trimmed { module: out.finish(), removed }),
    }
}

/// The callbacks named by the module's list section.
fn callback_list(module: &[u8], name: &str) -> Result<BTreeSet<String>, String> {
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::CustomSection(section) = payload.map_err(|e| format!("not a readable wasm module: {e}"))? {
            if section.name() == name {
                let text = std::str::from_utf8(section.data()).map_err(|_| format!("`{name}` is not UTF-8"))?;
                return Ok(text.split_whitespace().map(str::to_owned).collect());
            }
        }
    }
    Err(format!("the module has no `{name}` section naming the callbacks to keep"))
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, CustomSection, Function, FunctionSection, Instruction, TypeSection};

    /// A module exporting one empty function under each name, with the list section if given.
    fn module(exports: &[&str], list: Option<&str>) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        let mut export_section = ExportSection::new();
        let mut code = CodeSection::new();
        for (index, name) in exports.iter().enumerate() {
            functions.function(0);
            export_section.export(name, ExportKind::Func, index as u32);
            let mut body = Function::new([]);
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        module.section(&functions);
        module.section(&export_section);
        module.section(&code);
        if let Some(list) = list {
            module.section(&CustomSection { name: LIST_SECTION.into(), data: list.as_bytes().into() });
        }
        module.finish()
    }

    fn exports(module: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(module) {
            if let Payload::ExportSection(reader) = payload.unwrap() {
                names.extend(reader.into_iter().map(|e| e.unwrap().name.to_owned()));
            }
        }
        names
    }

    const SDK: &[&str] = &["_initialize", "proxy_on_memory_allocate", "proxy_on_request_headers", "proxy_on_log"];

    #[test]
    fn keeps_the_listed_callbacks_and_every_other_export() {
        let trimmed =
            trim(&module(SDK, Some("proxy_on_memory_allocate\nproxy_on_request_headers")), LIST_SECTION).unwrap();
        assert_eq!(exports(&trimmed.module), ["_initialize", "proxy_on_memory_allocate", "proxy_on_request_headers"]);
        assert_eq!(trimmed.removed, ["proxy_on_log"]);
        wasmparser::validate(&trimmed.module).unwrap();
    }

    #[test]
    fn a_trimmed_module_is_left_as_it_is() {
        let once =
            trim(&module(SDK, Some("proxy_on_memory_allocate proxy_on_request_headers")), LIST_SECTION).unwrap().module;
        let twice = trim(&once, LIST_SECTION).unwrap();
        assert_eq!(twice.module, once);
        assert!(twice.removed.is_empty());
    }

    #[test]
    fn refuses_a_module_without_its_list_or_with_a_wrong_one() {
        assert!(trim(&module(SDK, None), LIST_SECTION).unwrap_err().contains("no `meshver.callbacks` section"));
        let typo =
            trim(&module(SDK, Some("proxy_on_memory_allocate proxy_on_request_header")), LIST_SECTION).unwrap_err();
        assert!(typo.contains("names proxy_on_request_header,"), "{typo}");
        assert!(trim(b"not wasm", LIST_SECTION).is_err());
        assert!(trim(&module(SDK, Some("proxy_on_log")), "other.list")
            .unwrap_err()
            .contains("no `other.list` section"));
    }
}
