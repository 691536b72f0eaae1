//! kiln: build OCI images from Dockerfiles without a daemon or privileges.
//!
//! Data flows one way: `dockerfile` → `build` → `layer`/`fs` → `image` → `registry`/`store`.
//! See README.md, section "Architecture".

pub mod dockerfile;
pub mod digest;
pub mod fs;
pub mod image;
pub mod layer;
pub mod store;
pub mod registry;
pub mod build;
pub mod report;
pub mod cli;
