//! Log sequence numbers: positions in the write-ahead log.
//!
//! PostgreSQL prints an LSN as two hexadecimal halves, `X/Y`, each the upper
//! and lower 32 bits of a 64-bit byte position (`35FE3/B63D4718`). pgmig
//! parses them once at the edge into [`Lsn`] and compares them as numbers:
//! comparing LSN strings is a classic way to lose data (`9/0` sorts after
//! `10/0` as text).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::types::PgLsn;

/// A position in the write-ahead log, as a byte offset.
///
/// Ordered as the `u64` it wraps. Parsed from and printed as PostgreSQL's
/// `X/Y` form (upper-case hex on output); serialized with serde as that
/// string, so plan and state files read like `psql` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid LSN `0/0`, which PostgreSQL uses for "none".
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is `0/0`.
    pub fn is_invalid(self) -> bool {
        self.0 == 0
    }

    /// The byte distance from `earlier` to `self`, or `None` when `earlier`
    /// is ahead of `self`.
    pub fn checked_distance(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// The signed byte distance `self - other` (negative when `other` is ahead).
    pub fn signed_distance(self, other: Lsn) -> i128 {
        i128::from(self.0) - i128::from(other.0)
    }

    /// This LSN moved forward by `bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// This LSN moved back by `bytes`, or `None` below `0/0`.
    pub fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_sub(bytes).map(Lsn)
    }
}

/// Why a string is not an LSN. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {input:?}: {reason}")]
pub struct ParseLsnError {
    /// The rejected input, as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses `X/Y`: each half one to eight hex digits (either case), leading
    /// zeros allowed, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseLsnError {
            input: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(fail(
                "empty; expected two hex numbers as X/Y, e.g. 16/B374D848",
            ));
        }
        let (hi, lo) = trimmed
            .split_once('/')
            .ok_or_else(|| fail("missing '/'; expected X/Y, e.g. 16/B374D848"))?;
        if lo.contains('/') {
            return Err(fail("more than one '/'"));
        }
        let half = |part: &str, which: &'static str| -> Result<u32, ParseLsnError> {
            if part.is_empty() {
                return Err(fail(which));
            }
            if !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail("not a hexadecimal number"));
            }
            let digits = part.trim_start_matches('0');
            if digits.len() > 8 {
                return Err(fail("a half is larger than 32 bits"));
            }
            // Only hex digits, at most eight of them: this cannot fail.
            Ok(u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).unwrap_or(0))
        };
        let hi = half(hi, "nothing before '/'")?;
        let lo = half(lo, "nothing after '/'")?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl From<PgLsn> for Lsn {
    fn from(lsn: PgLsn) -> Self {
        Lsn(u64::from(lsn))
    }
}

impl From<Lsn> for PgLsn {
    fn from(lsn: Lsn) -> Self {
        PgLsn::from(lsn.0)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_postgres_prints() {
        let cases: &[(&str, u64)] = &[
            ("0/0", 0),
            ("0/1", 1),
            ("16/B374D848", 0x16_B374_D848),
            ("35FE3/B63D4718", 0x3_5FE3_B63D_4718),
            ("35fe3/b63d4718", 0x3_5FE3_B63D_4718),
            ("  1/2\n", 0x1_0000_0002),
            ("0/0000000A", 0xA),
            ("00000001/00000000", 0x1_0000_0000),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Lsn>(), Ok(Lsn(*want)), "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed_input_quoting_it() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "empty; expected two hex numbers as X/Y, e.g. 16/B374D848",
            ),
            (
                "   ",
                "empty; expected two hex numbers as X/Y, e.g. 16/B374D848",
            ),
            ("16B374D848", "missing '/'; expected X/Y, e.g. 16/B374D848"),
            ("1/2/3", "more than one '/'"),
            ("/1", "nothing before '/'"),
            ("1/", "nothing after '/'"),
            ("1/G", "not a hexadecimal number"),
            ("-1/0", "not a hexadecimal number"),
            ("+1/0", "not a hexadecimal number"),
            ("1 /0", "not a hexadecimal number"),
            ("0x1/0", "not a hexadecimal number"),
            ("1/é", "not a hexadecimal number"),
            ("100000000/0", "a half is larger than 32 bits"),
            ("0/100000000", "a half is larger than 32 bits"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Lsn>().unwrap_err();
            assert_eq!(err.reason, *reason, "{input:?}");
            assert_eq!(err.to_string(), format!("invalid LSN {input:?}: {reason}"));
        }
    }

    #[test]
    fn prints_upper_case_without_padding() {
        assert_eq!(Lsn(0x3_5FE3_B63D_4718).to_string(), "35FE3/B63D4718");
        assert_eq!(Lsn(0xA).to_string(), "0/A");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn orders_numerically_not_as_text() {
        let a: Lsn = "9/0".parse().unwrap();
        let b: Lsn = "10/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.checked_distance(a), Some(0x7_0000_0000));
        assert_eq!(a.checked_distance(b), None);
        assert_eq!(a.signed_distance(b), -0x7_0000_0000);
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn(0).checked_sub(1), None);
        assert_eq!(Lsn(5).checked_add(3), Some(Lsn(8)));
    }

    #[test]
    fn converts_to_and_from_driver_and_u64() {
        let lsn = Lsn(0x16_B374_D848);
        let pg: PgLsn = lsn.into();
        assert_eq!(pg.to_string(), "16/B374D848");
        assert_eq!(Lsn::from(pg), lsn);
        assert_eq!(u64::from(lsn), 0x16_B374_D848);
        assert_eq!(Lsn::from(7u64), Lsn(7));
    }

    #[test]
    fn serde_is_the_postgres_string() {
        let lsn = Lsn(0x3_5FE3_B63D_4718);
        let json = serde_json::to_string(&lsn).unwrap();
        assert_eq!(json, "\"35FE3/B63D4718\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        let err = serde_json::from_str::<Lsn>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("invalid LSN \"nope\""), "{err}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
            prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>(), Ok(lsn));
        }

        #[test]
        fn ordering_is_u64_ordering(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(Lsn(a).cmp(&Lsn(b)), a.cmp(&b));
        }

        #[test]
        fn parser_never_panics(s in ".*") {
            let _ = s.parse::<Lsn>();
        }

        #[test]
        fn agrees_with_the_driver(v in any::<u64>()) {
            let pg = PgLsn::from(v);
            prop_assert_eq!(pg.to_string().parse::<Lsn>(), Ok(Lsn(v)));
        }
    }

    /// What any input parses to, by a slower, obviously right reading:
    /// `Some` exactly when each half is 1+ hex digits worth at most 32 bits.
    fn model(s: &str) -> Option<u64> {
        let (hi, lo) = s.trim().split_once('/')?;
        let half = |h: &str| -> Option<u64> {
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let digits = h.trim_start_matches('0');
            if digits.len() > 8 {
                return None;
            }
            Some(u64::from_str_radix(digits, 16).unwrap_or(0))
        };
        Some((half(hi)? << 32) | half(lo)?)
    }

    /// Checks one input against [`model`]: a value or a typed error that
    /// quotes the input and gives one of the known reasons.
    fn check(s: &str) -> Result<(), TestCaseError> {
        match (s.parse::<Lsn>(), model(s)) {
            (Ok(lsn), Some(want)) => {
                prop_assert_eq!(lsn, Lsn(want), "{:?}", s);
                prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
            }
            (Err(e), None) => {
                prop_assert_eq!(&e.input, s);
                prop_assert!(
                    [
                        "empty; expected two hex numbers as X/Y, e.g. 16/B374D848",
                        "missing '/'; expected X/Y, e.g. 16/B374D848",
                        "more than one '/'",
                        "nothing before '/'",
                        "nothing after '/'",
                        "not a hexadecimal number",
                        "a half is larger than 32 bits",
                    ]
                    .contains(&e.reason),
                    "{:?}: {}",
                    s,
                    e
                );
                prop_assert_eq!(e.to_string(), format!("invalid LSN {s:?}: {}", e.reason));
            }
            (got, want) => prop_assert!(false, "{:?}: parsed {:?}, model {:?}", s, got, want),
        }
        Ok(())
    }

    /// Whitespace as `str::trim` knows it (Unicode `White_Space`), ASCII or not.
    fn space() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                ' ', '\t', '\n', '\r', '\x0b', '\x0c', '\u{85}', '\u{a0}', '\u{2003}', '\u{3000}',
                '\u{2028}',
            ]),
            0..4,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Any text at all, with a '/' somewhere or not.
        #[test]
        fn arbitrary_unicode_matches_the_model(a in any::<String>(), b in any::<String>(), slash in any::<bool>()) {
            check(&a)?;
            if slash {
                check(&format!("{a}/{b}"))?;
            }
        }

        /// Hex of any length: huge halves are refused, leading zeros are not.
        #[test]
        fn huge_hex_is_refused_not_wrapped(
            hi in "[0-9a-fA-F]{0,40}",
            lo in "[0-9a-fA-F]{0,40}",
            zeros in 0_usize..300,
        ) {
            check(&format!("{hi}/{lo}"))?;
            let padded = format!("{}{hi}/{}{lo}", "0".repeat(zeros), "0".repeat(zeros));
            check(&padded)?;
            if !hi.is_empty() && !lo.is_empty() {
                prop_assert_eq!(padded.parse::<Lsn>(), format!("{hi}/{lo}").parse::<Lsn>().map_err(|e| ParseLsnError { input: padded.clone(), ..e }));
            }
        }

        /// Whitespace around the LSN is ignored; inside it, it is an error.
        #[test]
        fn whitespace_outside_ignored_inside_refused(
            v in any::<u64>(),
            before in space(),
            after in space(),
            inside in space().prop_filter("some", |s| !s.is_empty()),
            at in any::<proptest::sample::Index>(),
        ) {
            let shown = Lsn(v).to_string();
            prop_assert_eq!(format!("{before}{shown}{after}").parse::<Lsn>(), Ok(Lsn(v)));
            let cut = at.index(shown.len() - 1) + 1;
            let broken = format!("{}{inside}{}", &shown[..cut], &shown[cut..]);
            prop_assert!(broken.parse::<Lsn>().is_err(), "{:?}", broken);
            check(&broken)?;
        }

        /// Any separator other than an ASCII '/' is refused, look-alikes included.
        #[test]
        fn other_separators_are_refused(
            v in any::<u64>(),
            sep in proptest::sample::select(vec![
                ":", "\\", "|", "-", ".", ",", " ", "//", "/ /", "\u{2215}", "\u{ff0f}", "\u{2044}", "\u{29f8}", "%2F", "",
            ]),
        ) {
            let s = format!("{:X}{sep}{:X}", v >> 32, v & 0xFFFF_FFFF);
            prop_assert!(s.parse::<Lsn>().is_err(), "{:?}", s);
            check(&s)?;
        }

        /// Valid LSNs with one character changed, inserted or removed.
        #[test]
        fn mutated_lsns_match_the_model(
            v in any::<u64>(),
            at in any::<proptest::sample::Index>(),
            c in any::<char>(),
            op in 0_u8..3,
        ) {
            let mut chars: Vec<char> = Lsn(v).to_string().chars().collect();
            let i = at.index(chars.len());
            match op {
                0 => chars[i] = c,
                1 => chars.insert(i, c),
                _ => {
                    chars.remove(i);
                }
            }
            check(&chars.into_iter().collect::<String>())?;
        }
    }
}
