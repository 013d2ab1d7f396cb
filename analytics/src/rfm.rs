//! RFM scores and named segments over a set of customers with at least one purchase.
//!
//! Inputs per customer, from its [`Summary`]: recency R = days since the last purchase
//! (T − t_x; fewer is better), frequency F = repeat purchase days x, monetary M = the
//! summary's monetary value (mean value of repeat purchase days).
//!
//! **Scores** are rank-based quintiles: with n customers and L the number of customers
//! strictly worse on that measure, score = 1 + ⌊5 L / n⌋ ∈ 1..=5. Equal values always get
//! the same score (ties take the lowest rank), so the result does not depend on input order;
//! the best customers on R (most recent) get 5. The code is 100 R + 10 F + M.
//!
//! **Segments**: the rules below are mutually exclusive and cover all 125 codes (a test
//! checks both); the table is in order of the [`Segment`] enum.
//!
//! | Segment            | Rule                                              |
//! |--------------------|---------------------------------------------------|
//! | Champions          | R ≥ 4, F ≥ 4, M ≥ 4                               |
//! | Loyal              | R ≥ 3, F ≥ 4, and (R = 3 or M ≤ 3)                |
//! | Potential Loyalist | R ≥ 4, F ∈ {2, 3}                                 |
//! | New                | R = 5, F = 1                                      |
//! | Promising          | R = 4, F = 1                                      |
//! | Need Attention     | R = 3, F = 3                                      |
//! | About to Sleep     | R = 3, F ≤ 2                                      |
//! | At Risk            | R ≤ 2, and (F = 3 or (F ≥ 4 and M ≤ 3))           |
//! | Can't Lose Them    | R ≤ 2, F ≥ 4, M ≥ 4                               |
//! | Hibernating        | R = 2, F ≤ 2                                      |
//! | Lost               | R = 1, F ≤ 2                                      |

use crate::AnalyticsError;
use crate::summary::{Summary, validate_all};

/// A named RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Champions,
    Loyal,
    PotentialLoyalist,
    New,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CantLoseThem,
    Hibernating,
    Lost,
}

impl Segment {
    /// Every segment, in the rule table's order.
    pub const ALL: [Segment; 11] = [
        Segment::Champions,
        Segment::Loyal,
        Segment::PotentialLoyalist,
        Segment::New,
        Segment::Promising,
        Segment::NeedAttention,
        Segment::AboutToSleep,
        Segment::AtRisk,
        Segment::CantLoseThem,
        Segment::Hibernating,
        Segment::Lost,
    ];

    /// The segment's display name.
    pub fn name(self) -> &'static str {
        match self {
            Segment::Champions => "Champions",
            Segment::Loyal => "Loyal",
            Segment::PotentialLoyalist => "Potential Loyalist",
            Segment::New => "New",
            Segment::Promising => "Promising",
            Segment::NeedAttention => "Need Attention",
            Segment::AboutToSleep => "About to Sleep",
            Segment::AtRisk => "At Risk",
            Segment::CantLoseThem => "Can't Lose Them",
            Segment::Hibernating => "Hibernating",
            Segment::Lost => "Lost",
        }
    }
}

/// One customer's scores, each in 1..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmScore {
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

impl RfmScore {
    /// Scores, refused unless each is in 1..=5.
    pub fn new(r: u8, f: u8, m: u8) -> Result<Self, AnalyticsError> {
        if [r, f, m].iter().all(|s| (1..=5).contains(s)) {
            Ok(RfmScore { r, f, m })
        } else {
            Err(AnalyticsError::InvalidArgument {
                name: "rfm score",
                reason: "each score must be in 1..=5",
            })
        }
    }

    /// The three-digit code 100 R + 10 F + M.
    pub fn code(&self) -> u16 {
        100 * u16::from(self.r) + 10 * u16::from(self.f) + u16::from(self.m)
    }

    /// The segment of the rule table in the module docs.
    pub fn segment(&self) -> Segment {
        let RfmScore { r, f, m } = *self;
        if f >= 4 {
            if r >= 3 {
                if r >= 4 && m >= 4 {
                    Segment::Champions
                } else {
                    Segment::Loyal
                }
            } else if m >= 4 {
                Segment::CantLoseThem
            } else {
                Segment::AtRisk
            }
        } else if r <= 2 && f == 3 {
            Segment::AtRisk
        } else if r >= 4 && f >= 2 {
            Segment::PotentialLoyalist
        } else if r == 3 && f == 3 {
            Segment::NeedAttention
        } else if r == 3 {
            Segment::AboutToSleep
        } else if r >= 5 {
            Segment::New
        } else if r == 4 {
            Segment::Promising
        } else if r == 2 {
            Segment::Hibernating
        } else {
            Segment::Lost
        }
    }
}

/// RFM over a set of customers: scores in input order and counts per segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rfm {
    pub scores: Vec<RfmScore>,
    /// Every segment with its count, in [`Segment::ALL`] order (zeros included).
    pub counts: Vec<(Segment, usize)>,
}

/// Scores every customer (module docs). An empty input gives empty scores and zero counts.
pub fn rfm(summaries: &[Summary]) -> Result<Rfm, AnalyticsError> {
    validate_all(summaries)?;
    // Higher is better for each key: R uses the negated days since the last purchase.
    let r = quintile_scores(
        &summaries
            .iter()
            .map(|s| s.recency - s.t)
            .collect::<Vec<_>>(),
    );
    let f = quintile_scores(&summaries.iter().map(|s| s.frequency).collect::<Vec<_>>());
    let m = quintile_scores(
        &summaries
            .iter()
            .map(|s| s.monetary_value)
            .collect::<Vec<_>>(),
    );
    let scores: Vec<RfmScore> = r
        .into_iter()
        .zip(f)
        .zip(m)
        .map(|((r, f), m)| RfmScore { r, f, m })
        .collect();
    let counts = Segment::ALL
        .iter()
        .map(|&seg| (seg, scores.iter().filter(|s| s.segment() == seg).count()))
        .collect();
    Ok(Rfm { scores, counts })
}

/// The R, F and M values of a population, sorted, to score any customer against it: a
/// member gets exactly the score [`rfm`] gives it; a customer evaluated later than the
/// population (the 360 view scored with the day's population) is ranked among its members.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    r: Vec<f64>,
    f: Vec<f64>,
    m: Vec<f64>,
}

impl Population {
    /// The population of `summaries` (validated; it may be empty, then every score is 1).
    pub fn new(summaries: &[Summary]) -> Result<Self, AnalyticsError> {
        validate_all(summaries)?;
        let sorted = |key: fn(&Summary) -> f64| {
            let mut values: Vec<f64> = summaries.iter().map(key).collect();
            values.sort_by(f64::total_cmp);
            values
        };
        Ok(Population {
            r: sorted(|s| s.recency - s.t),
            f: sorted(|s| s.frequency),
            m: sorted(|s| s.monetary_value),
        })
    }

    /// Customers in the population.
    pub fn len(&self) -> usize {
        self.r.len()
    }

    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    /// `s` scored by rank among the population: 1 + ⌊5 L / n⌋ with L the members strictly
    /// worse, at most 5.
    pub fn score(&self, s: &Summary) -> RfmScore {
        let rank = |sorted: &[f64], v: f64| {
            let below = sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            (1 + (5 * below) / sorted.len().max(1)).min(5) as u8
        };
        RfmScore {
            r: rank(&self.r, s.recency - s.t),
            f: rank(&self.f, s.frequency),
            m: rank(&self.m, s.monetary_value),
        }
    }
}

/// 1 + ⌊5 L / n⌋ with L the number of strictly smaller values (values must be finite).
pub fn quintile_scores(values: &[f64]) -> Vec<u8> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = values.len();
    values
        .iter()
        .map(|v| {
            let below = sorted.partition_point(|s| s.total_cmp(v).is_lt());
            // below < n, so the score is at most 5.
            (1 + (5 * below) / n.max(1)).min(5) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rule = (Segment, fn(u8, u8, u8) -> bool);
    /// The table of the module docs, written as predicates, independently of `segment`.
    const RULES: [Rule; 11] = [
        (Segment::Champions, |r, f, m| r >= 4 && f >= 4 && m >= 4),
        (Segment::Loyal, |r, f, m| {
            r >= 3 && f >= 4 && (r == 3 || m <= 3)
        }),
        (Segment::PotentialLoyalist, |r, f, _| {
            r >= 4 && (f == 2 || f == 3)
        }),
        (Segment::New, |r, f, _| r == 5 && f == 1),
        (Segment::Promising, |r, f, _| r == 4 && f == 1),
        (Segment::NeedAttention, |r, f, _| r == 3 && f == 3),
        (Segment::AboutToSleep, |r, f, _| r == 3 && f <= 2),
        (Segment::AtRisk, |r, f, m| {
            r <= 2 && (f == 3 || (f >= 4 && m <= 3))
        }),
        (Segment::CantLoseThem, |r, f, m| r <= 2 && f >= 4 && m >= 4),
        (Segment::Hibernating, |r, f, _| r == 2 && f <= 2),
        (Segment::Lost, |r, f, _| r == 1 && f <= 2),
    ];

    #[test]
    fn every_code_matches_exactly_one_rule_and_segment_agrees() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    let matching: Vec<Segment> = RULES
                        .iter()
                        .filter(|(_, rule)| rule(r, f, m))
                        .map(|(s, _)| *s)
                        .collect();
                    assert_eq!(matching.len(), 1, "code {r}{f}{m}: {matching:?}");
                    let score = RfmScore::new(r, f, m).expect("in range");
                    assert_eq!(score.segment(), matching[0], "code {}", score.code());
                    seen.insert(matching[0]);
                }
            }
        }
        assert_eq!(seen.len(), Segment::ALL.len(), "every segment is reachable");
    }

    #[test]
    fn a_population_scores_its_members_as_rfm_does_and_ranks_newcomers() {
        let s = |x: f64, tx: f64, t: f64, m: f64| Summary::new(x, tx, t, m).expect("valid");
        let customers: Vec<Summary> = (0..37)
            .map(|i| {
                let i = f64::from(i);
                let x = i % 7.0;
                if x == 0.0 {
                    s(0.0, 0.0, 60.0 + (i * 5.0) % 40.0, 0.0)
                } else {
                    s(
                        x,
                        (i * 3.0) % 50.0 + x,
                        60.0 + (i * 5.0) % 40.0,
                        (i * 11.0) % 23.0 + 1.0,
                    )
                }
            })
            .collect();
        let population = Population::new(&customers).expect("valid");
        let scored = rfm(&customers).expect("valid");
        for (customer, expected) in customers.iter().zip(&scored.scores) {
            assert_eq!(population.score(customer), *expected);
        }
        assert_eq!(population.len(), 37);
        // Better than everyone on every measure: 555; worse than everyone: 111.
        assert_eq!(population.score(&s(100.0, 999.0, 999.0, 1e6)).code(), 555);
        assert_eq!(population.score(&s(0.0, 0.0, 1e5, 0.0)).code(), 111);
        assert_eq!(
            Population::new(&[])
                .expect("empty")
                .score(&customers[0])
                .code(),
            111
        );
    }

    #[test]
    fn quintiles_by_rank_with_ties_sharing_a_score() {
        assert_eq!(
            quintile_scores(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
            vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(quintile_scores(&[3.0, 3.0, 3.0]), vec![1, 1, 1]);
        assert_eq!(quintile_scores(&[5.0, 1.0, 5.0, 1.0]), vec![3, 1, 3, 1]);
        assert_eq!(quintile_scores(&[7.0]), vec![1]);
        assert!(quintile_scores(&[]).is_empty());
    }

    #[test]
    fn most_recent_get_r5_and_counts_add_up() {
        let s = |x: f64, tx: f64, t: f64, m: f64| Summary::new(x, tx, t, m).expect("valid");
        let customers = [
            s(10.0, 99.0, 100.0, 50.0), // bought yesterday, often, big: champion
            s(0.0, 0.0, 2.0, 0.0),      // first purchase two days ago
            s(1.0, 10.0, 300.0, 5.0),
            s(0.0, 0.0, 400.0, 0.0),
            s(2.0, 30.0, 200.0, 20.0),
        ];
        let out = rfm(&customers).expect("valid");
        assert_eq!(out.scores[0], RfmScore { r: 5, f: 5, m: 5 });
        assert_eq!(out.scores[0].segment(), Segment::Champions);
        assert_eq!(out.scores[0].code(), 555);
        assert_eq!(out.scores[3].r, 1);
        assert_eq!(
            out.counts.iter().map(|c| c.1).sum::<usize>(),
            customers.len()
        );
        assert!(rfm(&[]).expect("empty is fine").scores.is_empty());
        assert!(RfmScore::new(0, 1, 1).is_err() && RfmScore::new(1, 6, 1).is_err());
    }
}
