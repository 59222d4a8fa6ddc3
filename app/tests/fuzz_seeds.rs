//! Replays every fuzz target's seed corpus (`fuzz/seeds/<target>/*`)
//! through the target's body (`peep::fuzz::all_targets`: the transport's,
//! the encoder's and the app's), so known inputs stay clean and a target
//! without a body — or a body without seeds — fails instead of silently
//! going unchecked. Also checks every target is a cargo-fuzz binary.

use std::path::Path;

#[test]
fn every_seed_of_every_fuzz_target_passes() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seeds = fuzz.join("seeds");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&seeds).expect("fuzz/seeds").flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some((_, body)) = peep::fuzz::all_targets().find(|(n, _)| *n == name) else {
            panic!("fuzz/seeds/{name} has no target body in peep::fuzz::all_targets()");
        };
        let mut files = 0;
        for seed in std::fs::read_dir(dir.path()).expect("seed dir").flatten() {
            let data = std::fs::read(seed.path()).expect("read seed");
            body(&data);
            files += 1;
        }
        assert!(files > 0, "fuzz/seeds/{name} is empty");
        replayed += files;
    }
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in peep::fuzz::all_targets() {
        assert!(seeds.join(name).is_dir(), "fuzz target {name} has no seeds in fuzz/seeds/{name}");
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz target {name} is not a bin in fuzz/Cargo.toml");
        assert!(fuzz.join(format!("fuzz_targets/{name}.rs")).is_file(), "fuzz/fuzz_targets/{name}.rs is missing");
    }
    assert!(replayed > 0);
}
