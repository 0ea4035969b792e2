//! Prices: integer cents inside, a decimal number of dollars on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most a ticket may cost, in cents ($1,000,000).
pub const MAX_CENTS: i64 = 100_000_000;

/// A positive price in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(i64);

impl Price {
    /// Dollars as a client sends them: more than 0, at most 1,000,000, at most 2 decimals.
    pub fn parse_dollars(dollars: f64) -> Result<Self, &'static str> {
        if !dollars.is_finite() || dollars <= 0.0 {
            return Err("Price must be greater than 0");
        }
        if dollars > (MAX_CENTS / 100) as f64 {
            return Err("Price must be at most 1000000");
        }
        let scaled = dollars * 100.0;
        let cents = scaled.round();
        if (scaled - cents).abs() > 1e-6 * scaled.max(1.0) {
            return Err("Price must have at most 2 decimals");
        }
        Self::from_cents(cents as i64).ok_or("Price must be greater than 0")
    }

    pub fn from_cents(cents: i64) -> Option<Self> {
        (1..=MAX_CENTS).contains(&cents).then_some(Self(cents))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn dollars(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(d)?;
        Self::parse_dollars(dollars).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Price;

    #[test]
    fn valid_prices_become_exact_cents() {
        let cases = [
            (0.01, 1),
            (12.34, 1234),
            (0.1 + 0.2, 30),
            (19.99, 1999),
            (1_000_000.0, 100_000_000),
        ];
        for (dollars, cents) in cases {
            assert_eq!(
                Price::parse_dollars(dollars).unwrap().cents(),
                cents,
                "{dollars}"
            );
        }
    }

    #[test]
    fn invalid_prices_are_refused() {
        for (dollars, case) in [
            (0.0, "zero"),
            (-1.0, "negative"),
            (1_000_000.01, "over the maximum"),
            (1.005, "three decimals"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "infinite"),
        ] {
            assert!(Price::parse_dollars(dollars).is_err(), "accepted {case}");
        }
    }

    #[test]
    fn round_trips_through_json_as_dollars() {
        let p = Price::parse_dollars(12.34).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "12.34");
        assert_eq!(serde_json::from_str::<Price>(&json).unwrap(), p);
    }
}
