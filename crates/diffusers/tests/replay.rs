//! Replays of the conformance runs with diffuse's solvers and the exact
//! Gaussian-mixture denoiser: final x within 1e-4 of diffusers' and
//! k-diffusion's (max abs error relative to max(1, |x|)), same NFE.

use std::path::PathBuf;

use diffuse_diffusers::parse_python_json;
use diffuse_diffusers::replay::{final_error, replay};

#[test]
fn conformance_runs_are_reproduced() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    paths.sort();
    let (mut passed, mut pending) = (Vec::new(), Vec::new());
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let case = parse_python_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let r = match replay(&case) {
            Ok(r) => r,
            Err(diffuse_core::Error::Unsupported(why)) => {
                println!("{name:40} not yet: {why}");
                pending.push(name);
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let err = final_error(&case, &r).unwrap();
        let nfe = case["num_model_evals"].as_u64().unwrap() as usize;
        println!("{name:40} {:10} nfe {:3}  error {err:.2e}", r.solver, r.nfe);
        assert_eq!(r.nfe, nfe, "{name}: NFE");
        assert!(err <= 1e-4, "{name}: final x differs by {err:e} (relative)");
        passed.push(name);
    }
    println!(
        "{} reproduced, {} not yet replayable: {pending:?}",
        passed.len(),
        pending.len()
    );
    // Every case of the folder is reproduced.
    assert!(pending.is_empty(), "not replayable: {pending:?}");
    assert_eq!(passed.len(), 23);
}
