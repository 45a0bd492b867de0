//! Communities: sub-trees of the network reserved for nodes of given
//! countries or continents.
//!
//! The file has one community a line: its prefix as a bit string, then
//! locations: ISO country codes (`FR`), continent codes with an `@`
//! (`@EU`), or `*` for the default community (exactly one line has it).
//! Empty lines and lines starting with `#` are ignored.

use re6st_proto::prefix::Prefix;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommunityError {
    #[error("line {0}: invalid community prefix {1:?}")]
    BadPrefix(usize, String),
    #[error("community {0:?} is listed twice")]
    Duplicate(String),
    #[error("missing or multiple default location ('*')")]
    Default,
}

/// Communities in file order, each with its locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Communities {
    entries: Vec<(Prefix, Vec<String>)>,
}

impl Default for Communities {
    /// Without a file: a single default community covering everything.
    fn default() -> Self {
        Communities {
            entries: vec![(Prefix::EMPTY, vec!["*".to_owned()])],
        }
    }
}

impl Communities {
    pub fn parse(text: &str) -> Result<Communities, CommunityError> {
        let mut entries: Vec<(Prefix, Vec<String>)> = vec![];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(prefix) = words.next() else { continue };
            let p: Prefix = prefix
                .parse()
                .map_err(|_| CommunityError::BadPrefix(n + 1, prefix.to_owned()))?;
            if entries.iter().any(|(q, _)| *q == p) {
                return Err(CommunityError::Duplicate(prefix.to_owned()));
            }
            entries.push((p, words.map(str::to_owned).collect()));
        }
        let defaults = entries
            .iter()
            .filter(|(_, locs)| locs.iter().any(|l| l == "*"))
            .count();
        if defaults != 1 {
            return Err(CommunityError::Default);
        }
        Ok(Communities { entries })
    }

    pub fn prefixes(&self) -> Vec<Prefix> {
        self.entries.iter().map(|(p, _)| *p).collect()
    }

    /// The community of a node located in `country` and `continent`
    /// (`*` when unknown; the continent already has its `@`): the first
    /// listing the country, else the first listing the continent, else
    /// the default one.
    pub fn select(&self, country: &str, continent: &str) -> Prefix {
        let listing = |loc: &str| {
            self.entries
                .iter()
                .find(|(_, locs)| locs.iter().any(|l| l == loc))
                .map(|(p, _)| *p)
        };
        listing(country)
            .or_else(|| listing(continent))
            .or_else(|| listing("*"))
            .unwrap_or(Prefix::EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    const FILE: &str = "# communities\n\n0 *\n10 FR @EU\n110 @AS JP\n111 DE\n";

    #[test]
    fn selection_order() {
        let c = Communities::parse(FILE).unwrap();
        assert_eq!(c.prefixes(), vec![p("0"), p("10"), p("110"), p("111")]);
        assert_eq!(c.select("FR", "@EU"), p("10"));
        assert_eq!(c.select("DE", "@EU"), p("111"));
        assert_eq!(c.select("IT", "@EU"), p("10"));
        assert_eq!(c.select("JP", "@AS"), p("110"));
        assert_eq!(c.select("US", "@NA"), p("0"));
        assert_eq!(c.select("*", "*"), p("0"));
    }

    #[test]
    fn default_without_file() {
        assert_eq!(Communities::default().select("FR", "@EU"), Prefix::EMPTY);
    }

    #[test]
    fn invalid_files() {
        assert_eq!(Communities::parse("0 FR\n"), Err(CommunityError::Default));
        assert_eq!(
            Communities::parse("0 *\n1 *\n"),
            Err(CommunityError::Default)
        );
        assert_eq!(
            Communities::parse("0 *\n2x FR\n"),
            Err(CommunityError::BadPrefix(2, "2x".into()))
        );
        assert_eq!(
            Communities::parse("0 *\n0 FR\n"),
            Err(CommunityError::Duplicate("0".into()))
        );
    }
}
