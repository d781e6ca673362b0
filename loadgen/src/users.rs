//! Users from a pattern: `bench%d@example.org:1-100` is bench1 … bench100.

use rand::Rng;

/// Users from a pattern: `bench%d:1-100` is bench1 … bench100; without `%d`, one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    pub pattern: String,
    pub first: u64,
    pub last: u64,
}

impl Users {
    pub fn parse(s: &str) -> Result<Users, String> {
        match s.rsplit_once(':') {
            Some((p, range)) if p.contains("%d") => {
                let (a, b) = range.split_once('-').ok_or("a user range is FIRST-LAST")?;
                let (first, last) = (
                    a.parse().map_err(|_| "bad range start")?,
                    b.parse().map_err(|_| "bad range end")?,
                );
                if first > last {
                    return Err("the user range is empty".into());
                }
                Ok(Users {
                    pattern: p.to_string(),
                    first,
                    last,
                })
            }
            _ => Ok(Users {
                pattern: s.to_string(),
                first: 0,
                last: 0,
            }),
        }
    }

    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn get(&self, i: u64) -> String {
        self.pattern
            .replace("%d", &(self.first + i % self.count()).to_string())
    }

    /// `n` distinct users at random (all of them, in random order, if `n` is larger).
    pub fn distinct(&self, n: usize, rng: &mut impl Rng) -> Vec<String> {
        let n = (n as u64).min(self.count()) as usize;
        let mut picked: Vec<u64> = Vec::with_capacity(n);
        while picked.len() < n {
            let i = rng.gen_range(0..self.count());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| self.get(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn patterns_ranges_and_distinct_picks() {
        let u = Users::parse("bench%d@example.org:1-3").unwrap();
        assert_eq!(
            (u.get(0).as_str(), u.get(2).as_str(), u.get(3).as_str()),
            (
                "bench1@example.org",
                "bench3@example.org",
                "bench1@example.org"
            )
        );
        assert!(Users::parse("b%d:5-1").is_err());
        assert_eq!(
            Users::parse("one@example.org").unwrap().get(7),
            "one@example.org"
        );
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            let mut v = u.distinct(2, &mut rng);
            assert_eq!(v.len(), 2);
            v.dedup();
            assert_eq!(v.len(), 2);
        }
        let mut all = u.distinct(10, &mut rng);
        all.sort();
        assert_eq!(all.len(), 3);
        all.dedup();
        assert_eq!(all.len(), 3);
    }
}
