//! kiln: build OCI images from Dockerfiles without a daemon or privileges.
//!
//! Data flows one way: `dockerfile` → `engine` → `layer`/`fs` → `image` → `registry`/`store`.
//! See README.md, section "Architecture".

pub mod attest;
pub mod bake;
pub mod cli;
pub mod clip;
pub mod digest;
pub mod dockerfile;
pub mod engine;
pub mod exec;
pub mod fs;
pub mod fuzzing;
pub mod image;
pub mod layer;
pub mod platform;
pub mod registry;
pub mod report;
pub mod store;
