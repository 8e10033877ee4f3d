//! The only code that runs kubectl: read a VirtualService, and patch one with a JSON merge patch
//! given on stdin.

use super::IstioFlags;
use crate::fail::Fail;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// The resource kind, fully qualified (other CRDs are named `virtualservice` too).
const VIRTUAL_SERVICE: &str = "virtualservice.networking.istio.io";

/// kubectl with the context and namespace the flags name.
pub struct Kubectl {
    program: String,
    context: Option<String>,
    namespace: Option<String>,
}

impl Kubectl {
    pub fn new(flags: &IstioFlags) -> Kubectl {
        Kubectl { program: flags.kubectl.clone(), context: flags.context.clone(), namespace: flags.namespace.clone() }
    }

    /// `kubectl [--context C] [-n NS] ARGS…`, as written in messages.
    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut all: Vec<String> = Vec::new();
        if let Some(context) = &self.context {
            all.extend(["--context".to_owned(), context.clone()]);
        }
        if let Some(ns) = &self.namespace {
            all.extend(["-n".to_owned(), ns.clone()]);
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let mut command = Command::new(&self.program);
        command.args(&all);
        (command, format!("{} {}", self.program, all.join(" ")))
    }

    /// Runs kubectl with `stdin`; its stdout, or why it failed (the command, what kubectl said).
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, KubectlError> {
        let (mut command, shown) = self.command(args);
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let cannot = |e: std::io::Error| KubectlError { message: format!("cannot run `{shown}`: {e}"), ran: false };
        let mut child = command.spawn().map_err(cannot)?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes).map_err(cannot)?;
        }
        let done = child.wait_with_output().map_err(cannot)?;
        if !done.status.success() {
            let said = String::from_utf8_lossy(&done.stderr);
            let said = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
            return Err(KubectlError { message: format!("`{shown}` failed: {said}"), ran: true });
        }
        Ok(done.stdout)
    }

    /// The VirtualService `name` as the API server holds it.
    pub fn get_virtual_service(&self, name: &str) -> Result<Value, KubectlError> {
        let out = self.run(&["get", VIRTUAL_SERVICE, name, "-o", "json"], None)?;
        serde_json::from_slice(&out).map_err(|e| KubectlError {
            message: format!("kubectl get {VIRTUAL_SERVICE} {name} printed no JSON ({e})"),
            ran: true,
        })
    }

    /// Applies a JSON merge patch to the VirtualService `name`.
    pub fn patch_virtual_service(&self, name: &str, patch: &Value) -> Result<(), KubectlError> {
        let text = serde_json::to_vec(patch).unwrap_or_default();
        self.run(&["patch", VIRTUAL_SERVICE, name, "--type", "merge", "--patch-file", "/dev/stdin"], Some(&text))?;
        Ok(())
    }
}

/// A kubectl call that failed: what it said, and whether kubectl ran at all.
#[derive(Debug)]
pub struct KubectlError {
    pub message: String,
    ran: bool,
}

impl std::fmt::Display for KubectlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl KubectlError {
    /// The usual one-line failure.
    pub fn fail(&self) -> Fail {
        let todo = if self.ran {
            "check the context and namespace, and that `meshver render istio` was applied there"
        } else {
            "install kubectl, or give --kubectl PATH"
        };
        Fail::new(&self.message, todo)
    }
}
