//! The data-vs-data floor of every data set at a few sample sizes, with the
//! time each metric takes.
//!
//! Run: `cargo run --release -p diffuse-data --example floors`

use std::time::Instant;

use diffuse_data::{Dataset, energy_distance, floor_with_seed, sliced_wasserstein};

fn main() -> diffuse_data::Result<()> {
    println!("floors (mean over seeds 0-3): sliced W2 / energy distance");
    for &d in Dataset::all() {
        let mut cells = Vec::new();
        for n in [1000usize, 5000] {
            let (mut sw, mut e) = (0.0, 0.0);
            for seed in 0..4 {
                let f = floor_with_seed(d, n, seed)?;
                sw += f.sliced_wasserstein / 4.0;
                e += f.energy_distance / 4.0;
            }
            cells.push(format!("n={n}: {sw:.4} / {e:.5}"));
        }
        println!("{:>13}  {}", d.name(), cells.join("   "));
    }
    println!("timings (moons, n = m):");
    for n in [1000usize, 5000, 10_000] {
        let a = Dataset::Moons.sample(n, 0)?;
        let b = Dataset::Moons.held_out(n, 0)?;
        let t = Instant::now();
        sliced_wasserstein(a.view(), b.view())?;
        let sw = t.elapsed();
        let t = Instant::now();
        energy_distance(a.view(), b.view())?;
        println!(
            "  n={n}: sliced W2 {sw:?}, energy distance {:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    Dataset::Pinwheel.sample(1 << 20, 0)?;
    println!("generating 2^20 pinwheel points: {:?}", t.elapsed());
    Ok(())
}
