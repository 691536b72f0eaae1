//! The fuzz targets on the stable toolchain: every committed corpus input of each
//! target (`fuzz/corpus/<target>`, grown by `fuzz/run-all.sh` with cargo fuzz),
//! then a seeded burst of random inputs and mutations of the corpus. A panic in
//! any of them fails the test with the input that caused it.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target, usize)] = &[
    ("dockerfile", kiln::fuzzing::dockerfile, 3000),
    ("dockerignore", kiln::fuzzing::dockerignore, 3000),
    ("reference", kiln::fuzzing::reference, 5000),
    ("extract", kiln::fuzzing::extract, 300),
];

/// xorshift64*: a fixed seed gives the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{target}: the corpus is empty");
    inputs
}

/// A random input: fresh bytes, bytes from the target's alphabet, or a corpus
/// entry with bytes flipped, inserted, deleted or spliced from another.
fn input(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"$:{}-+?#%/\\\"'`<>[]*!.\n\r\t =ARGFROMRUNCOPY@sha256:";
    match rng.below(4) {
        0 => (0..rng.below(512)).map(|_| rng.next() as u8).collect(),
        1 => (0..rng.below(512))
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect(),
        _ => {
            let mut v = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(v.len() + 1);
                match rng.below(4) {
                    0 if at < v.len() => v[at] ^= 1 << rng.below(8),
                    1 => v.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    _ => {
                        let other = &corpus[rng.below(corpus.len())];
                        let from = rng.below(other.len());
                        let len = rng.below(other.len() - from + 1).min(256);
                        v.splice(at..at, other[from..from + len].iter().copied());
                    }
                }
            }
            v
        }
    }
}

fn check(target: &str, f: Target, data: &[u8], origin: &str) {
    if std::panic::catch_unwind(|| f(data)).is_err() {
        panic!(
            "{target}: panicked on {origin}: {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_a_seeded_burst() {
    for (name, f, burst) in TARGETS {
        let inputs = corpus(name);
        for (i, data) in inputs.iter().enumerate() {
            check(name, *f, data, &format!("corpus entry {i}"));
        }
        let mut rng = Rng(0x6b69_6c6e_0000_0001 ^ name.len() as u64);
        for i in 0..*burst {
            let data = input(&mut rng, &inputs);
            check(name, *f, &data, &format!("burst input {i}"));
        }
    }
}
