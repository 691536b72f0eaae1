//! Entry points for fuzzing the parsers that read hostile input: the Dockerfile
//! parser and word expansion, the `.dockerignore` matcher, layer extraction and
//! image references. The `cargo fuzz` targets in `fuzz/` call these, and so does
//! `tests/fuzz_replay.rs`, which replays the committed corpus and a seeded burst
//! of random inputs on the stable toolchain. Each must return (an error is fine)
//! for every input: never panic, hang or write outside its directory.

use std::collections::HashMap;

/// Parse `data` as a Dockerfile, then expand every instruction's text as a word
/// list with a few variables set.
pub fn dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::dockerfile::parse("Dockerfile", &text);
    let mut vars = crate::dockerfile::Vars::new();
    vars.insert("A".into(), "apple".into());
    vars.insert("EMPTY".into(), String::new());
    vars.insert("SP".into(), "x y".into());
    for escape in ['\\', '`'] {
        let lx = crate::dockerfile::Lexer::new(escape);
        for line in text.lines().take(64) {
            let _ = lx.words(line, &vars);
            let _ = lx.word(line, &vars);
        }
    }
}

/// Compile `data` as a `.dockerignore` and match a few paths against it.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ig) = crate::dockerfile::Ignore::parse(".dockerignore", &text) {
        for p in [
            "a",
            "a/b",
            "a/b/c.txt",
            ".git/HEAD",
            "node_modules/x/y.js",
            "Dockerfile",
        ] {
            let _ = ig.is_ignored(p);
        }
    }
}

/// Extract `data` as an uncompressed tar into a fresh directory, inside a parent
/// that holds a marker file the extraction must never touch.
pub fn extract(data: &[u8]) {
    let Ok(parent) = tempfile::tempdir() else {
        return;
    };
    let marker = parent.path().join("marker");
    let root = parent.path().join("root");
    if std::fs::write(&marker, b"kiln").is_err() || std::fs::create_dir(&root).is_err() {
        return;
    }
    let mut recorded = HashMap::new();
    let _ = crate::layer::extract::extract(data, &root, false, &mut recorded);
    assert!(
        std::fs::read(&marker).is_ok_and(|m| m == b"kiln"),
        "extraction touched a file outside its root"
    );
}

/// Parse `data` as an image reference; a parsed one prints and parses again the same.
pub fn reference(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = crate::image::Reference::parse(&text) {
        let again = crate::image::Reference::parse(&r.to_string());
        assert!(
            again.is_ok(),
            "{text:?} parsed as {r} which does not parse: {again:?}"
        );
    }
}
