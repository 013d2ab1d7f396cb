//! Seeded simulation of customers from known BG/NBD and Gamma-Gamma parameters, for the
//! tests, the oracle and the benchmark. Deterministic: the same seed gives the same customers
//! on every platform (xoshiro256** seeded by SplitMix64; Marsaglia-Tsang gamma variates).
//!
//! Each customer: first purchase at time 0, observed until T ~ Uniform(t_min, t_max) days.
//! λ ~ Gamma(r, rate α), p ~ Beta(a, b); repeat purchases at Poisson rate λ, and after each
//! repeat purchase the customer drops out with probability p (as lifetimes'
//! `beta_geometric_nbd_model`). Spend: ν ~ Gamma(q, rate v), each transaction ~ Gamma(p, rate ν).
//! The process runs on for `horizon_days` after T, to count what happened next.

use crate::AnalyticsError;
use crate::bgnbd::BgNbdParams;
use crate::gamma_gamma::GammaGammaParams;
use crate::summary::Summary;

/// xoshiro256** pseudo-random generator.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the state with SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform on the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        // Box-Muller; one of the pair is discarded to keep the stream simple.
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Exponential with the given rate (infinite when the rate is 0).
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate
    }

    /// Gamma(shape, rate) by Marsaglia & Tsang (2000), boosted for shape < 1; NaN unless
    /// shape is finite and > 0.
    pub fn gamma(&mut self, shape: f64, rate: f64) -> f64 {
        if !(shape.is_finite() && shape > 0.0) {
            return f64::NAN;
        }
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0, rate) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v / rate;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a, 1.0);
        let y = self.gamma(b, 1.0);
        if x + y > 0.0 { x / (x + y) } else { 0.5 }
    }
}

/// One simulated customer: its summary at T and what it did in (T, T + horizon].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedCustomer {
    pub summary: Summary,
    pub future_purchases: u32,
}

/// Simulates `n` customers (module docs); refuses invalid parameters, a T range other than
/// 0 <= t_min <= t_max < inf, and a horizon that is not finite and >= 0.
pub fn simulate(
    bg: &BgNbdParams,
    gg: &GammaGammaParams,
    n: usize,
    (t_min, t_max): (f64, f64),
    horizon_days: f64,
    seed: u64,
) -> Result<Vec<SimulatedCustomer>, AnalyticsError> {
    let bg = BgNbdParams::new(bg.r, bg.alpha, bg.a, bg.b)?;
    let gg = GammaGammaParams::new(gg.p, gg.q, gg.v)?;
    if !(0.0 <= t_min && t_min <= t_max && t_max.is_finite()) {
        return Err(AnalyticsError::InvalidArgument {
            name: "T range",
            reason: "need 0 <= t_min <= t_max < inf",
        });
    }
    if !(horizon_days.is_finite() && horizon_days >= 0.0) {
        return Err(AnalyticsError::InvalidArgument {
            name: "horizon_days",
            reason: "must be finite and >= 0",
        });
    }
    let mut rng = Rng::new(seed);
    Ok((0..n)
        .map(|_| {
            let big_t = t_min + (t_max - t_min) * rng.uniform();
            let lambda = rng.gamma(bg.r, bg.alpha);
            let p = rng.beta(bg.a, bg.b);
            let nu = rng.gamma(gg.q, gg.v);
            let (mut x, mut recency, mut spend, mut future) = (0u32, 0.0, 0.0, 0u32);
            let mut time = 0.0;
            loop {
                time += rng.exponential(lambda);
                if time.is_nan() || time > big_t + horizon_days {
                    break;
                }
                if time <= big_t {
                    x += 1;
                    recency = time;
                    spend += rng.gamma(gg.p, nu);
                } else {
                    future += 1;
                }
                if rng.uniform() < p {
                    break;
                }
            }
            let frequency = f64::from(x);
            SimulatedCustomer {
                summary: Summary {
                    frequency,
                    recency,
                    t: big_t,
                    monetary_value: if x > 0 { spend / frequency } else { 0.0 },
                },
                future_purchases: future,
            }
        })
        .collect())
}
