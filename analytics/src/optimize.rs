//! Nelder-Mead minimisation, a transcription of SciPy's `minimize(method="Nelder-Mead")`
//! (non-adaptive: reflection 1, expansion 2, contraction 0.5, shrink 0.5).
//!
//! Why not `argmin`'s NelderMead: its only stopping rule is the standard deviation of the
//! simplex's values, while the tolerance this crate documents is SciPy's (`tol` sets both
//! `xatol` and `fatol`: stop when every vertex is within `tol` of the best one in every
//! coordinate *and* in value). Reproducing that rule exactly matters more than a dependency.
//!
//! Start simplex as SciPy's: x0, and x0 with coordinate k multiplied by 1.05 (set to 0.00025
//! when it is 0). A non-finite objective value is treated as +inf, so the simplex moves away
//! from overflowing parameters instead of propagating NaN.

/// Where the minimisation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// The tolerance was met before `max_iter` iterations.
    pub converged: bool,
}

/// Minimises `f` from `x0` with SciPy's Nelder-Mead, `xatol = fatol = tol`.
pub fn nelder_mead<F: FnMut(&[f64]) -> f64>(
    mut f: F,
    x0: &[f64],
    tol: f64,
    max_iter: usize,
) -> Minimum {
    let n = x0.len();
    let mut evaluations = 0usize;
    let mut eval = |x: &[f64], evaluations: &mut usize| {
        *evaluations += 1;
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut sim: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    sim.push(x0.to_vec());
    for k in 0..n {
        let mut y = x0.to_vec();
        y[k] = if y[k] != 0.0 { 1.05 * y[k] } else { 0.00025 };
        sim.push(y);
    }
    let mut fsim: Vec<f64> = sim.iter().map(|x| eval(x, &mut evaluations)).collect();
    sort_simplex(&mut sim, &mut fsim);

    let point = |xbar: &[f64], worst: &[f64], c: f64| -> Vec<f64> {
        xbar.iter()
            .zip(worst)
            .map(|(b, w)| (1.0 + c) * b - c * w)
            .collect()
    };
    let mut iterations = 1usize;
    let mut converged = false;
    while iterations < max_iter {
        let xspread = sim[1..]
            .iter()
            .flat_map(|v| v.iter().zip(&sim[0]).map(|(a, b)| (a - b).abs()))
            .fold(0.0_f64, f64::max);
        let fspread = fsim[1..]
            .iter()
            .map(|v| (fsim[0] - v).abs())
            .fold(
                0.0_f64,
                |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
            );
        if xspread <= tol && fspread <= tol {
            converged = true;
            break;
        }
        let mut xbar = vec![0.0; n];
        for v in &sim[..n] {
            for (b, x) in xbar.iter_mut().zip(v) {
                *b += x / n as f64;
            }
        }
        let worst = sim[n].clone();
        let xr = point(&xbar, &worst, 1.0);
        let fxr = eval(&xr, &mut evaluations);
        let mut shrink = false;
        if fxr < fsim[0] {
            let xe = point(&xbar, &worst, 2.0);
            let fxe = eval(&xe, &mut evaluations);
            if fxe < fxr {
                (sim[n], fsim[n]) = (xe, fxe);
            } else {
                (sim[n], fsim[n]) = (xr, fxr);
            }
        } else if fxr < fsim[n - 1] {
            (sim[n], fsim[n]) = (xr, fxr);
        } else if fxr < fsim[n] {
            let xc = point(&xbar, &worst, 0.5);
            let fxc = eval(&xc, &mut evaluations);
            if fxc <= fxr {
                (sim[n], fsim[n]) = (xc, fxc);
            } else {
                shrink = true;
            }
        } else {
            let xcc = point(&xbar, &worst, -0.5);
            let fxcc = eval(&xcc, &mut evaluations);
            if fxcc < fsim[n] {
                (sim[n], fsim[n]) = (xcc, fxcc);
            } else {
                shrink = true;
            }
        }
        if shrink {
            let best = sim[0].clone();
            for j in 1..=n {
                let v: Vec<f64> = sim[j]
                    .iter()
                    .zip(&best)
                    .map(|(x, b)| b + 0.5 * (x - b))
                    .collect();
                fsim[j] = eval(&v, &mut evaluations);
                sim[j] = v;
            }
        }
        iterations += 1;
        sort_simplex(&mut sim, &mut fsim);
    }
    Minimum {
        x: sim[0].clone(),
        value: fsim[0],
        iterations,
        evaluations,
        converged,
    }
}

fn sort_simplex(sim: &mut Vec<Vec<f64>>, fsim: &mut Vec<f64>) {
    let mut idx: Vec<usize> = (0..fsim.len()).collect();
    idx.sort_by(|&i, &j| fsim[i].total_cmp(&fsim[j]));
    *sim = idx.iter().map(|&i| sim[i].clone()).collect();
    *fsim = idx.iter().map(|&i| fsim[i]).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let rosen = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = nelder_mead(rosen, &[-1.2, 1.0], 1e-10, 5000);
        assert!(m.converged);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6,
            "{:?}",
            m.x
        );
    }

    #[test]
    fn reports_non_convergence_and_survives_nan() {
        let m = nelder_mead(|x: &[f64]| x[0] * x[0] + x[1].abs(), &[5.0, 5.0], 1e-12, 3);
        assert!(!m.converged);
        assert_eq!(m.iterations, 3);
        let m = nelder_mead(
            |x: &[f64]| {
                if x[0] > 1.0 {
                    f64::NAN
                } else {
                    (x[0] - 0.5).powi(2)
                }
            },
            &[0.0],
            1e-9,
            1000,
        );
        assert!(m.converged && (m.x[0] - 0.5).abs() < 1e-4, "{:?}", m);
    }
}
