//! The stable short run of every fuzz target, part of `make test` (no nightly, no libFuzzer):
//! each target's seeds (seeds/<target>/), then mutations of them (bit flips, byte edits,
//! tokens from dicts/<target>.dict, splices between seeds) from a fixed-seed generator, so
//! that every run tries the same inputs. `MESHVER_FUZZ_RUNS` sets the mutations per target
//! (default below), `MESHVER_FUZZ_SEED` another sequence. A failing input is written out and
//! printed as a byte string, ready to become a regression test in src/.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Mutations per target: about two seconds for all of them in a debug build on two cores.
const DEFAULT_RUNS: usize = 20_000;

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    let runs = env_number("MESHVER_FUZZ_RUNS").unwrap_or(DEFAULT_RUNS as u64) as usize;
    let seed = env_number("MESHVER_FUZZ_SEED").unwrap_or(0x6d65_7368_7665_7221);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = meshver_fuzz::TARGETS
            .iter()
            .map(|(name, check)| scope.spawn(move || run(name, *check, runs, seed)))
            .collect();
        running.into_iter().filter_map(|t| t.join().unwrap_or_else(|_| Some("a target's runner died".into()))).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every target has its libFuzzer entry point, its seeds and nothing is left out.
#[test]
fn every_target_is_wired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names: Vec<&str> = meshver_fuzz::TARGETS.iter().map(|(name, _)| *name).collect();
    let mut entry_points = file_stems(&root.join("fuzz_targets"));
    entry_points.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(entry_points, sorted, "fuzz_targets/ and TARGETS");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for name in names {
        assert!(!seeds(name).is_empty(), "seeds/{name}/ is empty");
        assert!(manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")), "Cargo.toml has no [[bin]] {name}");
    }
}

/// Runs one target; the report of its first failure, if any.
fn run(name: &str, check: fn(&[u8]), runs: usize, seed: u64) -> Option<String> {
    let seeds = seeds(name);
    let tokens = dictionary(name);
    let mut rng =
        Rng(seed ^ name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
    let started = Instant::now();
    let inputs = seeds.iter().cloned().chain((0..runs).map(|_| mutate(&mut rng, &seeds, &tokens)));
    for (index, input) in inputs.enumerate() {
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let written = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-failure"));
            let _ = std::fs::write(&written, &input);
            return Some(format!(
                "target {name}: input {index} fails (the panic is above), written to {}:\n  b\"{}\"",
                written.display(),
                input.escape_ascii()
            ));
        }
    }
    eprintln!("fuzz short run: {name}: {} inputs in {:.2?}", seeds.len() + runs, started.elapsed());
    None
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn file_stems(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.filter_map(|e| Some(e.path().file_stem()?.to_str()?.to_owned())).collect()
}

/// The tokens of dicts/<target>.dict, libFuzzer's format: `name="value"` or `"value"` per
/// line, `#` comments, `\xNN`, `\\` and `\"` escapes.
fn dictionary(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dicts").join(format!("{name}.dict"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let quoted = line.get(line.find('"')? + 1..line.rfind('"')?)?;
            let mut token = Vec::new();
            let mut bytes = quoted.bytes();
            while let Some(b) = bytes.next() {
                if b != b'\\' {
                    token.push(b);
                    continue;
                }
                match bytes.next()? {
                    b'x' => {
                        let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                        token.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    other => token.push(other),
                }
            }
            Some(token)
        })
        .collect()
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// xorshift64*: small, fast, and the same sequence everywhere.
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

/// Bytes parsers give meaning to, tried more often than chance would.
const INTERESTING: &[u8] = b"\0\xff\n\r\t \"%+,;=&?/._-*\\{}[]:0129vVq";

/// A seed with one to four edits.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds.get(rng.below(seeds.len())).cloned().unwrap_or_default();
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        let pick = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                INTERESTING.get(rng.below(INTERESTING.len())).copied().unwrap_or(0)
            } else {
                rng.next() as u8
            }
        };
        match rng.below(7) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 if at < input.len() => input[at] = pick(rng),
            2 => input.insert(at, pick(rng)),
            3 => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            4 if !tokens.is_empty() => {
                let token = &tokens[rng.below(tokens.len())];
                input.splice(at..at, token.iter().copied());
            }
            5 => {
                let end = (at + 1 + rng.below(16)).min(input.len());
                let piece = input[at.min(end)..end].to_vec();
                input.splice(at..at, piece.iter().copied().cycle().take(piece.len() * (1 + rng.below(8))));
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
        }
    }
    input
}
