//! `kiln bake`: buildx's bake files (HCL or JSON) → the targets to build, as
//! buildx resolves them. Pure: the files' text, the environment and the
//! command line in, a [`Definition`] out; the engine builds it.
//!
//! - [`parse`]: text → blocks of unevaluated attributes with file:line;
//! - [`funcs`]: buildx's standard library of HCL functions;
//! - [`userfunc`]: the file's own `function` blocks;
//! - [`eval`]: variables (defaults, the environment), then each target
//!   (its `matrix` forked), to [`target::Target`] values;
//! - [`target`]: a target's keys, merging (files, `inherits`), `--set`, and
//!   the JSON `--print` writes.

pub mod eval;
pub mod funcs;
pub mod parse;
pub mod target;
pub mod userfunc;

pub use eval::{resolve, Definition, Inputs};
