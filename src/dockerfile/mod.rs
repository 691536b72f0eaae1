//! Everything about the Dockerfile language: parsing, word expansion and `.dockerignore`.
//! Nothing here touches the filesystem of a build or the network.

mod glob;
pub mod heredoc;
pub mod ignore;
mod instruction;
pub mod lex;
pub mod parse;

pub use ignore::Ignore;
pub use lex::{Lexer, Vars};
pub use parse::{parse, Command, CopyArgs, Dockerfile, DockerfileError, Form, Instruction};
