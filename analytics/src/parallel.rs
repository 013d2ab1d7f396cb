//! Deterministic parallel sums for the likelihoods: the data is cut into a fixed number of
//! chunks, each chunk is summed in order, and the chunk sums are added in order, so the
//! result is bit-identical whatever the number of threads (which only decides who sums
//! which chunk). Small inputs are summed on the calling thread.

use std::ops::Range;

/// Chunks per sum, independent of the machine.
const CHUNKS: usize = 8;
/// Below this many items one thread does all chunks (same chunking, same result).
const PARALLEL_FROM: usize = 20_000;

/// Σ over the chunks of `len` items of `part(range)`, added in chunk order.
pub(crate) fn chunked_sum<F>(len: usize, part: F) -> f64
where
    F: Fn(Range<usize>) -> f64 + Sync,
{
    let size = len.div_ceil(CHUNKS).max(1);
    let range = |i: usize| (i * size).min(len)..((i + 1) * size).min(len);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(CHUNKS);
    let mut sums = [0.0_f64; CHUNKS];
    let mut failed = false;
    if threads <= 1 || len < PARALLEL_FROM {
        for (i, s) in sums.iter_mut().enumerate() {
            *s = part(range(i));
        }
    } else {
        std::thread::scope(|scope| {
            let part = &part;
            let handles: Vec<_> = (1..threads)
                .map(|k| {
                    scope.spawn(move || {
                        (k..CHUNKS)
                            .step_by(threads)
                            .map(|i| (i, part(range(i))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for i in (0..CHUNKS).step_by(threads) {
                sums[i] = part(range(i));
            }
            for h in handles {
                // The parts are arithmetic and do not panic; if one did, the sum is NaN.
                match h.join() {
                    Ok(done) => {
                        for (i, s) in done {
                            sums[i] = s;
                        }
                    }
                    Err(_) => failed = true,
                }
            }
        });
    }
    if failed {
        return f64::NAN;
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_sum_for_small_and_large_inputs_as_in_order_chunks() {
        for len in [0usize, 1, 7, 8, 9, 20_000, 100_003] {
            let v: Vec<f64> = (0..len)
                .map(|i| ((i * 7919) % 1000) as f64 * 0.001)
                .collect();
            let got = chunked_sum(len, |r| v[r].iter().sum());
            let size = len.div_ceil(CHUNKS).max(1);
            let want: f64 = v.chunks(size).map(|c| c.iter().sum::<f64>()).sum();
            assert_eq!(got.to_bits(), want.to_bits(), "len {len}");
        }
    }
}
