//! meshver: API version management in the sidecar.
//!
//! Data flows one way: the host adapter ([`host`], wasm only) hands the request to
//! [`filter::on_request_headers`] through the [`filter::Host`] trait; [`resolve::decide`]
//! turns the request's bytes and the [`config::Catalog`] into a [`resolve::Plan`], which
//! the filter applies through the host. Everything but `host` is plain Rust, tested natively.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod caller;
pub mod config;
pub mod data;
pub mod filter;
pub mod header_map;
pub mod lifecycle;
pub mod metrics;
pub mod problem;
pub mod request;
pub mod resolve;
pub mod sources;
pub mod sticky;
pub mod version;

#[cfg(target_arch = "wasm32")]
mod host;
