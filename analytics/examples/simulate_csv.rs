//! Writes simulated customer summaries as CSV (frequency,recency,T,monetary_value), for the
//! lifetimes oracle: `cargo run -p crm-analytics --example simulate_csv -- N SEED out.csv`.
//! Generating parameters: BG/NBD r=0.24 α=4.41 a=0.79 b=2.43, Gamma-Gamma p=6.25 q=3.74
//! v=15.44, T ~ Uniform(365, 730) days.

use anyhow::Context;
use crm_analytics::bgnbd::BgNbdParams;
use crm_analytics::gamma_gamma::GammaGammaParams;
use crm_analytics::simulate::simulate;
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, n, seed, out] = args.as_slice() else {
        anyhow::bail!("usage: simulate_csv N SEED out.csv");
    };
    let n: usize = n.parse().context("N")?;
    let seed: u64 = seed.parse().context("SEED")?;
    let bg = BgNbdParams::new(0.24, 4.41, 0.79, 2.43)?;
    let gg = GammaGammaParams::new(6.25, 3.74, 15.44)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).context("create output")?);
    writeln!(w, "frequency,recency,T,monetary_value")?;
    for c in simulate(&bg, &gg, n, (365.0, 730.0), 0.0, seed)? {
        let s = c.summary;
        writeln!(
            w,
            "{},{},{},{}",
            s.frequency, s.recency, s.t, s.monetary_value
        )?;
    }
    w.flush()?;
    Ok(())
}
