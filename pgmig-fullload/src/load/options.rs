//! What a load can be told: sizes, the COPY format, parallelism.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A size in bytes, parsed from `1048576`, `64kB`, `256MB`, `1GB`, `2TB`
/// (PostgreSQL's units: powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| {
            format!("{s:?} is not a size: expected a number with an optional kB, MB, GB or TB")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1 << 10,
            "mb" | "m" => 1 << 20,
            "gb" | "g" => 1 << 30,
            "tb" | "t" => 1 << 40,
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (use kB, MB, GB or TB)"
                ));
            }
        };
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large"))?;
        if bytes == 0 {
            return Err(format!("{s:?}: the size must be positive"));
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// The COPY format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatChoice {
    /// Binary where every column's type is portable between the two
    /// servers, text otherwise.
    Auto,
    /// Always text.
    Text,
    /// Always binary (fails on a type without binary I/O, or one whose
    /// binary form carries OIDs that differ between the servers).
    Binary,
}

impl FromStr for FormatChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(FormatChoice::Auto),
            "text" => Ok(FormatChoice::Text),
            "binary" => Ok(FormatChoice::Binary),
            _ => Err(format!("{s:?}: expected auto, text or binary")),
        }
    }
}

/// The COPY format a table is loaded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyFormat {
    /// `FORMAT text`: portable across versions.
    Text,
    /// `FORMAT binary`: less work per row.
    Binary,
}

impl CopyFormat {
    /// The `FORMAT` option's value.
    pub fn sql(self) -> &'static str {
        match self {
            CopyFormat::Text => "text",
            CopyFormat::Binary => "binary",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_postgres_units() {
        assert_eq!("1048576".parse::<ByteSize>().unwrap().0, 1 << 20);
        assert_eq!("64kB".parse::<ByteSize>().unwrap().0, 64 << 10);
        assert_eq!("256MB".parse::<ByteSize>().unwrap().0, 256 << 20);
        assert_eq!(" 1 GB ".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("2TB".parse::<ByteSize>().unwrap().0, 2 << 40);
        for bad in ["", "MB", "0", "1.5GB", "-1", "12PB", "99999999999999TB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(ByteSize(1 << 30).to_string(), "1GB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("AUTO".parse::<FormatChoice>().unwrap(), FormatChoice::Auto);
        assert_eq!(
            "binary".parse::<FormatChoice>().unwrap(),
            FormatChoice::Binary
        );
        assert!("csv".parse::<FormatChoice>().is_err());
    }
}
