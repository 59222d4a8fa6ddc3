//! Replays every fuzz target's seed corpus (`fuzz/seeds/<target>/*`)
//! through the target's body, so known inputs stay clean and a target
//! without a body here fails instead of silently going unchecked.

use std::path::Path;

#[test]
fn every_seed_of_every_fuzz_target_passes() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&seeds).expect("fuzz/seeds").flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some((_, body)) = peep_transport::fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
            panic!("fuzz/seeds/{name} has no target body in peep_transport::fuzz::TARGETS");
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
    for (name, _) in peep_transport::fuzz::TARGETS {
        assert!(seeds.join(name).is_dir(), "fuzz target {name} has no seeds in fuzz/seeds/{name}");
    }
    assert!(replayed > 0);
}
