//! A bounded smoke run of every fuzz target (`src/fuzzing.rs`): its seeds and deterministic
//! mutations of them, so that a decoder that starts to panic shows here, not only in the long
//! cargo-fuzz runs (`fuzz/README.md`). Any crash found by fuzzing becomes a seed or a unit test.

use std::time::{Duration, Instant};

use fowl::fuzzing::{seeds, TARGETS};

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`: flips, insertions, deletions, a splice with another seed.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.next() as u8);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            3 => out.truncate(rng.below(out.len() + 1)),
            4 if !other.is_empty() => {
                let i = rng.below(out.len() + 1);
                let j = rng.below(other.len());
                out.splice(i..i, other[j..].iter().copied().take(64));
            }
            _ => {
                let interesting = [0u8, 0xff, b'"', b'{', b'}', b'\n', 0x7f, 0x80];
                if !out.is_empty() {
                    let i = rng.below(out.len());
                    out[i] = interesting[rng.below(interesting.len())];
                }
            }
        }
    }
    out
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_their_mutations() {
    const RUNS: usize = 20_000;
    const PER_TARGET: Duration = Duration::from_secs(3);
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has seeds");
        for s in &seeds {
            target(s);
        }
        let mut rng = Rng(0x9e3779b97f4a7c15 ^ name.len() as u64);
        let start = Instant::now();
        let mut runs = 0;
        while runs < RUNS && start.elapsed() < PER_TARGET {
            let a = &seeds[rng.below(seeds.len())];
            let b = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, a, b);
            target(&input);
            runs += 1;
        }
        eprintln!("{name}: {runs} inputs");
    }
}

/// Writes the seeds as cargo-fuzz corpora: `cargo test --test fuzz_smoke -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, _) in TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
